"""One registry helper for every plug-in kind: duplicates, unknown names, entry points."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from genguard import registry as registry_module
from genguard.audit.classify import CLASSIFIERS
from genguard.detectors.base import DETECTORS
from genguard.errors import ConfigError
from genguard.generators import GENERATORS
from genguard.merge.methods import MERGE_METHODS
from genguard.registry import Registry


def test_duplicate_names_are_refused_and_unknown_names_list_the_known() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.add("a", 1)  # the same object again is fine (a module imported twice)
    with pytest.raises(ConfigError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(ConfigError, match="unknown widget 'b'; known: a"):
        reg.get("b")
    reg.remove("a")
    assert reg.names() == []


def test_entry_point_plugins_load_and_failures_name_the_plugin(monkeypatch) -> None:
    module = SimpleNamespace()
    reg: Registry[str] = Registry("widget", entry_point_group="genguard.widgets")

    def load_ok() -> object:
        reg.add("from-plugin", "hello")
        return module

    good = SimpleNamespace(name="good", value="pkg.good", load=load_ok)
    monkeypatch.setattr(registry_module.metadata, "entry_points", lambda group: [good])
    assert reg.get("from-plugin") == "hello"

    def load_broken() -> object:
        raise ImportError("no module named pkg.broken")

    broken = SimpleNamespace(name="broken", value="pkg.broken", load=load_broken)
    monkeypatch.setattr(registry_module.metadata, "entry_points", lambda group: [broken])
    fresh: Registry[str] = Registry("widget", entry_point_group="genguard.widgets")
    with pytest.raises(ConfigError, match=r"widget plug-in 'broken' \(pkg\.broken\) failed"):
        fresh.names()


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        (DETECTORS, {"nudenet", "opennsfw", "hashbank", "hf", "clip"}),
        (GENERATORS, {"fake", "diffusers", "a1111", "comfyui"}),
        (MERGE_METHODS, {"weighted_sum", "add_difference", "slerp", "ties"}),
        (CLASSIFIERS, {"guard"}),
    ],
)
def test_every_plugin_kind_uses_the_one_helper(registry: Registry, expected: set[str]) -> None:
    assert isinstance(registry, Registry)
    assert expected <= set(registry.names())


def test_http_generators_are_known_without_importing_the_server() -> None:
    """The audit (`--generator a1111`) sees the HTTP backends: they live in genguard.generators."""
    assert "a1111" in GENERATORS and "comfyui" in GENERATORS
    assert GENERATORS.get("a1111").__module__ == "genguard.generators.http"

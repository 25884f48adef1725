"""Config loading and the shared services (Guards per policy, real detectors shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.errors import ConfigError
from genguard.server.config import GatewayConfig, load_config
from genguard.server.services import GuardRegistry


def test_defaults_and_a_full_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = load_config(None)  # no ./genguard.toml: defaults
    assert (defaults.server.host, defaults.server.port) == ("127.0.0.1", 8787)
    assert defaults.store.database() == str(Path("genguard-data") / "genguard.db")
    assert set(defaults.policies.profiles) == {"strict", "standard", "adult", "off"}
    (tmp_path / "genguard.toml").write_text(
        """
[server]
port = 9000
[store]
url = "postgresql+psycopg://u@db/genguard"
[policies]
default = "shop"
profiles = { shop = "strict" }
[generator]
backend = "a1111"
options = { url = "http://gpu:7860" }
[watermark]
enabled = true
payload = "my-service"
"""
    )
    config = load_config(None)
    assert config.server.port == 9000 and config.policies.default == "shop"
    assert config.store.database().startswith("postgresql")
    assert config.generator.options == {"url": "http://gpu:7860"}
    monkeypatch.setenv("GENGUARD_ADMIN_TOKEN", "from-env")
    assert config.admin_token() == "from-env"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'x'", "server.port"),
        ("[server]\nbogus = 1", "bogus"),
        ("[policies]\ndefault = 'nope'", "policies.default 'nope'"),
        ("[policies]\nprofiles = {}", "at least one policy"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_real_guards_share_one_set_of_detectors(photos: dict[str, Path]) -> None:
    registry = GuardRegistry(
        {"standard": "standard", "strict": "strict"}, backends=["nudenet", "opennsfw"], threads=1
    )
    standard, strict = registry.get("standard"), registry.get("strict")
    assert standard is registry.get("standard")  # created once
    assert all(a is b for a, b in zip(standard.detectors, strict.detectors, strict=True))
    assert standard.policy_id.startswith("standard@") and strict.policy_id.startswith("strict@")
    for name in ("coffee", "rocket"):
        assert standard.check_image(photos[name]).action.value == "allow"
    with pytest.raises(ConfigError, match="not served"):
        registry.get("adult")


def test_config_objects_are_frozen() -> None:
    config = GatewayConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.server.port = 1  # type: ignore[misc]


def test_prompt_analysers_are_shared_and_know_the_stores_persons(tmp_path: Path) -> None:
    pytest.importorskip("genguard.text.analyser")
    from genguard.store import open_store
    from genguard.text.persons import add_person

    store = open_store(tmp_path / "db.sqlite")
    add_person(store, "Ada Quillfeather", ["A. Quillfeather"])
    lexical = tmp_path / "lexical.toml"
    lexical.write_text('extends = "standard"\n[prompt]\nsemantic = false\n')
    strict = tmp_path / "lexical-strict.toml"
    strict.write_text('extends = "strict"\n[prompt]\nsemantic = false\n')
    registry = GuardRegistry(
        {"a": str(lexical), "b": str(strict)}, backends=[], threads=1, store=store
    )
    first, second = registry.get("a"), registry.get("b")
    assert first.prompt_analyser is second.prompt_analyser
    decision = first.check_prompt("a watercolour portrait of Ada Quillfeather reading")
    assert decision.categories["real_person"] >= 0.5
    assert first.check_prompt("a watercolour of a lighthouse").categories["real_person"] < 0.5
    store.close()

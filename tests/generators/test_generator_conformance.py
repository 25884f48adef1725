"""Conformance: every registered generator backend, the same checks.

Parametrised over the live registry (a backend without a builder here fails, so none is
skipped silently): the image has the requested size and is RGB, the same (prompt, seed,
settings) gives the same pixels, another seed gives other pixels, and ``close`` may be
called twice. HTTP backends run against fake peers; diffusers against a tiny random model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from genguard.generators import GENERATORS, GenerationSettings, ImageGenerator, create_generator

Builder = Callable[[pytest.FixtureRequest, Path], ImageGenerator]
SETTINGS = GenerationSettings(steps=2, guidance=5.0, width=64, height=48, negative_prompt="x")


def _a1111(request: pytest.FixtureRequest, tmp_path: Path) -> ImageGenerator:
    return create_generator("a1111", "m.safetensors", {"url": request.getfixturevalue("a1111").url})


def _comfyui(request: pytest.FixtureRequest, tmp_path: Path) -> ImageGenerator:
    peer = request.getfixturevalue("comfyui")
    return create_generator("comfyui", "m.safetensors", {"url": peer.url, "poll_s": 0.01})


def _diffusers(request: pytest.FixtureRequest, tmp_path: Path) -> ImageGenerator:
    pytest.importorskip("diffusers")
    from tests.tiny_diffusers import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path / "tiny")
    return create_generator("diffusers", str(folder), {"device": "cpu"})


BUILDERS: dict[str, Builder] = {
    "fake": lambda request, tmp_path: create_generator("fake", "demo"),
    "a1111": _a1111,
    "comfyui": _comfyui,
    "diffusers": _diffusers,
}
#: Backends that load torch and a model: the slow tier.
SLOW = {"diffusers"}


def test_every_registered_generator_has_a_builder() -> None:
    names = GENERATORS.names()
    assert {"fake", "diffusers", "a1111", "comfyui"} <= set(names)
    assert set(names) <= set(BUILDERS), f"no conformance builder for {set(names) - set(BUILDERS)}"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [])
        for name in GENERATORS.names()
    ],
)
def test_generator_conforms(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    generator = BUILDERS[name](request, tmp_path)
    first = generator.generate("a lighthouse at dawn", 7, SETTINGS)
    assert first.size == (SETTINGS.width, SETTINGS.height)
    assert first.mode == "RGB"
    again = generator.generate("a lighthouse at dawn", 7, SETTINGS)
    assert np.array_equal(np.asarray(first), np.asarray(again)), "not reproducible"
    other = generator.generate("a lighthouse at dawn", 8, SETTINGS)
    assert not np.array_equal(np.asarray(first), np.asarray(other)), "the seed is ignored"
    generator.close()
    generator.close()

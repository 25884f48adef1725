"""Tiny checkpoints with real SD-style key names, built by the tests themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file


@pytest.fixture
def make_ckpt(tmp_path: Path) -> Callable[..., Path]:
    """Write a state dict with the official safetensors writer; returns its path."""

    def _make(name: str, state: dict[str, np.ndarray]) -> Path:
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path))
        return path

    return _make


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[[dict], Path]:
    """Write a recipe dict as YAML next to the checkpoints; returns its path."""

    def _write(recipe: dict) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        return path

    return _write

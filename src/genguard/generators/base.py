"""Image generators: the protocol, the settings that make an image reproducible, and the
registry every surface uses (the model audit, the gateway's ``/v1/generate``).

Backends: ``fake`` and ``diffusers`` (:mod:`genguard.generators.local`), ``a1111`` and
``comfyui`` over HTTP (:mod:`genguard.generators.http`); other packages add theirs through
the ``genguard.generators`` entry-point group.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from PIL import Image

from genguard.errors import (
    ConfigError,
)
from genguard.registry import Registry


@dataclass(frozen=True)
class GenerationSettings:
    """Everything besides model, prompt and seed that changes the image (cache key)."""

    steps: int = 25
    guidance: float = 7.5
    width: int = 512
    height: int = 512
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.width < 8 or self.height < 8:
            raise ConfigError("generation settings: steps >= 1 and width/height >= 8 needed")
        if self.width % 8 or self.height % 8:
            raise ConfigError("generation settings: width and height must be multiples of 8")

    def key(self) -> str:
        """A stable string for the results cache."""
        return json.dumps(asdict(self), sort_keys=True)


class ImageGenerator(Protocol):
    """Turns (prompt, seed, settings) into an image, deterministically."""

    def generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        """One image; the same arguments must give the same image."""
        ...

    def close(self) -> None:
        """Free the model (audits load one model at a time)."""
        ...


GeneratorFactory = Callable[[str, dict[str, Any]], ImageGenerator]
#: Every generator backend, by name (``[generator] backend``, ``--generator``).
GENERATORS: Registry[GeneratorFactory] = Registry(
    "generator",
    entry_point_group="genguard.generators",
    builtin_modules=("genguard.generators.local", "genguard.generators.http"),
)


def register_generator(name: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator adding a generator factory ``(model_ref, options) -> generator``."""
    return GENERATORS.register(name)


def create_generator(
    name: str, model: str, options: dict[str, Any] | None = None
) -> ImageGenerator:
    """Instantiate a registered generator for one model."""
    return GENERATORS.get(name)(model, dict(options or {}))

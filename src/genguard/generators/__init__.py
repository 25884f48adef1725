"""Image generators, one home for the model audit and the gateway (see :mod:`.base`)."""

from genguard.generators.base import (
    GENERATORS,
    GenerationSettings,
    GeneratorFactory,
    ImageGenerator,
    create_generator,
    register_generator,
)

__all__ = [
    "GENERATORS",
    "GenerationSettings",
    "GeneratorFactory",
    "ImageGenerator",
    "create_generator",
    "register_generator",
]

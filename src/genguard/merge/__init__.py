"""Checkpoint merging: streaming, bounded-memory merges of safetensors checkpoints.

The public surface is small: :func:`load_config` / :func:`parse_config` turn a YAML
recipe into a validated :class:`MergeConfig`, :func:`merge` streams the result to disk,
and :func:`register_merge_method` adds a method to the registry. See docs/merge.md.
"""

from genguard.merge.blocks import Architecture, block_of, detect_architecture
from genguard.merge.config import BlockWeights, MergeConfig, ModelSpec, load_config, parse_config
from genguard.merge.engine import MergeInputError, MergeReport, merge
from genguard.merge.methods import (
    MERGE_METHODS,
    MergeMethod,
    TensorContext,
    register_merge_method,
)
from genguard.merge.safetensors_io import SafetensorsFormatError, SafetensorsReader

__all__ = [
    "MERGE_METHODS",
    "Architecture",
    "BlockWeights",
    "MergeConfig",
    "MergeInputError",
    "MergeMethod",
    "MergeReport",
    "ModelSpec",
    "SafetensorsFormatError",
    "SafetensorsReader",
    "TensorContext",
    "block_of",
    "detect_architecture",
    "load_config",
    "merge",
    "parse_config",
    "register_merge_method",
]

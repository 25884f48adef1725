"""Checkpoint merging: streaming, bounded-memory merges of safetensors checkpoints.

The public surface is small: :func:`load_config` / :func:`parse_config` turn a YAML
recipe into a validated :class:`MergeConfig`, :func:`merge` streams the result to disk,
and :func:`register_merge_method` adds a method to the registry. See docs/merge.md.
:func:`bake_lora` / :func:`extract_lora` bake LoRAs into a checkpoint and extract them
(docs/lora.md); :class:`DiffusersFolderReader` reads a diffusers folder as a checkpoint.
"""

from genguard.merge.blocks import Architecture, block_of, detect_architecture
from genguard.merge.config import BlockWeights, MergeConfig, ModelSpec, load_config, parse_config
from genguard.merge.engine import MergeInputError, MergeReport, merge
from genguard.merge.keys import DiffusersFolderReader
from genguard.merge.lora import LoraError, LoraSpec
from genguard.merge.lora import bake as bake_lora
from genguard.merge.lora import extract as extract_lora
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
    "DiffusersFolderReader",
    "LoraError",
    "LoraSpec",
    "MergeConfig",
    "MergeInputError",
    "MergeMethod",
    "MergeReport",
    "ModelSpec",
    "SafetensorsFormatError",
    "SafetensorsReader",
    "TensorContext",
    "bake_lora",
    "block_of",
    "detect_architecture",
    "extract_lora",
    "load_config",
    "merge",
    "parse_config",
    "register_merge_method",
]

"""Checkpoint layouts (SD 1.x / 2.x / SDXL) and the UNet block scheme of per-block merging.

Hobbyist block-weighted merging (sdweb-merge-block-weighted-gui, sd-webui-supermerger)
names the original LDM UNet's blocks ``IN00..IN11``, ``M00``, ``OUT00..OUT11`` for SD 1.x
and 2.x (25 blocks), and ``IN00..IN08``, ``M00``, ``OUT00..OUT08`` for SDXL (19 blocks).
Everything outside the UNet (text encoders, VAE) uses the ``BASE`` weight. Following
those tools, the UNet's ``time_embed`` (and SDXL's ``label_emb``) belong to ``IN00`` and
the final ``out.`` layers to the last output block, so a weight list written for those
tools means the same thing here. Weight lists may have one entry per block, or one more
with ``BASE`` first (supermerger's 26/20-value form).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

UNET_PREFIX = "model.diffusion_model."
BASE_BLOCK = "BASE"

_RE_INPUT = re.compile(r"^model\.diffusion_model\.input_blocks\.(\d+)\.")
_RE_OUTPUT = re.compile(r"^model\.diffusion_model\.output_blocks\.(\d+)\.")
_MIDDLE = UNET_PREFIX + "middle_block."
_BEFORE_INPUT = (UNET_PREFIX + "time_embed.", UNET_PREFIX + "label_emb.")
_FINAL_OUT = UNET_PREFIX + "out."


#: Keys of LoRA / LyCORIS files: kohya (``lora_unet_*.lora_down.weight``, ``lora_te_*``),
#: diffusers (``*.lora.down.weight``) and PEFT (``*.lora_A.weight``) naming.
_RE_LORA = re.compile(
    r"(^lora_(unet|te\d?)_)|[._]lora[._](down|up)\.|\.lora_[AB]\.|\.(hada|lokr)_w\d"
)


def is_lora(keys: Iterable[str]) -> bool:
    """Whether a file's keys are those of a LoRA (an add-on), not a full checkpoint."""
    keys = list(keys)
    lora = sum(1 for k in keys if _RE_LORA.search(k))
    alphas = sum(1 for k in keys if k.endswith(".alpha"))
    return lora > 0 and 2 * (lora + alphas) >= len(keys)


class Architecture(StrEnum):
    """Single-file checkpoint families we recognise, by their key layout."""

    SD1 = "sd1"  # CLIP ViT-L text encoder: cond_stage_model.transformer.*
    SD2 = "sd2"  # OpenCLIP ViT-H text encoder: cond_stage_model.model.*
    SDXL = "sdxl"  # two text encoders: conditioner.embedders.{0,1}.*
    UNKNOWN = "unknown"

    @property
    def n_levels(self) -> int:
        """Input (and output) blocks of the UNet: 12 for SD 1.x/2.x, 9 for SDXL."""
        return 9 if self is Architecture.SDXL else 12

    @property
    def block_names(self) -> list[str]:
        """Block names in order (without BASE); empty when the layout is unknown."""
        if self is Architecture.UNKNOWN:
            return []
        n = self.n_levels
        return [f"IN{i:02d}" for i in range(n)] + ["M00"] + [f"OUT{i:02d}" for i in range(n)]


def detect_architecture(keys: Iterable[str]) -> Architecture:
    """Guess the checkpoint family from its key names (no tensor data needed)."""
    has_unet = False
    max_input = -1
    text = Architecture.UNKNOWN
    for key in keys:
        if key.startswith("conditioner.embedders."):
            return Architecture.SDXL
        if key.startswith(UNET_PREFIX + "label_emb."):
            return Architecture.SDXL
        if key.startswith("cond_stage_model.transformer."):
            text = Architecture.SD1
        elif key.startswith("cond_stage_model.model."):
            text = Architecture.SD2
        m = _RE_INPUT.match(key)
        if m:
            has_unet = True
            max_input = max(max_input, int(m.group(1)))
        elif key.startswith(UNET_PREFIX):
            has_unet = True
    if text is not Architecture.UNKNOWN:
        return text
    if has_unet:  # UNet-only file: SDXL's UNet stops at input_blocks.8
        return Architecture.SDXL if 0 <= max_input <= 8 else Architecture.SD1
    return Architecture.UNKNOWN


def block_of(key: str, arch: Architecture) -> str:
    """The block a tensor belongs to (``IN03``, ``M00``, ``OUT11``...), or ``BASE``."""
    if arch is Architecture.UNKNOWN or not key.startswith(UNET_PREFIX):
        return BASE_BLOCK
    m = _RE_INPUT.match(key)
    if m:
        return f"IN{int(m.group(1)):02d}"
    m = _RE_OUTPUT.match(key)
    if m:
        return f"OUT{int(m.group(1)):02d}"
    if key.startswith(_MIDDLE):
        return "M00"
    if key.startswith(_BEFORE_INPUT):
        return "IN00"
    if key.startswith(_FINAL_OUT):
        return f"OUT{arch.n_levels - 1:02d}"
    return BASE_BLOCK


def component_of(key: str) -> str:
    """Coarse component of a key, for reports: unet, text_encoder, vae or other."""
    if key.startswith(UNET_PREFIX):
        return "unet"
    if key.startswith(("cond_stage_model.", "conditioner.")):
        return "text_encoder"
    if key.startswith("first_stage_model."):
        return "vae"
    return "other"

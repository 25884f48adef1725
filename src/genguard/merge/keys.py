"""Key names of diffusers-format models and of the original (LDM) single-file layout.

A diffusers model is a folder (``unet/diffusion_pytorch_model.safetensors``,
``text_encoder/model.safetensors``, ``vae/diffusion_pytorch_model.safetensors``, and
``text_encoder_2/`` for SDXL) whose tensors are named after the diffusers/transformers
modules (``down_blocks.0.resnets.1.conv1.weight``). A single-file checkpoint names the
same tensors after the original LDM code (``model.diffusion_model.input_blocks.2.0.
in_layers.2.weight``). Merging, LoRA baking and LoRA extraction all work in the LDM
names, so this module translates, in both directions:

* the UNet (SD 1.x/2.x/SDXL; the block numbering is derived from the keys, so tiny test
  UNets with other depths map too),
* the CLIP ViT-L text encoder (a prefix only),
* the OpenCLIP text encoders of SD 2.x and SDXL (renames, and q/k/v projections that the
  LDM layout fuses into one ``in_proj_weight``: a :class:`Target` names the row part),
* the VAE (renames; the mid-block attention is a 1x1 conv in LDM, a linear in diffusers).

:class:`DiffusersFolderReader` presents a diffusers folder as one checkpoint with LDM key
names, reading (and fusing, transposing, reshaping) one tensor at a time, so the merge
engine streams it like any single file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from genguard.merge.blocks import UNET_PREFIX
from genguard.merge.safetensors_io import (
    RAW_DTYPES,
    SafetensorsFormatError,
    SafetensorsReader,
    TensorInfo,
)


class Transform(StrEnum):
    """How a diffusers tensor's data becomes (part of) the LDM tensor."""

    NONE = ""
    TRANSPOSE = "transpose"  # OpenCLIP text_projection: Linear weight vs. x @ P
    CONV1X1 = "conv1x1"  # VAE attention: Linear (c, c) vs. Conv2d (c, c, 1, 1)


@dataclass(frozen=True)
class Target:
    """Where a diffusers tensor lives in the LDM layout.

    ``part`` is set for the q/k/v projections of OpenCLIP, which the LDM layout stores as
    rows ``part*d:(part+1)*d`` of one fused ``in_proj_weight`` / ``in_proj_bias``.
    """

    key: str
    part: int | None = None
    transform: Transform = Transform.NONE


#: Renames inside a UNet resnet block (diffusers -> LDM).
_UNET_RESNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("conv_shortcut.", "skip_connection."),
)
_VAE_RESNET = (("conv_shortcut.", "nin_shortcut."),)
_VAE_ATTN = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)
_OPENCLIP_LAYER = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)
_QKV = ("q_proj", "k_proj", "v_proj")
_OPENCLIP_FIXED = {
    "text_model.embeddings.token_embedding.weight": Target("token_embedding.weight"),
    "text_model.embeddings.position_embedding.weight": Target("positional_embedding"),
    "text_model.final_layer_norm.weight": Target("ln_final.weight"),
    "text_model.final_layer_norm.bias": Target("ln_final.bias"),
    "text_projection.weight": Target("text_projection", transform=Transform.TRANSPOSE),
}


@dataclass(frozen=True)
class _Pair:
    """A diffusers prefix, its LDM prefix, and the renames that apply below them."""

    diffusers: str
    ldm: str
    renames: tuple[tuple[str, str], ...] = ()


def _rename(rest: str, renames: tuple[tuple[str, str], ...], forward: bool) -> str:
    for d, ldm in renames:
        src, dst = (d, ldm) if forward else (ldm, d)
        if rest.startswith(src):
            return dst + rest[len(src) :]
    return rest


def _convert(key: str, pairs: list[_Pair], forward: bool) -> tuple[str, _Pair] | None:
    """Longest-prefix substitution of ``key`` (diffusers -> LDM when ``forward``)."""
    best: _Pair | None = None
    for p in pairs:
        src = p.diffusers if forward else p.ldm
        if key.startswith(src) and (
            best is None or len(src) > len(best.diffusers if forward else best.ldm)
        ):
            best = p
    if best is None:
        return None
    src, dst = (best.diffusers, best.ldm) if forward else (best.ldm, best.diffusers)
    return dst + _rename(key[len(src) :], best.renames, forward), best


# --------------------------------------------------------------------------- UNet


@dataclass(frozen=True)
class UNetLayout:
    """The shape of a UNet's block structure, which fixes the LDM block numbering.

    ``layers`` is diffusers' ``layers_per_block`` (resnets per down block; up blocks have
    one more); ``down_attn`` / ``up_attn`` say which levels have cross-attention (listed
    in diffusers order: ``up_blocks.0`` is the deepest level).
    """

    layers: int
    down_attn: tuple[bool, ...]
    up_attn: tuple[bool, ...]

    @classmethod
    def from_diffusers_keys(cls, keys: Iterable[str]) -> UNetLayout:
        """Derive the layout from the keys of a diffusers UNet state dict."""
        keys = list(keys)
        resnets = [
            int(m.group(1)) for k in keys if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))
        ]
        levels = 1 + max(
            (int(m.group(1)) for k in keys if (m := re.match(r"down_blocks\.(\d+)\.", k))),
            default=-1,
        )
        if not resnets or levels == 0:
            raise SafetensorsFormatError("not a diffusers UNet: no down_blocks.0.resnets.* keys")
        down = tuple(
            any(k.startswith(f"down_blocks.{i}.attentions.") for k in keys) for i in range(levels)
        )
        up = tuple(
            any(k.startswith(f"up_blocks.{i}.attentions.") for k in keys) for i in range(levels)
        )
        return cls(max(resnets) + 1, down, up)

    @classmethod
    def from_ldm_keys(cls, keys: Iterable[str]) -> UNetLayout:
        """Derive the layout from LDM keys (``model.diffusion_model.*``)."""
        keys = [k[len(UNET_PREFIX) :] for k in keys if k.startswith(UNET_PREFIX)]
        ops = sorted(
            {int(m.group(1)) for k in keys if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.", k))}
        )
        inputs = [int(m.group(1)) for k in keys if (m := re.match(r"input_blocks\.(\d+)\.", k))]
        if not inputs:
            raise SafetensorsFormatError(
                "not an LDM UNet: no model.diffusion_model.input_blocks.* keys"
            )
        layers = ops[0] - 1 if ops else max(inputs)
        levels = len(ops) + 1
        step = layers + 1
        down = tuple(
            any(k.startswith(f"input_blocks.{1 + i * step}.1.") for k in keys)
            for i in range(levels)
        )
        # output_blocks.{i*step}.1 is an attention (never the upsampler, which is last)
        up = tuple(
            any(k.startswith(f"output_blocks.{i * step}.1.") for k in keys) for i in range(levels)
        )
        return cls(layers, down, up)

    def pairs(self) -> list[_Pair]:
        """The (diffusers prefix, LDM prefix) table of this layout, LDM side unprefixed."""
        pairs = [
            _Pair("time_embedding.linear_1.", "time_embed.0."),
            _Pair("time_embedding.linear_2.", "time_embed.2."),
            _Pair("add_embedding.linear_1.", "label_emb.0.0."),
            _Pair("add_embedding.linear_2.", "label_emb.0.2."),
            _Pair("conv_in.", "input_blocks.0.0."),
            _Pair("conv_norm_out.", "out.0."),
            _Pair("conv_out.", "out.2."),
            _Pair("mid_block.resnets.0.", "middle_block.0.", _UNET_RESNET),
            _Pair("mid_block.attentions.0.", "middle_block.1."),
            _Pair("mid_block.resnets.1.", "middle_block.2.", _UNET_RESNET),
        ]
        step, levels = self.layers + 1, len(self.down_attn)
        for i in range(levels):
            for j in range(self.layers):
                n = 1 + i * step + j
                pairs.append(
                    _Pair(f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{n}.0.", _UNET_RESNET)
                )
                if self.down_attn[i]:
                    pairs.append(_Pair(f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{n}.1."))
            if i < levels - 1:
                pairs.append(
                    _Pair(
                        f"down_blocks.{i}.downsamplers.0.conv.",
                        f"input_blocks.{(i + 1) * step}.0.op.",
                    )
                )
            for j in range(step):
                n = i * step + j
                pairs.append(
                    _Pair(f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{n}.0.", _UNET_RESNET)
                )
                if self.up_attn[i]:
                    pairs.append(_Pair(f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{n}.1."))
            if i < levels - 1:
                sub = 2 if self.up_attn[i] else 1
                pairs.append(
                    _Pair(
                        f"up_blocks.{i}.upsamplers.0.",
                        f"output_blocks.{i * step + self.layers}.{sub}.",
                    )
                )
        return [_Pair(p.diffusers, UNET_PREFIX + p.ldm, p.renames) for p in pairs]


# ---------------------------------------------------------------------------- VAE


def _vae_pairs(levels: int, prefix: str) -> list[_Pair]:
    pairs = [_Pair("", "")]  # conv_in, conv_out, quant_conv...: same names
    for part in ("encoder", "decoder"):
        pairs += [
            _Pair(f"{part}.conv_norm_out.", f"{part}.norm_out."),
            _Pair(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", _VAE_RESNET),
            _Pair(f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", _VAE_RESNET),
            _Pair(f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", _VAE_ATTN),
        ]
    for i in range(levels):
        k = levels - 1 - i  # decoder up blocks are numbered the other way round in LDM
        pairs += [
            _Pair(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", _VAE_RESNET),
            _Pair(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."),
            _Pair(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{k}.block.", _VAE_RESNET),
            _Pair(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{k}.upsample."),
        ]
    return [_Pair(p.diffusers, prefix + p.ldm, p.renames) for p in pairs]


def _vae_levels(keys: Iterable[str], pattern: str) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.search(pattern, k))]
    return max(found, default=-1) + 1


# ----------------------------------------------------------------- text encoders


class TextEncoderKind(StrEnum):
    """The two text-encoder layouts of SD checkpoints."""

    CLIP = "clip"  # HF CLIPTextModel names under a prefix (SD 1.x, SDXL's first)
    OPENCLIP = "openclip"  # OpenCLIP names, fused qkv (SD 2.x, SDXL's second)


def _openclip_to_ldm(key: str, prefix: str) -> Target | None:
    if key in _OPENCLIP_FIXED:
        t = _OPENCLIP_FIXED[key]
        return Target(prefix + t.key, t.part, t.transform)
    m = re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)$", key)
    if not m:
        return None
    layer, rest = m.groups()
    base = f"{prefix}transformer.resblocks.{layer}."
    q = re.match(r"self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)$", rest)
    if q:
        return Target(f"{base}attn.in_proj_{q.group(2)}", part=_QKV.index(q.group(1)))
    renamed = _rename(rest, _OPENCLIP_LAYER, forward=True)
    return Target(base + renamed) if renamed != rest else None


def _openclip_to_diffusers(key: str, prefix: str) -> list[tuple[str, Target]]:
    """Diffusers names (several for a fused in_proj) of one OpenCLIP LDM key."""
    rest = key[len(prefix) :]
    for dkey, t in _OPENCLIP_FIXED.items():
        if t.key == rest:
            return [(dkey, Target(key, None, t.transform))]
    m = re.match(r"transformer\.resblocks\.(\d+)\.(.+)$", rest)
    if not m:
        return []
    layer, sub = m.groups()
    base = f"text_model.encoder.layers.{layer}."
    fused = re.match(r"attn\.in_proj_(weight|bias)$", sub)
    if fused:
        return [
            (f"{base}self_attn.{p}.{fused.group(1)}", Target(key, i)) for i, p in enumerate(_QKV)
        ]
    renamed = _rename(sub, _OPENCLIP_LAYER, forward=False)
    return [(base + renamed, Target(key))] if renamed != sub else []


# ------------------------------------------------------------------ components


@dataclass(frozen=True)
class Component:
    """One diffusers sub-model and where it sits in the single-file checkpoint."""

    folder: str  # unet, text_encoder, text_encoder_2, vae
    kind: str  # unet | vae | clip | openclip
    prefix: str  # LDM prefix of its keys


def sd_components(te_kind: TextEncoderKind, sdxl: bool) -> list[Component]:
    """The components of an SD 1.x / 2.x (``te_kind``) or SDXL pipeline folder."""
    if sdxl:
        te = [
            Component("text_encoder", "clip", "conditioner.embedders.0.transformer."),
            Component("text_encoder_2", "openclip", "conditioner.embedders.1.model."),
        ]
    elif te_kind is TextEncoderKind.OPENCLIP:
        te = [Component("text_encoder", "openclip", "cond_stage_model.model.")]
    else:
        te = [Component("text_encoder", "clip", "cond_stage_model.transformer.")]
    return [
        Component("unet", "unet", UNET_PREFIX),
        *te,
        Component("vae", "vae", "first_stage_model."),
    ]


def diffusers_to_ldm(keys: Iterable[str], component: Component) -> dict[str, Target]:
    """Map every key of one diffusers component to its LDM target.

    Raises :class:`SafetensorsFormatError` naming the keys that have no LDM name (a
    component of another model family), so nothing is dropped silently.
    """
    keys = list(keys)
    out: dict[str, Target] = {}
    if component.kind == "unet":
        pairs = UNetLayout.from_diffusers_keys(keys).pairs()
    elif component.kind == "vae":
        pairs = _vae_pairs(_vae_levels(keys, r"^decoder\.up_blocks\.(\d+)\."), component.prefix)
    else:
        pairs = []
    unmapped = []
    for key in keys:
        if component.kind == "clip":
            out[key] = Target(component.prefix + key)
        elif component.kind == "openclip":
            t = _openclip_to_ldm(key, component.prefix)
            if t is None:
                unmapped.append(key)
            else:
                out[key] = t
        else:
            converted = _convert(key, pairs, forward=True)
            if converted is None:
                unmapped.append(key)
                continue
            ldm, pair = converted
            conv = pair.renames is _VAE_ATTN and key.endswith(".weight") and "group_norm" not in key
            out[key] = Target(ldm, transform=Transform.CONV1X1 if conv else Transform.NONE)
    if unmapped:
        shown = ", ".join(unmapped[:5])
        raise SafetensorsFormatError(
            f"{component.folder}: {len(unmapped)} key(s) have no single-file name: {shown}"
        )
    return out


def ldm_to_diffusers(
    keys: Iterable[str], components: list[Component]
) -> dict[str, list[tuple[str, str, Target]]]:
    """Map LDM keys to ``(component folder, diffusers key, target)`` triples.

    A fused OpenCLIP ``in_proj_weight`` has three entries (q, k, v); keys outside every
    component map to an empty list.
    """
    keys = list(keys)
    out: dict[str, list[tuple[str, str, Target]]] = {k: [] for k in keys}
    pairs: list[_Pair] = []
    for comp in components:
        own = [k for k in keys if k.startswith(comp.prefix)]
        if not own:
            continue
        if comp.kind == "unet":
            pairs = UNetLayout.from_ldm_keys(own).pairs()
        elif comp.kind == "vae":
            pairs = _vae_pairs(_vae_levels(own, r"\.decoder\.up\.(\d+)\."), comp.prefix)
        for key in own:
            if comp.kind == "clip":
                out[key] = [(comp.folder, key[len(comp.prefix) :], Target(key))]
            elif comp.kind == "openclip":
                out[key] = [
                    (comp.folder, d, t) for d, t in _openclip_to_diffusers(key, comp.prefix)
                ]
            else:
                converted = _convert(key, pairs, forward=False)
                if converted is not None:
                    out[key] = [(comp.folder, converted[0], Target(key))]
    return out


def unet_ldm_to_diffusers_names(keys: Iterable[str]) -> dict[str, str]:
    """Diffusers names of the LDM UNet keys among ``keys`` (others are left out)."""
    own = [k for k in keys if k.startswith(UNET_PREFIX)]
    if not own:
        return {}
    pairs = UNetLayout.from_ldm_keys(own).pairs()
    names = {}
    for key in own:
        converted = _convert(key, pairs, forward=False)
        if converted is not None:
            names[key] = converted[0]
    return names


# ------------------------------------------------------------- folder reader

_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")


def is_diffusers_folder(path: Path) -> bool:
    """Whether ``path`` is a diffusers pipeline folder (``unet/`` or ``model_index.json``)."""
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / "unet").is_dir())


def _weights_file(folder: Path) -> Path | None:
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    if any(folder.glob("*.safetensors.index.json")):
        raise SafetensorsFormatError(
            f"{folder}: sharded weights (*.safetensors.index.json) are not supported; "
            "save the model unsharded (save_pretrained(max_shard_size='100GB'))"
        )
    if any(folder.glob("*.bin")):
        raise SafetensorsFormatError(
            f"{folder}: only pickle (.bin) weights; save them as safetensors first "
            "(save_pretrained(safe_serialization=True))"
        )
    return None


def _text_encoder_kind(folder: Path) -> TextEncoderKind:
    """OpenCLIP (SD 2.x) text encoders use plain GELU, OpenAI's CLIP quick_gelu."""
    config = folder / "text_encoder" / "config.json"
    try:
        act = json.loads(config.read_text(encoding="utf-8")).get("hidden_act", "quick_gelu")
    except (OSError, ValueError):
        act = "quick_gelu"
    return TextEncoderKind.OPENCLIP if act == "gelu" else TextEncoderKind.CLIP


@dataclass(frozen=True)
class _Source:
    """The diffusers tensors an LDM tensor is made from (several for a fused qkv)."""

    reader: SafetensorsReader
    keys: tuple[str, ...]
    transform: Transform


class DiffusersFolderReader(SafetensorsReader):
    """A diffusers pipeline folder, read as one checkpoint with LDM key names.

    Only headers are read up front; each :meth:`read_raw` reads the one or three source
    tensors it needs, so memory stays at one tensor like for a single file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.metadata: dict[str, str] = {}
        self._readers: list[SafetensorsReader] = []
        self._sources: dict[str, _Source] = {}
        self.tensors: dict[str, TensorInfo] = {}
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        sdxl = (self.path / "text_encoder_2").is_dir()
        found = False
        for comp in sd_components(_text_encoder_kind(self.path), sdxl):
            file = _weights_file(self.path / comp.folder)
            if file is None:
                continue
            found = True
            reader = SafetensorsReader(file)
            self._readers.append(reader)
            grouped: dict[str, list[tuple[int, str, Target]]] = {}
            for dkey, target in diffusers_to_ldm(reader.tensors, comp).items():
                grouped.setdefault(target.key, []).append((target.part or 0, dkey, target))
            for ldm, parts in grouped.items():
                parts.sort()
                self._add(ldm, reader, parts)
        if not found:
            raise SafetensorsFormatError(
                f"{self.path}: no unet/, text_encoder/ or vae/ weights in .safetensors"
            )

    def _add(
        self, ldm: str, reader: SafetensorsReader, parts: list[tuple[int, str, Target]]
    ) -> None:
        infos = [reader.tensors[d] for _, d, _ in parts]
        transform = parts[0][2].transform
        if parts[0][2].part is not None and [p for p, _, _ in parts] != [0, 1, 2]:
            raise SafetensorsFormatError(f"{self.path}: {ldm} needs q, k and v projections")
        shape = infos[0].shape
        if len(parts) > 1:
            shape = (sum(i.shape[0] for i in infos), *shape[1:])
        if transform is Transform.TRANSPOSE:
            shape = shape[::-1]
        elif transform is Transform.CONV1X1:
            shape = (*shape, 1, 1)
        nbytes = sum(i.nbytes for i in infos)
        self.tensors[ldm] = TensorInfo(infos[0].dtype, tuple(shape), 0, nbytes)
        self._sources[ldm] = _Source(reader, tuple(d for _, d, _ in parts), transform)

    def read_raw(self, key: str) -> np.ndarray:
        """Read the LDM tensor ``key``, assembled from its diffusers source tensor(s)."""
        src = self._sources[key]
        arrays = [src.reader.read_raw(k) for k in src.keys]
        raw = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        if src.transform is Transform.TRANSPOSE:
            raw = np.ascontiguousarray(raw.T)
        return raw.reshape(self.tensors[key].shape).astype(
            RAW_DTYPES[self.tensors[key].dtype], copy=False
        )

    def close(self) -> None:
        """Release every component's file handle."""
        for r in self._readers:
            r.close()

"""Bake LoRA / LyCORIS files into a checkpoint, and extract a LoRA from two checkpoints.

Bake: for every weight a LoRA module targets,

    W' = W + strength * block_strength * (alpha / rank) * delta

where ``delta = up @ down`` for LoRA/LoCon (kohya ``lora_up``/``lora_down``, diffusers
``lora.up``/``lora.down``, PEFT ``lora_B``/``lora_A``) and ``delta = (w1_a @ w1_b) *
(w2_a @ w2_b)`` for LoHa. A missing ``alpha`` means ``alpha = rank`` (scale 1), which is
what diffusers/PEFT files without alphas mean. Conv factors are flattened to matrices
(``down`` (r, in, kh, kw) -> (r, in*kh*kw), ``up`` (out, r, 1, 1) -> (out, r)), and
``delta`` is reshaped back to the weight's shape: a 3x3 LoCon and a 1x1 conv both work,
and so does a linear LoRA aimed at a 1x1 conv (SD 1.x ``proj_in``).

LoRA module names are matched against the checkpoint's own (LDM) key names: every
targetable weight gets its kohya name (``lora_unet_`` + name with ``_``), in both the LDM
spelling (SDXL kohya files) and the diffusers spelling (SD 1.x/2.x kohya files,
diffusers/PEFT files), so no table of known models is needed. OpenCLIP text encoders
(SD 2.x, SDXL's second) fuse q/k/v into one ``in_proj_weight``; their q/k/v LoRAs patch
the matching third of its rows.

Everything checkable from headers (names, ranks, shapes) is checked before a byte is
written; the output is then streamed one tensor at a time like a merge, with NaN/inf
checks on each patched tensor and LoRA factor as it is read.

Extract: ``delta = tuned - base`` per linear/conv weight, truncated SVD ``U S V^T`` to
rank R, stored as ``up = U sqrt(S)``, ``down = sqrt(S) V^T`` with ``alpha = R``. The
bake of that LoRA onto the base differs from the tuned model by exactly the dropped
singular values (Eckart-Young: Frobenius error ``sqrt(sum of S[R:]^2)`` per weight).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genguard import __version__
from genguard.errors import ConfigError, GenguardError
from genguard.merge.blocks import (
    BASE_BLOCK,
    UNET_PREFIX,
    Architecture,
    block_of,
    detect_architecture,
    is_lora,
)
from genguard.merge.keys import (
    TextEncoderKind,
    ldm_to_diffusers,
    sd_components,
    unet_ldm_to_diffusers_names,
)
from genguard.merge.safetensors_io import (
    DTYPE_ALIASES,
    OutputTensor,
    SafetensorsReader,
    SafetensorsWriter,
    from_float32,
    save_arrays,
    write_order,
)

_MAX_LISTED = 5
#: Suffixes of LoRA tensors, by role. Unknown suffixes of a matched module are errors.
_ROLE_SUFFIXES = {
    "down": (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight"),
    "up": (".lora_up.weight", ".lora_B.weight", ".lora.up.weight", "_lora.up.weight"),
    "alpha": (".alpha",),
    "w1_a": (".hada_w1_a",),
    "w1_b": (".hada_w1_b",),
    "w2_a": (".hada_w2_a",),
    "w2_b": (".hada_w2_b",),
}
#: LyCORIS parts we recognise but cannot bake correctly yet: refused, never dropped.
_UNSUPPORTED = {
    ".lora_mid.weight": "LoCon with Tucker decomposition (lora_mid)",
    ".hada_t1": "LoHa with Tucker decomposition (hada_t1)",
    ".hada_t2": "LoHa with Tucker decomposition (hada_t2)",
    ".dora_scale": "DoRA (dora_scale)",
    ".lokr_w1": "LoKr",
    ".lokr_w1_a": "LoKr",
    ".lokr_w2": "LoKr",
    ".lokr_w2_a": "LoKr",
    ".diff": "full-weight LyCORIS (diff)",
    ".diff_b": "full-weight LyCORIS (diff_b)",
}
_UNET_MODULE_PREFIXES = ("unet.", "base_model.model.")


class LoraError(GenguardError):
    """A LoRA cannot be baked or extracted as asked (names, ranks, shapes, values)."""

    code = "bad_lora"


@dataclass(frozen=True)
class LoraTarget:
    """The checkpoint weight a LoRA module patches (a row third for OpenCLIP q/k/v)."""

    key: str
    part: int | None = None


@dataclass
class LoraModule:
    """One LoRA module of a file: its tensor keys by role."""

    name: str
    tensors: dict[str, str] = field(default_factory=dict)  # role -> key in the file

    @property
    def kind(self) -> str:
        """``lora`` or ``loha``."""
        return "loha" if "w1_a" in self.tensors else "lora"


def _underscored(name: str) -> str:
    return name.replace(".", "_")


def _kohya_te_prefixes(arch: Architecture) -> tuple[str, ...]:
    return ("lora_te1_", "lora_te2_") if arch is Architecture.SDXL else ("lora_te_",)


def target_names(
    shapes: dict[str, tuple[int, ...]], arch: Architecture
) -> dict[str, list[tuple[str, LoraTarget]]]:
    """Kohya module names of every LoRA-targetable weight, preferred spelling first.

    The preferred spelling is the one kohya's sd-scripts writes: diffusers UNet names for
    SD 1.x/2.x, LDM names for SDXL, and HF CLIP names for every text encoder.
    """
    keys = [k for k, shape in shapes.items() if len(shape) in (2, 4) and _is_weight(k)]
    names: dict[str, list[tuple[str, LoraTarget]]] = {}
    unet_diffusers = unet_ldm_to_diffusers_names(keys)
    te_kind = TextEncoderKind.OPENCLIP if arch is Architecture.SD2 else TextEncoderKind.CLIP
    text = [
        c for c in sd_components(te_kind, arch is Architecture.SDXL) if c.folder.startswith("text")
    ]
    te_names = ldm_to_diffusers(keys, text)
    te_prefix = dict(
        zip(("text_encoder", "text_encoder_2"), _kohya_te_prefixes(arch), strict=False)
    )
    for key in keys:
        found: list[tuple[str, LoraTarget]] = []
        if key.startswith(UNET_PREFIX):
            ldm = "lora_unet_" + _underscored(key[len(UNET_PREFIX) : -len(".weight")])
            found.append((ldm, LoraTarget(key)))
            if key in unet_diffusers:
                diff = "lora_unet_" + _underscored(unet_diffusers[key][: -len(".weight")])
                found.insert(0 if arch is not Architecture.SDXL else 1, (diff, LoraTarget(key)))
        for folder, dkey, target in te_names.get(key, []):
            if dkey.endswith(".weight") and folder in te_prefix:
                name = te_prefix[folder] + _underscored(dkey[: -len(".weight")])
                found.append((name, LoraTarget(key, target.part)))
        if found:
            names[key] = found
    return names


def _is_weight(key: str) -> bool:
    """Linear/conv weights: what LoRA modules patch (not norms, embeddings, biases)."""
    if not (key.endswith(".weight") or key.endswith(".in_proj_weight")):
        return False
    return "embedding" not in key and "norm" not in key and not key.startswith("first_stage_model.")


#: diffusers' legacy attention-processor names (``attn2.processor.to_k_lora``) -> modules.
_LEGACY_RENAMES = (
    (re.compile(r"\.processor\."), "."),
    (re.compile(r"self_attn\.to_([qkv])$"), r"self_attn.\1_proj"),
    (re.compile(r"self_attn\.to_out$"), "self_attn.out_proj"),
    (re.compile(r"\.to_out$"), ".to_out.0"),
)


def kohya_name(module: str, arch: Architecture) -> str | None:
    """The kohya spelling of a module name in any supported format, or None."""
    if module.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")):
        return module
    for pattern, replacement in _LEGACY_RENAMES:
        module = pattern.sub(replacement, module)
    for prefix in _UNET_MODULE_PREFIXES:
        if module.startswith(prefix):
            return "lora_unet_" + _underscored(module[len(prefix) :])
    if module.startswith("text_encoder_2."):
        return "lora_te2_" + _underscored(module[len("text_encoder_2.") :])
    if module.startswith("text_encoder."):
        te = "lora_te1_" if arch is Architecture.SDXL else "lora_te_"
        return te + _underscored(module[len("text_encoder.") :])
    return None


def group_modules(keys: list[str], path: Path) -> dict[str, LoraModule]:
    """Group a LoRA file's keys into modules; refuse LyCORIS variants we cannot bake."""
    modules: dict[str, LoraModule] = {}
    for key in keys:
        for suffix, what in _UNSUPPORTED.items():
            if key.endswith(suffix):
                raise LoraError(f"{path.name}: {key}: {what} is not supported yet")
        for role, suffixes in _ROLE_SUFFIXES.items():
            end = next((s for s in suffixes if key.endswith(s)), "")
            if end:
                name = key[: -len(end)]
                modules.setdefault(name, LoraModule(name)).tensors[role] = key
                break
    return modules


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to bake and its global strength."""

    path: Path
    strength: float = 1.0


@dataclass(frozen=True)
class _Patch:
    lora: int  # index into the LoRA readers
    module: LoraModule
    target: LoraTarget
    rows: int  # rows of delta (out features)


@dataclass
class BakeReport:
    """What a bake did, for the CLI summary and for callers."""

    output: Path
    architecture: str
    tensors: int = 0
    patched: int = 0  # checkpoint tensors changed
    applied: list[int] = field(default_factory=list)  # modules applied, per LoRA
    unmapped: list[list[str]] = field(default_factory=list)  # module names, per LoRA
    bytes_written: int = 0
    seconds: float = 0.0


ProgressFn = Callable[[int, int, str], None]


def _list(items: list[str]) -> str:
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _delta_shape(module: LoraModule, reader: SafetensorsReader) -> tuple[int, int, int]:
    """(rows, columns, rank) of a module's delta, from headers; rank mismatches raise."""
    t = {role: reader.tensors[k].shape for role, k in module.tensors.items() if role != "alpha"}
    where = f"{reader.path.name}: {module.name}"
    if module.kind == "lora":
        if "up" not in t or "down" not in t:
            raise LoraError(
                f"{where}: has {'down' if 'down' in t else 'up'} but not the other factor"
            )
        up, down = t["up"], t["down"]
        if len(up) not in (2, 4) or len(down) not in (2, 4) or math.prod(up[2:]) != 1:
            raise LoraError(f"{where}: unsupported factor shapes up {list(up)}, down {list(down)}")
        if up[1] != down[0]:
            raise LoraError(f"{where}: rank mismatch: up has rank {up[1]}, down has rank {down[0]}")
        return up[0], math.prod(down[1:]), down[0]
    missing = [r for r in ("w1_a", "w1_b", "w2_a", "w2_b") if r not in t]
    if missing:
        raise LoraError(f"{where}: LoHa module lacks {', '.join('hada_' + m for m in missing)}")
    w1a, w1b, w2a, w2b = t["w1_a"], t["w1_b"], t["w2_a"], t["w2_b"]
    if w1a[1] != w1b[0] or w2a[1] != w2b[0]:
        raise LoraError(f"{where}: rank mismatch between hada_w1_a/b or hada_w2_a/b")
    if w1a[0] != w2a[0] or math.prod(w1b[1:]) != math.prod(w2b[1:]):
        raise LoraError(
            f"{where}: LoHa factor shapes {list(w1a)}x{list(w1b)} and "
            f"{list(w2a)}x{list(w2b)} differ"
        )
    return w1a[0], math.prod(w1b[1:]), w1b[0]


def _read(reader: SafetensorsReader, key: str) -> np.ndarray:
    """Read one LoRA tensor as float32, refusing NaN/inf with the key in the message."""
    values = reader.read_float32(key)
    if not np.isfinite(values).all():
        raise LoraError(f"{reader.path.name}: {key} contains NaN or inf")
    return values


def module_delta(module: LoraModule, reader: SafetensorsReader) -> np.ndarray:
    """``(alpha / rank) * delta`` of one module as an (out, in*kh*kw) float32 matrix."""
    t = module.tensors
    if module.kind == "lora":
        down = _read(reader, t["down"])
        up = _read(reader, t["up"])
        rank = down.shape[0]
        delta = up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)
    else:
        w1b = _read(reader, t["w1_b"])
        rank = w1b.shape[0]
        w1 = _read(reader, t["w1_a"]).reshape(-1, rank) @ w1b.reshape(rank, -1)
        w2b = _read(reader, t["w2_b"])
        w2 = _read(reader, t["w2_a"]).reshape(-1, w2b.shape[0]) @ w2b.reshape(w2b.shape[0], -1)
        delta = w1 * w2
    alpha = float(_read(reader, t["alpha"]).reshape(-1)[0]) if "alpha" in t else float(rank)
    return delta * np.float32(alpha / rank)


def parse_block_strengths(text: str | None, arch: Architecture) -> dict[str, float]:
    """Per-block strength table from ``--block-strengths``.

    Accepts supermerger's comma-separated lists (25/19 values, or 26/20 with BASE
    first), the LoRA Block Weight extension's short lists (17 values for SD 1.x/2.x, 12
    for SDXL: BASE then the blocks that hold attention layers; the others keep 1.0, as
    there), or ``NAME=VALUE`` pairs (``IN04=0.5,M00=0``; unnamed blocks keep 1.0).
    """
    names = [BASE_BLOCK, *arch.block_names]
    table = dict.fromkeys(names, 1.0)
    if not text:
        return table
    if not arch.block_names:
        raise ConfigError(
            "--block-strengths needs an SD 1.x/2.x/SDXL checkpoint; this layout is unknown"
        )
    items = [s.strip() for s in text.split(",") if s.strip()]
    if all("=" in s for s in items):
        for item in items:
            name, _, value = item.partition("=")
            name = name.strip().upper()
            if name not in table:
                raise ConfigError(
                    f"--block-strengths: unknown block {name} for {arch.value} "
                    f"(valid: BASE, {names[1]}..{names[-1]})"
                )
            table[name] = _float(value, item)
        return table
    values = [_float(v, v) for v in items]
    short = _LBW_SHORT[arch]
    if len(values) == len(short):
        return table | dict(zip(short, values, strict=True))
    if len(values) == len(names):
        return dict(zip(names, values, strict=True))
    if len(values) == len(names) - 1:
        return table | dict(zip(names[1:], values, strict=True))
    raise ConfigError(
        f"--block-strengths: {arch.value} takes {len(names) - 1} values ({names[1]}..{names[-1]}), "
        f"{len(names)} with BASE first, or {len(short)} (LoRA Block Weight form); got {len(values)}"
    )


_LBW_SHORT = {
    Architecture.SD1: [
        "BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
        "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11",
    ],
    Architecture.SDXL: [
        "BASE", "IN04", "IN05", "IN07", "IN08", "M00",
        "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05",
    ],
}  # fmt: skip
_LBW_SHORT[Architecture.SD2] = _LBW_SHORT[Architecture.SD1]
_LBW_SHORT[Architecture.UNKNOWN] = []


def _float(value: str, item: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise ConfigError(f"--block-strengths: {item!r} is not a number") from None
    if not math.isfinite(out):
        raise ConfigError(f"--block-strengths: {item!r} is not finite")
    return out


def _check_output(out: Path, inputs: list[Path], overwrite: bool) -> None:
    if out.suffix.lower() != ".safetensors":
        raise LoraError(f"-o {out}: genguard writes safetensors only; name the output .safetensors")
    if any(out.resolve() == p.resolve() for p in inputs):
        raise LoraError(f"-o {out} is one of the inputs; choose another file")
    if out.is_dir():
        raise LoraError(f"-o {out} is a folder; give a file name")
    if out.exists() and not overwrite:
        raise LoraError(f"-o {out} already exists; pass --force to overwrite it")


def _open(path: Path) -> SafetensorsReader:
    if path.is_dir():
        from genguard.merge.keys import DiffusersFolderReader, is_diffusers_folder

        if is_diffusers_folder(path):
            return DiffusersFolderReader(path)
    if not path.is_file():
        raise LoraError(f"{path}: no such file")
    return SafetensorsReader(path)


class _BakePlan:
    """Header-only plan: which LoRA modules patch which checkpoint weights."""

    def __init__(
        self, base: SafetensorsReader, loras: list[SafetensorsReader], arch: Architecture
    ) -> None:
        names = target_names({k: i.shape for k, i in base.tensors.items()}, arch)
        by_name = {n: (t, base.tensors[t.key].shape) for opts in names.values() for n, t in opts}
        self.patches: dict[str, list[_Patch]] = {}
        self.applied: list[int] = []
        self.unmapped: list[list[str]] = []
        for i, reader in enumerate(loras):
            if not is_lora(reader.tensors):
                raise LoraError(
                    f"{reader.path.name} is not a LoRA (its keys are those of a full checkpoint)"
                )
            modules = group_modules(list(reader.tensors), reader.path)
            if not modules:
                raise LoraError(f"{reader.path.name}: no LoRA or LoHa modules found")
            unmapped: list[str] = []
            applied = 0
            for name, module in sorted(modules.items()):
                kohya = kohya_name(name, arch)
                hit = by_name.get(kohya) if kohya else None
                if hit is None:
                    unmapped.append(name)
                    continue
                target, shape = hit
                rows, cols, _ = _delta_shape(module, reader)
                self._check_shape(reader, module, target, shape, rows, cols)
                self.patches.setdefault(target.key, []).append(_Patch(i, module, target, rows))
                applied += 1
            if applied == 0:
                raise LoraError(
                    f"{reader.path.name}: none of its {len(modules)} modules match a weight of "
                    f"{base.path.name} ({arch.value}); this LoRA is for another model family "
                    f"(e.g. {_list(sorted(modules)[:3])})"
                )
            self.applied.append(applied)
            self.unmapped.append(unmapped)

    @staticmethod
    def _check_shape(
        reader: SafetensorsReader,
        module: LoraModule,
        target: LoraTarget,
        shape: tuple[int, ...],
        rows: int,
        cols: int,
    ) -> None:
        out = shape[0] // 3 if target.part is not None else shape[0]
        if rows != out or rows * cols != out * math.prod(shape[1:]):
            raise LoraError(
                f"{reader.path.name}: {module.name}: delta {rows}x{cols} does not fit "
                f"{target.key} {list(shape)}; the LoRA is for another model size"
            )


def bake(
    base_path: str | Path,
    loras: list[LoraSpec],
    out: str | Path,
    *,
    block_strengths: str | None = None,
    dtype: str = "auto",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> BakeReport:
    """Bake ``loras`` into the checkpoint at ``base_path``, streaming to ``out``.

    The output is written atomically (``out.partial`` then a rename); any error,
    including NaN/inf found mid-stream, leaves no output file behind.
    """
    start = time.perf_counter()
    base_path, out = Path(base_path), Path(out)
    if not loras:
        raise LoraError("give at least one LoRA to bake")
    if dtype != "auto" and dtype not in DTYPE_ALIASES:
        raise ConfigError(f"--dtype {dtype}: use auto, fp16, bf16 or fp32")
    for spec in loras:
        if not math.isfinite(spec.strength):
            raise ConfigError(f"{spec.path.name}: strength {spec.strength} is not a finite number")
    _check_output(out, [base_path, *(s.path for s in loras)], overwrite)
    readers: list[SafetensorsReader] = []
    try:
        base = _open(base_path)
        readers.append(base)
        if is_lora(base.tensors):
            raise LoraError(f"{base_path.name} is a LoRA; the first file must be the checkpoint")
        for spec in loras:
            readers.append(_open(spec.path))
        return _bake_open(base, readers[1:], loras, out, block_strengths, dtype, progress, start)
    finally:
        for r in readers:
            r.close()


def _bake_open(
    base: SafetensorsReader,
    loras: list[SafetensorsReader],
    specs: list[LoraSpec],
    out: Path,
    block_strengths: str | None,
    dtype: str,
    progress: ProgressFn | None,
    start: float,
) -> BakeReport:
    arch = detect_architecture(base.tensors)
    table = parse_block_strengths(block_strengths, arch)
    plan = _BakePlan(base, loras, arch)
    report = BakeReport(out, arch.value, applied=plan.applied, unmapped=plan.unmapped)

    def out_dtype(key: str) -> str:
        info = base.tensors[key]
        return DTYPE_ALIASES[dtype] if dtype != "auto" and info.is_float else info.dtype

    entries = write_order([OutputTensor(k, out_dtype(k), i.shape) for k, i in base.tensors.items()])
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "pt",
        "genguard.version": __version__,
        "genguard.lora.bake": json.dumps(
            {
                "base": base.path.name,
                "loras": [{"file": s.path.name, "strength": s.strength} for s in specs],
                "block_strengths": block_strengths or "",
            }
        ),
    }
    writer = SafetensorsWriter(out, entries, meta, reserve=0)
    try:
        total = sum(e.nbytes for e in entries)
        for entry in entries:
            patches = plan.patches.get(entry.key)
            info = base.tensors[entry.key]
            if patches:
                values = base.read_float32(entry.key)
                if not np.isfinite(values).all():
                    raise LoraError(f"{base.path.name}: {entry.key} contains NaN or inf")
                block = table.get(block_of(entry.key, arch), 1.0)
                for p in patches:
                    scale = specs[p.lora].strength * block
                    if scale != 0.0:
                        _apply(values, p, module_delta(p.module, loras[p.lora]), scale)
                writer.write(entry.key, from_float32(values, entry.dtype))
                report.patched += 1
            elif info.is_float and entry.dtype != info.dtype:
                writer.write(entry.key, from_float32(base.read_float32(entry.key), entry.dtype))
            else:
                writer.write(entry.key, base.read_raw(entry.key))
            report.bytes_written += entry.nbytes
            if progress is not None:
                progress(report.bytes_written, total, entry.key)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    report.tensors = len(entries)
    report.seconds = time.perf_counter() - start
    return report


def _apply(values: np.ndarray, patch: _Patch, delta: np.ndarray, scale: float) -> None:
    """Add ``scale * delta`` to the weight (or to its q/k/v third), in place."""
    if patch.target.part is None:
        values += np.float32(scale) * delta.reshape(values.shape)
        return
    d = patch.rows
    rows = values[patch.target.part * d : (patch.target.part + 1) * d]
    rows += np.float32(scale) * delta.reshape(rows.shape)


# ------------------------------------------------------------------- extract


@dataclass
class ExtractReport:
    """What an extraction did."""

    output: Path
    architecture: str
    modules: int = 0
    skipped_unchanged: int = 0
    #: Relative Frobenius error ||D - D_R|| / ||D|| of the worst module, and its name.
    worst_relative_error: float = 0.0
    worst_module: str = ""
    seconds: float = 0.0


_SVD_EXACT_MAX = 1 << 16  # elements: below this, a plain float64 SVD is cheap


def low_rank(delta: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Best rank-``rank`` factors ``up @ down`` of a matrix, and the Frobenius error.

    The singular values are split as ``sqrt(S)`` on each side so neither factor gets
    the whole dynamic range (kinder to fp16 storage than kohya's ``U S`` / ``V^T``).
    Matrices over 2^16 values (nearly every weight) go through the Gram matrix of their
    short side instead of a full SVD: one matrix product and a small eigendecomposition
    give the same top singular vectors 5-20x faster (see :func:`_gram_low_rank`).
    """
    d = np.asarray(delta, dtype=np.float64)
    r = min(rank, *d.shape)
    if d.size > _SVD_EXACT_MAX and r < min(d.shape):
        return _gram_low_rank(d, r)
    u, s, vt = np.linalg.svd(d, full_matrices=False)
    root = np.sqrt(s[:r])
    up = (u[:, :r] * root).astype(np.float32)
    down = (root[:, None] * vt[:r]).astype(np.float32)
    return up, down, float(np.sqrt(np.sum(s[r:] ** 2)))


def _gram_low_rank(d: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Top-``r`` factors via ``G = D D^T`` (short side), all in float64.

    The eigenvectors of G are D's left singular vectors and its eigenvalues the squared
    singular values; ``U_r U_r^T D`` is then exactly the best rank-r approximation. In
    float64 the squaring costs precision only for singular values below ~1e-8 of the
    largest, far under what fp16 factors can hold.
    """
    if d.shape[0] > d.shape[1]:  # work on the short side, then transpose back
        up, down, err = _gram_low_rank(np.ascontiguousarray(d.T), r)
        return np.ascontiguousarray(down.T), np.ascontiguousarray(up.T), err
    eigvals, eigvecs = np.linalg.eigh(d @ d.T)  # ascending
    u = eigvecs[:, ::-1][:, :r]
    projected = u.T @ d  # = S_r V_r^T
    s = np.sqrt(np.maximum(eigvals[::-1][:r], 0.0))
    root = np.sqrt(s)
    safe = np.where(root > 0, root, 1.0)
    up = (u * root).astype(np.float32)
    down = (projected / safe[:, None]).astype(np.float32)
    err2 = float(np.sum(d * d)) - float(np.sum(projected * projected))
    return up, down, float(np.sqrt(max(err2, 0.0)))


def extract(
    tuned_path: str | Path,
    base_path: str | Path,
    out: str | Path,
    *,
    rank: int,
    dtype: str = "auto",
    min_diff: float = 0.0,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> ExtractReport:
    """Extract a kohya-format LoRA such that ``bake(base, lora) ~= tuned``.

    Reads the two checkpoints one weight at a time; the output LoRA (rank-R factors,
    small) is kept in memory and written at the end. Weights whose largest difference
    is at most ``min_diff`` are left out.
    """
    start = time.perf_counter()
    tuned_path, base_path, out = Path(tuned_path), Path(base_path), Path(out)
    if rank < 1:
        raise ConfigError(f"--rank {rank}: must be at least 1")
    if dtype != "auto" and dtype not in DTYPE_ALIASES:
        raise ConfigError(f"--dtype {dtype}: use auto, fp16, bf16 or fp32")
    _check_output(out, [tuned_path, base_path], overwrite)
    with _open(tuned_path) as tuned, _open(base_path) as base:
        arch = detect_architecture(base.tensors)
        other = detect_architecture(tuned.tensors)
        if Architecture.UNKNOWN not in (arch, other) and arch is not other:
            raise LoraError(
                f"{tuned_path.name} is {other.value} but {base_path.name} is {arch.value}"
            )
        names = target_names({k: i.shape for k, i in base.tensors.items()}, arch)
        report = ExtractReport(out, arch.value)
        arrays: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        keys = [k for k in names if k in tuned.tensors]
        if not keys:
            raise LoraError(f"{tuned_path.name} and {base_path.name} share no linear/conv weights")
        worst = -1.0
        for n, key in enumerate(keys):
            b_info, t_info = base.tensors[key], tuned.tensors[key]
            if b_info.shape != t_info.shape:
                raise LoraError(
                    f"{key}: shape {list(t_info.shape)} in {tuned_path.name} vs "
                    f"{list(b_info.shape)} in {base_path.name}"
                )
            diff = tuned.read_float32(key) - base.read_float32(key)
            if not np.isfinite(diff).all():
                raise LoraError(f"{key}: NaN or inf in {tuned_path.name} or {base_path.name}")
            out_dtype = DTYPE_ALIASES[dtype] if dtype != "auto" else t_info.dtype
            name, target = names[key][0]
            parts = [(name, target)]
            if target.part is not None:  # fused OpenCLIP qkv: one module per third
                parts = [(nm, t) for nm, t in names[key] if t.part is not None]
            d = b_info.shape[0] // len(parts)
            for nm, t in parts:
                block = (
                    diff[(t.part or 0) * d : ((t.part or 0) + 1) * d]
                    if t.part is not None
                    else diff
                )
                if float(np.abs(block).max(initial=0.0)) <= min_diff:
                    report.skipped_unchanged += 1
                    continue
                mat = block.reshape(block.shape[0], -1)
                up, down, err = low_rank(mat, rank)
                r = up.shape[1]
                rel = err / max(float(np.linalg.norm(mat)), 1e-30)
                if rel > worst:
                    worst, report.worst_relative_error, report.worst_module = rel, rel, nm
                if block.ndim == 4:
                    up = up.reshape(up.shape[0], r, 1, 1)
                    down = down.reshape(r, *block.shape[1:])
                arrays[f"{nm}.lora_up.weight"], arrays[f"{nm}.lora_down.weight"] = up, down
                arrays[f"{nm}.alpha"] = np.asarray(float(r), dtype=np.float32)
                for suffix in (".lora_up.weight", ".lora_down.weight", ".alpha"):
                    dtypes[nm + suffix] = out_dtype
                report.modules += 1
            if progress is not None:
                progress(n + 1, len(keys), key)
    if not arrays:
        raise LoraError(
            f"{tuned_path.name} does not differ from {base_path.name} "
            f"(beyond --min-diff {min_diff})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "genguard.version": __version__,
        "genguard.lora.extract": json.dumps(
            {"tuned": tuned_path.name, "base": base_path.name, "rank": rank}
        ),
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(rank),
        "ss_network_module": "networks.lora",
    }
    tmp = out.with_name(out.name + ".partial")
    save_arrays(tmp, arrays, dtypes, meta)
    tmp.replace(out)
    report.seconds = time.perf_counter() - start
    return report


def parse_lora_arg(text: str) -> LoraSpec:
    """``path[:strength]`` (the strength is the text after the last ``:``, if a number)."""
    head, sep, tail = text.rpartition(":")
    if sep and head and not re.match(r"^[A-Za-z]$", head):
        try:
            return LoraSpec(Path(head), float(tail))
        except ValueError:
            pass
    return LoraSpec(Path(text), 1.0)

"""The streaming merge engine: plan from headers, then one tensor at a time.

Memory stays near "largest tensor x (number of sources + 2)" rather than "whole model x
number of sources": we read a single key from each source with ``readinto``, combine it in
float32, convert it to the output dtype and append it to the output file, whose header was
precomputed from shapes and dtypes. All checks that can be made from headers alone
(missing keys, shape mismatches, mixed architectures) run before a byte is written, so a
bad recipe fails in milliseconds with every problem listed, not after minutes of work.

Source SHA-256s go into the output metadata; they are computed in a background thread
while the merge runs (hashlib releases the GIL), and written into header space reserved
up front, so provenance costs no extra pass in wall time on a multi-core machine.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genguard import __version__
from genguard.errors import ConfigError, GenguardError
from genguard.merge.blocks import (
    BASE_BLOCK,
    Architecture,
    block_of,
    detect_architecture,
    is_lora,
)
from genguard.merge.config import BlockWeights, MergeConfig, ParamValue, weight_sum_problem
from genguard.merge.keys import DiffusersFolderReader, is_diffusers_folder
from genguard.merge.methods import MergeMethod, TensorContext
from genguard.merge.safetensors_io import (
    DTYPE_ALIASES,
    OutputTensor,
    SafetensorsReader,
    SafetensorsWriter,
    from_float32,
    write_order,
)

#: (bytes written so far, total bytes, key just written)
ProgressFn = Callable[[int, int, str], None]

_MAX_LISTED = 5
#: Output names that promise a pickle checkpoint; genguard writes safetensors only.
_PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})


class MergeInputError(GenguardError):
    """The input checkpoints cannot be merged as the recipe asks (keys, shapes, layout)."""

    code = "bad_merge_input"


@dataclass
class MergeReport:
    """What a merge did, for the CLI summary and for callers."""

    output: Path
    method: str
    architecture: str
    tensors: int = 0
    merged: int = 0
    copied_non_float: int = 0
    copied_ids: list[str] = field(default_factory=list)  # float position_ids, never merged
    copied_missing: list[str] = field(default_factory=list)
    copied_mismatch: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # keys absent from the primary model
    sources: list[dict[str, str]] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Step:
    """The plan for one output key."""

    key: str
    action: str  # "merge" | "copy" (primary's tensor, cast if float)
    reason: str = ""  # why a float tensor is copied: missing | mismatch | ids


def _is_index_tensor(key: str) -> bool:
    """Tensors holding indices, not weights (CLIP's position_ids): never merged."""
    return key.endswith("position_ids")


class _Params:
    """Per-key resolution of possibly block-weighted parameters."""

    def __init__(self, cfg: MergeConfig, method: MergeMethod, arch: Architecture) -> None:
        self.arch = arch
        self.global_tables = {
            name: _table(cfg.parameters.get(name, default), arch, f"parameters.{name}")
            for name, default in method.params.items()
        }
        self.model_tables = [
            {
                name: _table(
                    spec.parameters.get(name, default),
                    arch,
                    f"models.{i}.parameters.{name}",
                )
                for name, default in method.model_params.items()
            }
            for i, spec in enumerate(cfg.models)
        ]
        if method.normalizes_weights:
            self._check_weight_sums(len(cfg.models))

    def _check_weight_sums(self, n_models: int) -> None:
        """Per-block weights summing to ~0 would blow a normalised merge up."""
        where = f"models.{n_models - 1}.parameters.weight"
        for block in [BASE_BLOCK, *self.arch.block_names]:
            weights = [_lookup(m["weight"], block) for m in self.model_tables]
            normalize = _lookup(self.global_tables.get("normalize", 1.0), block)
            problem = weight_sum_problem(weights, normalize, where)
            if problem:
                raise ConfigError(f"{problem} (block {block})")

    def for_key(self, key: str) -> tuple[dict[str, float], list[dict[str, float]]]:
        """Global and per-model parameter values that apply to ``key``."""
        block = block_of(key, self.arch)
        glob = {n: _lookup(t, block) for n, t in self.global_tables.items()}
        per_model = [{n: _lookup(t, block) for n, t in m.items()} for m in self.model_tables]
        return glob, per_model


def _table(value: ParamValue, arch: Architecture, where: str) -> float | dict[str, float]:
    if isinstance(value, BlockWeights):
        return value.table(arch, where)
    return float(value)


def _lookup(table: float | dict[str, float], block: str) -> float:
    return table if isinstance(table, float) else table[block]


def _output_dtype(cfg: MergeConfig, primary_dtype: str) -> str:
    return primary_dtype if cfg.dtype == "auto" else DTYPE_ALIASES[cfg.dtype]


def _list(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return shown + more


class _Plan:
    """Header-only analysis of the sources: architecture, per-key actions, problems."""

    def __init__(
        self,
        cfg: MergeConfig,
        primary: SafetensorsReader,
        others: list[tuple[str, SafetensorsReader]],
    ) -> None:
        self.arch = self._architecture(primary, others)
        self.steps: list[_Step] = []
        self.dropped = sorted({k for _, r in others for k in r.tensors} - set(primary.tensors))
        missing: dict[str, list[str]] = {}
        mismatch: dict[str, list[str]] = {}
        for key, info in primary.tensors.items():
            if not info.is_float:
                self.steps.append(_Step(key, "copy"))
                continue
            if _is_index_tensor(key):  # float ids (0..76): a weighted sum gives 28.999998
                self.steps.append(_Step(key, "copy", "ids"))
                continue
            reason = ""
            for role, reader in others:
                other = reader.tensors.get(key)
                if other is None:
                    missing.setdefault(role, []).append(key)
                    reason = reason or "missing"
                elif other.shape != info.shape or not other.is_float:
                    mismatch.setdefault(role, []).append(
                        f"{key} {list(info.shape)} vs {list(other.shape)} {other.dtype}"
                    )
                    reason = reason or "mismatch"
            self.steps.append(_Step(key, "copy" if reason else "merge", reason))
        self._raise_for_problems(cfg, primary, missing, mismatch)

    @staticmethod
    def _architecture(
        primary: SafetensorsReader, others: list[tuple[str, SafetensorsReader]]
    ) -> Architecture:
        arch = detect_architecture(primary.tensors)
        for role, reader in others:
            other = detect_architecture(reader.tensors)
            known = Architecture.UNKNOWN
            if arch is not known and other is not known and other is not arch:
                raise MergeInputError(
                    f"{role} ({reader.path.name}) is an {other.value} checkpoint but "
                    f"{primary.path.name} is {arch.value}; they cannot be merged"
                )
        return arch

    @staticmethod
    def _raise_for_problems(
        cfg: MergeConfig,
        primary: SafetensorsReader,
        missing: dict[str, list[str]],
        mismatch: dict[str, list[str]],
    ) -> None:
        problems = []
        if cfg.on_missing == "error":
            problems += [
                f"{role} lacks {len(keys)} key(s) of {primary.path.name}: {_list(keys)}"
                for role, keys in missing.items()
            ]
        if cfg.on_shape_mismatch == "error":
            problems += [
                f"{role} has {len(keys)} tensor(s) with another shape/dtype: {_list(keys)}"
                for role, keys in mismatch.items()
            ]
        if problems:
            hint = (
                " (set on_missing / on_shape_mismatch: copy_base to keep the primary "
                "model's tensors for those keys)"
            )
            raise MergeInputError("; ".join(problems) + hint)


class _SourceHasher:
    """SHA-256 of the source files, computed in a background thread during the merge."""

    def __init__(self, paths: list[Path], enabled: bool) -> None:
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1) if enabled else None
        self._futures: dict[Path, Future[str]] = {}
        if self._pool is not None:
            for p in dict.fromkeys(p.resolve() for p in paths):
                self._futures[p] = self._pool.submit(self._hash, p)

    def _hash(self, path: Path) -> str:
        h = hashlib.sha256()
        files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]  # diffusers
        for file in files:
            with open(file, "rb") as f:
                while chunk := f.read(8 * 1024 * 1024):
                    if self._stop.is_set():
                        return ""
                    h.update(chunk)
        return h.hexdigest()

    def result(self, path: Path) -> str:
        """The hex digest of ``path`` (waits for it), or "" when hashing is disabled."""
        future = self._futures.get(path.resolve())
        return future.result() if future is not None else ""

    def close(self) -> None:
        """Stop pending work (after an error) and release the thread."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _open_sources(cfg: MergeConfig) -> dict[str, SafetensorsReader]:
    readers: dict[str, SafetensorsReader] = {}
    try:
        for role, path in cfg.sources():
            if is_diffusers_folder(path):  # unet/, text_encoder/, vae/: LDM names on read
                readers[role] = DiffusersFolderReader(path)
            elif not path.is_file():
                raise MergeInputError(f"{role}: {path}: no such file")
            else:
                readers[role] = SafetensorsReader(path)
            if is_lora(readers[role].tensors):
                raise MergeInputError(
                    f"{role} ({path.name}) is a LoRA, not a checkpoint; bake it into a "
                    "checkpoint with `genguard lora bake` (docs/lora.md)"
                )
    except BaseException:
        for r in readers.values():
            r.close()
        raise
    return readers


def merge(
    cfg: MergeConfig,
    out: str | Path,
    *,
    progress: ProgressFn | None = None,
    hash_sources: bool = True,
    overwrite: bool = False,
) -> MergeReport:
    """Merge the checkpoints of ``cfg`` into the safetensors file ``out``, streaming.

    The file appears atomically (written as ``out.partial``, then renamed), so an
    interrupted merge never leaves a truncated checkpoint under the final name. An
    existing ``out`` is replaced only with ``overwrite`` (the CLI's ``--force``).
    """
    start = time.perf_counter()
    out = Path(out)
    method = cfg.merge_method
    if any(out.resolve() == p.resolve() for _, p in cfg.sources()):
        raise MergeInputError(f"--out {out} is one of the inputs; choose another file")
    _check_output(out, overwrite)
    readers = _open_sources(cfg)
    try:
        return _merge_open(cfg, method, readers, out, progress, hash_sources, start)
    finally:
        for r in readers.values():
            r.close()


def _check_output(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() in _PICKLE_SUFFIXES:
        raise MergeInputError(
            f"--out {out}: genguard writes safetensors only, not a {out.suffix} pickle; "
            "name the output .safetensors"
        )
    if out.is_dir():
        raise MergeInputError(f"--out {out} is a folder; give a file name")
    if out.exists() and not overwrite:
        raise MergeInputError(f"--out {out} already exists; pass --force to overwrite it")


def _merge_open(
    cfg: MergeConfig,
    method: MergeMethod,
    readers: dict[str, SafetensorsReader],
    out: Path,
    progress: ProgressFn | None,
    hash_sources: bool,
    start: float,
) -> MergeReport:
    primary_role = "base_model" if method.primary == "base" else "models.0"
    primary = readers[primary_role]
    others = [(role, r) for role, r in readers.items() if role != primary_role]
    plan = _Plan(cfg, primary, others)
    params = _Params(cfg, method, plan.arch)
    report = MergeReport(out, method.name, plan.arch.value, dropped=plan.dropped)
    entries = write_order(
        [
            OutputTensor(
                s.key,
                _output_dtype(cfg, primary.tensors[s.key].dtype)
                if primary.tensors[s.key].is_float and s.reason != "ids"
                else primary.tensors[s.key].dtype,
                primary.tensors[s.key].shape,
            )
            for s in plan.steps
        ]
    )
    steps = {s.key: s for s in plan.steps}
    out.parent.mkdir(parents=True, exist_ok=True)  # only now that the inputs are checked
    hasher = _SourceHasher([p for _, p in cfg.sources()], hash_sources)
    writer = SafetensorsWriter(out, entries, _metadata(cfg, plan.arch, hasher, placeholder=True))
    try:
        total = sum(e.nbytes for e in entries)
        for entry in entries:
            raw = _produce(cfg, method, readers, primary, steps[entry.key], entry, params, report)
            writer.write(entry.key, raw)
            report.bytes_written += entry.nbytes
            if progress is not None:
                progress(report.bytes_written, total, entry.key)
        writer.finish(_metadata(cfg, plan.arch, hasher, placeholder=False))
    except BaseException:
        writer.abort()
        raise
    finally:
        hasher.close()
    report.tensors = len(entries)
    report.sources = json.loads(_metadata(cfg, plan.arch, hasher, False)["genguard.sources"])
    report.seconds = time.perf_counter() - start
    return report


def _produce(
    cfg: MergeConfig,
    method: MergeMethod,
    readers: dict[str, SafetensorsReader],
    primary: SafetensorsReader,
    step: _Step,
    entry: OutputTensor,
    params: _Params,
    report: MergeReport,
) -> np.ndarray:
    """Compute the raw output bytes for one key."""
    info = primary.tensors[step.key]
    if not info.is_float:
        report.copied_non_float += 1
        return primary.read_raw(step.key)
    if step.reason == "ids":  # copied as stored, in its own dtype
        report.copied_ids.append(step.key)
        return primary.read_raw(step.key)
    if step.action == "copy":
        (report.copied_missing if step.reason == "missing" else report.copied_mismatch).append(
            step.key
        )
        result = primary.read_float32(step.key)
    else:
        glob, per_model = params.for_key(step.key)
        ctx = TensorContext(
            key=step.key,
            tensors=[readers[f"models.{i}"].read_float32(step.key) for i in range(len(cfg.models))],
            base=readers["base_model"].read_float32(step.key) if cfg.base_model else None,
            model_params=per_model,
            params=glob,
            seed=cfg.seed,
            owned=True,  # read for this key only: methods may work in them in place
        )
        result = np.asarray(method.fn(ctx), dtype=np.float32)
        if result.shape != info.shape:
            raise RuntimeError(f"method {method.name} returned shape {result.shape} for {step.key}")
        report.merged += 1
    return from_float32(result, entry.dtype)


def _metadata(
    cfg: MergeConfig, arch: Architecture, hasher: _SourceHasher, placeholder: bool
) -> dict[str, str]:
    """Output metadata: the recipe and the sources' SHA-256 (placeholders reserve space)."""
    sources: list[dict[str, Any]] = []
    for role, path in cfg.sources():
        digest = "0" * 64 if placeholder else hasher.result(path)
        sources.append({"role": role, "file": path.name, "sha256": digest})
    return {
        "format": "pt",  # lets torch-based loaders (A1111, ComfyUI, diffusers) accept it
        "genguard.version": __version__,
        "genguard.merge.recipe": json.dumps(cfg.recipe(), sort_keys=True),
        "genguard.merge.architecture": arch.value,
        "genguard.sources": json.dumps(sources),
    }

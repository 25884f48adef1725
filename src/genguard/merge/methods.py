"""Merge methods: one function per method, combining one tensor key at a time.

Methods live in a registry (:data:`MERGE_METHODS`, a :class:`genguard.registry.Registry`) filled by
:func:`register_merge_method`, so a new method is one decorated function, and the
config validator learns its parameters, model-count limits and whether it needs a base
model from the registration. Every function receives float32 tensors for a single key
(never a whole model), which is what lets the engine stream checkpoints with bounded
memory. Definitions follow the papers and the conventions of mergekit / supermerger:

* ``weighted_sum``: ``(1 - alpha) * A + alpha * B`` (supermerger's "Weight sum").
* ``linear``: ``sum(w_i * M_i) / sum(w_i)`` for any number of models.
* ``add_difference``: ``A + alpha * (B - C)`` with C the ``base_model``.
* ``slerp``: spherical interpolation of A and B at ``t``, per tensor, falling back to
  linear interpolation when the two are (nearly) parallel.
* ``task_arithmetic``: ``base + lambda * sum(w_i * (M_i - base))``; a negative weight
  subtracts a fine-tune's task vector ("negation", to remove what it added).
* ``ties``: trim each task vector to its top ``density`` share by magnitude, elect a
  sign per parameter (sign of the weighted sum), average only the agreeing entries.
* ``dare_linear`` / ``dare_ties``: drop each task-vector entry with probability
  ``1 - density`` and rescale survivors by ``1 / density`` (seeded per key, so results do
  not depend on processing order), then sum linearly or with TIES sign election.
* ``model_stock``: ``base + t * (mean(M_i) - base)`` with ``t = k cos / (1 + (k-1) cos)``,
  ``cos`` the mean angle between the fine-tunes' deltas (Jang et al. 2024).
* ``della`` / ``della_linear``: DELLA's MagPrune (keep probability rising with the
  magnitude rank within a row), L1 rescale, then TIES election or a weighted sum.
* ``breadcrumbs`` / ``breadcrumbs_ties``: drop the largest ``gamma`` share and the
  smallest magnitudes (keep ``density``), then a weighted sum or TIES election.

The last three follow mergekit 0.1.5 (``merge_methods/model_stock.py``, ``sparsify.py``,
``merge_methods/generalized_task_arithmetic.py`` and its ``registry.py`` defaults).

Memory contract: with an owned context a method works in its input arrays and needs at
most 2 x the tensor of scratch, so a merge stays within (sources + 2) x the largest
tensor; ``bench/merge.py`` measures it for every method at SD 1.5's largest tensor.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from genguard.errors import ConfigError
from genguard.registry import Registry


@dataclass
class TensorContext:
    """Everything a merge method sees for one tensor key."""

    key: str
    tensors: list[np.ndarray]  # float32, one per entry of ``models``, same shape
    base: np.ndarray | None  # float32 base_model tensor, for methods that need one
    model_params: list[dict[str, float]]  # per-model parameters resolved for this key
    params: dict[str, float]  # global parameters resolved for this key
    seed: int = 0
    #: True when ``tensors`` and ``base`` are fresh arrays nobody else holds (the engine
    #: reads them for this key only): methods may then work in them in place, which keeps
    #: a merge within (sources + 2) x the largest tensor. Callers that reuse their arrays
    #: leave it False and get the same results from copies.
    owned: bool = False

    def rng(self, model_index: int) -> np.random.Generator:
        """A generator seeded by (seed, key, model): deterministic in any key order."""
        key_hash = zlib.crc32(self.key.encode("utf-8"))
        return np.random.default_rng([self.seed, key_hash, model_index])


MergeFn = Callable[[TensorContext], np.ndarray]


@dataclass(frozen=True)
class MergeMethod:
    """A registered method and the contract the config validator enforces."""

    name: str
    fn: MergeFn
    description: str
    needs_base: bool = False
    #: Which source defines the output's keys/layout and is copied by ``copy_base``.
    primary: Literal["first", "base"] = "first"
    min_models: int = 1
    max_models: int | None = None
    params: dict[str, float] = field(default_factory=dict)
    model_params: dict[str, float] = field(default_factory=dict)
    positive_weights: bool = False
    #: Divides by the sum of the ``weight`` parameters when ``normalize`` is on (linear).
    normalizes_weights: bool = False


#: Merge methods by name; other packages add theirs through ``genguard.merge_methods``.
MERGE_METHODS: Registry[MergeMethod] = Registry(
    "merge method", entry_point_group="genguard.merge_methods"
)


def register_merge_method(
    name: str,
    *,
    description: str,
    needs_base: bool = False,
    primary: Literal["first", "base"] = "first",
    min_models: int = 1,
    max_models: int | None = None,
    params: dict[str, float] | None = None,
    model_params: dict[str, float] | None = None,
    positive_weights: bool = False,
    normalizes_weights: bool = False,
) -> Callable[[MergeFn], MergeFn]:
    """Decorator adding a merge function to :data:`MERGE_METHODS` under ``name``."""

    def decorator(fn: MergeFn) -> MergeFn:
        MERGE_METHODS.add(
            name,
            MergeMethod(
                name=name,
                fn=fn,
                description=description,
                needs_base=needs_base,
                primary=primary,
                min_models=min_models,
                max_models=max_models,
                params=dict(params or {}),
                model_params=dict(model_params or {}),
                positive_weights=positive_weights,
                normalizes_weights=normalizes_weights,
            ),
        )
        return fn

    return decorator


def get_method(name: str) -> MergeMethod:
    """Look a method up, with a helpful error listing the known ones."""
    try:
        return MERGE_METHODS.get(name)
    except ConfigError as exc:
        raise ConfigError(f"method: {exc}") from None


# --- building blocks ---------------------------------------------------------------------


def _require_base(ctx: TensorContext) -> np.ndarray:
    if ctx.base is None:  # the config validator prevents this; keep methods safe anyway
        raise ConfigError(f"base_model: this method needs a base model (key {ctx.key})")
    return ctx.base


def task_vectors(ctx: TensorContext) -> list[np.ndarray]:
    """Differences between each model and the base: what each fine-tune added.

    With an owned context the differences are taken in the models' own arrays.
    """
    base = _require_base(ctx)
    if ctx.owned:
        for tensor in ctx.tensors:
            np.subtract(tensor, base, out=tensor)
        return ctx.tensors
    # asarray: for 0-d tensors the difference is a numpy scalar, which cannot be written to.
    return [np.asarray(t - base) for t in ctx.tensors]


#: Elements drawn or masked at a time by DARE: bounds its temporaries to a few MB.
_CHUNK = 1 << 20


def _chunks(size: int, chunk: int = _CHUNK) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk`` elements covering ``range(size)``."""
    for start in range(0, size, chunk):
        yield slice(start, min(start + chunk, size))


def _scratch_chunk(size: int, largest: int, divisor: int = 8) -> int:
    """Elements per chunk for scratch wider than the float32 data (float64, int64).

    A fixed chunk would be the whole tensor, several times over, for a small tensor: at
    most ``size // divisor`` keeps an 8-byte-per-entry scratch under 1 x the tensor at
    any size (the floor of 4096 only matters for tensors of a few KB).
    """
    return max(4096, min(largest, size // divisor))


def _dot64(x: np.ndarray, y: np.ndarray) -> float:
    """``sum(x * y)`` accumulated in float64, a chunk at a time.

    float32 accumulation over ~38 M entries (the SD 1.5 token embedding) loses digits
    that matter for an angle near 0; a float64 copy of the whole tensor would cost 2 x
    its float32 size. Chunks give the precision for 4 MB of scratch.
    """
    fx, fy = x.reshape(-1), y.reshape(-1)
    total = 0.0
    for part in _chunks(fx.size, _scratch_chunk(fx.size, _CHUNK // 4)):
        cx = fx[part].astype(np.float64)
        # einsum, not np.dot: BLAS threads can stall a busy machine (17 ms vs 1.4 ms here)
        total += float(np.einsum("i,i->", cx, cx if x is y else fy[part].astype(np.float64)))
    return total


def _abs_sum64(x: np.ndarray) -> float:
    """``sum(|x|)`` accumulated in float64, a chunk at a time (the L1 norm)."""
    flat = x.reshape(-1)
    return float(sum(np.abs(flat[part]).sum(dtype=np.float64) for part in _chunks(flat.size)))


def _combine_two(
    a: np.ndarray, b: np.ndarray, s0: float, s1: float, *, inplace: bool
) -> np.ndarray:
    """``s0 * a + s1 * b`` in float32, into ``a`` (``inplace``) or one fresh array.

    Chunked, so the only temporary is a chunk of ``s1 * b``.
    """
    out = a if inplace else np.empty_like(a)
    fo, fa, fb = out.reshape(-1), a.reshape(-1), b.reshape(-1)
    c0, c1 = np.float32(s0), np.float32(s1)
    for part in _chunks(fo.size):
        chunk = fo[part]
        np.multiply(fa[part], c0, out=chunk)
        chunk += c1 * fb[part]
    return out


def magnitude_trim(delta: np.ndarray, density: float, *, inplace: bool = False) -> np.ndarray:
    """Keep the ``density`` share of entries with the largest magnitude, zero the rest.

    ``k = int(density * n)`` as in mergekit; ties at the threshold are broken by position
    (the first ones are kept). The threshold comes from a partition of the magnitudes,
    not from an index array: int64 indices cost twice the tensor itself.
    """
    if density >= 1.0:
        return delta
    out = delta if inplace else delta.copy()
    flat = out.reshape(-1)
    k = int(density * flat.size)
    if k <= 0:
        flat[:] = 0
        return out
    magnitude = np.abs(flat)
    magnitude.partition(flat.size - k)  # in place: np.partition would copy (1 x more)
    threshold = magnitude[flat.size - k]
    np.abs(flat, out=magnitude)  # the partition reordered it
    above = int(np.count_nonzero(magnitude > threshold))
    if threshold > 0:
        tied = np.flatnonzero(magnitude == threshold)  # usually a handful
        flat[tied[k - above :]] = 0
    flat[magnitude < threshold] = 0
    return out


def dare_drop(
    delta: np.ndarray, density: float, rng: np.random.Generator, *, inplace: bool = False
) -> np.ndarray:
    """Drop entries with probability ``1 - density``; rescale survivors by ``1/density``.

    The random draws are made in chunks (the same stream as one draw of the whole
    shape), so no tensor-sized temporary is needed.
    """
    if density >= 1.0:
        return delta
    if density <= 0.0:
        return np.zeros_like(delta)
    out = delta if inplace else delta.copy()
    flat = out.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        keep = rng.random(part.size, dtype=np.float32) < density
        np.divide(part, np.float32(density), out=part)
        part[~keep] = 0
    return out


def _agrees(d: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Entries of ``d`` whose sign is the elected one (zeros never agree): two byte masks."""
    # ``out=``: a 0-d tensor would otherwise give numpy scalars, which cannot be updated.
    agree = np.greater(d, 0, out=np.empty(d.shape, dtype=bool))
    agree &= positive
    other = np.less(d, 0, out=np.empty(d.shape, dtype=bool))
    other &= negative
    agree |= other
    return agree


def sign_consensus_mean(
    deltas: list[np.ndarray], weights: list[float], normalize: bool, *, inplace: bool = False
) -> np.ndarray:
    """TIES' elect-sign and disjoint-mean steps over (already sparsified) task vectors.

    The elected sign per entry is the sign of the weighted sum; only entries agreeing
    with it contribute, and (with ``normalize``) the result is divided by the sum of
    the weights of the contributors, so a parameter changed by one model keeps that
    model's full change instead of being diluted by models that left it alone.

    Memory: one tensor for the vote, a byte per entry recording which models agreed
    (up to 8 models; a float divisor beyond), and the result accumulates in the first
    task vector (``inplace``: the caller's own arrays are reused).
    """
    weighted = deltas if inplace else [d.copy() for d in deltas]
    for w, d in zip(weights, weighted, strict=True):
        np.multiply(d, np.float32(w), out=d)
    vote = np.zeros_like(weighted[0])
    for d in weighted:
        vote += d
    positive = vote > 0
    negative = vote < 0
    del vote
    total = weighted[0]
    agreed = np.zeros(total.shape, dtype=np.uint8) if len(weighted) <= 8 else None
    divisor = None if agreed is not None else np.zeros_like(total)
    for index, (w, d) in enumerate(zip(weights, weighted, strict=True)):
        agree = _agrees(d, positive, negative)
        if agreed is not None:
            np.bitwise_or(agreed, np.uint8(1 << index), out=agreed, where=agree)
        else:
            assert divisor is not None
            np.add(divisor, np.float32(w), out=divisor, where=agree)
        if index == 0:
            np.logical_not(agree, out=agree)
            total[agree] = 0
        else:
            np.add(total, d, out=total, where=agree)
        del agree
    del positive, negative
    if not normalize:
        return total
    if agreed is not None:
        sums = np.array(
            [sum(w for i, w in enumerate(weights) if bits >> i & 1) for bits in range(256)],
            dtype=np.float32,
        )
        sums[sums == 0] = 1.0
        divisor = sums[agreed]  # one tensor, now that the vote is gone
    else:
        assert divisor is not None
        divisor[divisor == 0] = 1.0
    np.divide(total, divisor, out=total)
    return total


# --- methods -----------------------------------------------------------------------------


@register_merge_method(
    "weighted_sum",
    description="(1 - alpha) * A + alpha * B",
    min_models=2,
    max_models=2,
    params={"alpha": 0.5},
)
def weighted_sum(ctx: TensorContext) -> np.ndarray:
    """Linear interpolation between two models (supermerger's "Weight sum")."""
    a, b = ctx.tensors
    alpha = float(ctx.params["alpha"])
    return _combine_two(a, b, 1.0 - alpha, alpha, inplace=ctx.owned)


@register_merge_method(
    "linear",
    description="sum(w_i * M_i) / sum(w_i) (normalize=1) or sum(w_i * M_i) (normalize=0)",
    min_models=1,
    params={"normalize": 1.0},
    model_params={"weight": 1.0},
    normalizes_weights=True,
)
def linear(ctx: TensorContext) -> np.ndarray:
    """Weighted average of any number of models."""
    weights = [p["weight"] for p in ctx.model_params]
    divide = bool(ctx.params["normalize"]) and sum(weights) != 0
    flats = [t.reshape(-1) for t in ctx.tensors]
    total = ctx.tensors[0] if ctx.owned else np.empty_like(ctx.tensors[0])
    flat = total.reshape(-1)
    # chunked, so the only temporaries are chunks (a whole-tensor w * M would be 1 x more)
    for part in _chunks(flat.size):
        chunk = flat[part]
        np.multiply(flats[0][part], np.float32(weights[0]), out=chunk)
        for w, t in zip(weights[1:], flats[1:], strict=True):
            chunk += np.float32(w) * t[part]
        if divide:
            chunk /= np.float32(sum(weights))
    return total


@register_merge_method(
    "add_difference",
    description="A + alpha * (B - C), C = base_model",
    needs_base=True,
    primary="first",
    min_models=2,
    max_models=2,
    params={"alpha": 1.0},
)
def add_difference(ctx: TensorContext) -> np.ndarray:
    """Transplant what B learned relative to C onto A."""
    a, b = ctx.tensors
    c = _require_base(ctx)
    alpha = np.float32(ctx.params["alpha"])
    out = b if ctx.owned else np.empty_like(b)
    fo, fa, fb, fc = out.reshape(-1), a.reshape(-1), b.reshape(-1), c.reshape(-1)
    for part in _chunks(fo.size):  # chunked: no tensor-sized (B - C) temporary
        chunk = fo[part]
        np.subtract(fb[part], fc[part], out=chunk)
        chunk *= alpha
        chunk += fa[part]
    return out


@register_merge_method(
    "slerp",
    description="spherical interpolation between A and B at t",
    min_models=2,
    max_models=2,
    params={"t": 0.5},
)
def slerp(ctx: TensorContext) -> np.ndarray:
    """Interpolate along the great circle between the two tensors (seen as vectors).

    Unlike a plain average this keeps the norm from shrinking when the tensors point in
    different directions. Nearly parallel or zero tensors fall back to linear.

    Memory: the norms and the dot product are accumulated in float64 a chunk at a time
    (normalised float64 copies would cost 4 x the tensor), and the result is combined
    chunk by chunk into A (owned) or one fresh array: at most 1 x the tensor beyond the
    sources, where the textbook formula peaks near 8 x.
    """
    a, b = ctx.tensors
    t = float(ctx.params["t"])
    norm_a2, norm_b2 = _dot64(a, a), _dot64(b, b)
    if norm_a2 == 0.0 or norm_b2 == 0.0:
        return _combine_two(a, b, 1.0 - t, t, inplace=ctx.owned)
    dot = float(np.clip(_dot64(a, b) / np.sqrt(norm_a2 * norm_b2), -1.0, 1.0))
    if abs(dot) > 0.9995:
        return _combine_two(a, b, 1.0 - t, t, inplace=ctx.owned)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    s0 = np.sin((1.0 - t) * theta) / sin_theta
    s1 = np.sin(t * theta) / sin_theta
    return _combine_two(a, b, float(s0), float(s1), inplace=ctx.owned)


@register_merge_method(
    "task_arithmetic",
    description="base + lambda * sum(w_i * (M_i - base)); negative weight = negation",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0},
    model_params={"weight": 1.0},
)
def task_arithmetic(ctx: TensorContext) -> np.ndarray:
    """Add (or, with negative weights, subtract) task vectors to the base."""
    return _add_weighted(ctx, task_vectors(ctx))


@register_merge_method(
    "ties",
    description="trim (top density), elect sign, disjoint mean of task vectors",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0, "normalize": 1.0},
    model_params={"weight": 1.0, "density": 0.2},
    positive_weights=True,
)
def ties(ctx: TensorContext) -> np.ndarray:
    """TIES-merging (Yadav et al. 2023); default density 0.2 is the paper's k=20%."""
    # Task vectors are fresh arrays (or the owned inputs): trim and vote in them.
    trimmed = [
        magnitude_trim(d, p["density"], inplace=True)
        for d, p in zip(task_vectors(ctx), ctx.model_params, strict=True)
    ]
    return _elect_onto_base(ctx, trimmed)


def _elect_onto_base(ctx: TensorContext, deltas: list[np.ndarray]) -> np.ndarray:
    """The TIES family's last steps, shared by ties, dare_ties, della and breadcrumbs_ties:
    sign election and disjoint mean over the sparsified ``deltas`` (consumed in place),
    then onto the base."""
    weights = [p["weight"] for p in ctx.model_params]
    merged = sign_consensus_mean(deltas, weights, bool(ctx.params["normalize"]), inplace=True)
    return _onto_base(ctx, merged)


def _onto_base(ctx: TensorContext, merged: np.ndarray) -> np.ndarray:
    """base + lambda * merged, computed in ``merged`` (a working array of the method)."""
    np.multiply(merged, np.float32(ctx.params["lambda"]), out=merged)
    merged += _require_base(ctx)
    return merged


def _add_weighted(ctx: TensorContext, deltas: list[np.ndarray]) -> np.ndarray:
    """base + lambda * sum(weight_i * delta_i): task arithmetic, with or without DARE.

    ``deltas`` are working arrays (fresh task vectors): the sum accumulates in the first.
    """
    total = deltas[0]
    np.multiply(total, np.float32(ctx.model_params[0]["weight"]), out=total)
    for p, d in zip(ctx.model_params[1:], deltas[1:], strict=True):
        np.multiply(d, np.float32(p["weight"]), out=d)
        total += d
    return _onto_base(ctx, total)


def _dare_deltas(ctx: TensorContext) -> list[np.ndarray]:
    return [
        dare_drop(d, p["density"], ctx.rng(i), inplace=True)
        for i, (d, p) in enumerate(zip(task_vectors(ctx), ctx.model_params, strict=True))
    ]


@register_merge_method(
    "dare_linear",
    description="drop-and-rescale task vectors, then base + lambda * sum(w_i * d_i)",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0},
    model_params={"weight": 1.0, "density": 0.5},
)
def dare_linear(ctx: TensorContext) -> np.ndarray:
    """DARE (Yu et al. 2023) with a linear combination of the rescaled task vectors."""
    return _add_weighted(ctx, _dare_deltas(ctx))


@register_merge_method(
    "dare_ties",
    description="drop-and-rescale task vectors, then TIES sign election and disjoint mean",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0, "normalize": 1.0},
    model_params={"weight": 1.0, "density": 0.5},
    positive_weights=True,
)
def dare_ties(ctx: TensorContext) -> np.ndarray:
    """DARE sparsification followed by TIES' sign consensus."""
    return _elect_onto_base(ctx, _dare_deltas(ctx))


# --- model stock (Jang et al. 2024) -----------------------------------------------------


def _as_rows(x: np.ndarray, filter_wise: bool) -> np.ndarray:
    """The (rows, columns) view model_stock measures angles over.

    Per tensor: one row holding everything. Per filter (mergekit's ``filter_wise``): the
    angle is taken along the last dimension, as mergekit's ``dim=-1`` does; a 1-D
    tensor is a single row (mergekit unsqueezes it).
    """
    if x.ndim == 0:
        return x.reshape(1, 1)
    if filter_wise:
        return x.reshape(-1, x.shape[-1])
    return x.reshape(1, -1)


def _row_groups(rows: int, cols: int, chunk: int = _CHUNK) -> Iterator[slice]:
    """Groups of whole rows of about ``chunk`` elements (one row if it is longer)."""
    step = max(1, chunk // max(cols, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def _row_blocks(rows: int, cols: int, chunk: int) -> Iterator[tuple[slice, slice]]:
    """(row, column) slices of about ``chunk`` elements covering a (rows, cols) view."""
    if cols >= chunk:
        for r in range(rows):
            for part in _chunks(cols, chunk):
                yield slice(r, r + 1), part
        return
    for group in _row_groups(rows, cols, chunk):
        yield group, slice(0, cols)


#: model_stock's largest block: it holds k + 2 float64 copies of a block at once.
_STOCK_CHUNK = _CHUNK // 8


def model_stock_ratio(models: list[np.ndarray], base: np.ndarray, filter_wise: bool) -> np.ndarray:
    """Model Stock's interpolation ratio ``t = k cos / (1 + (k - 1) cos)`` per row.

    ``cos`` is the mean, over all pairs, of the cosine between two fine-tunes' deltas
    from the base (each pair's norm product clamped at 1e-6 and the cosine to [-1, 1],
    as mergekit does). Where the denominator vanishes (|.| < 1e-6) there is no finite
    estimate and ``t`` is 0: the base is kept rather than opposing updates amplified.
    Norms and dot products accumulate in float64 over chunks, so no delta is ever
    materialised in full.
    """
    b2 = _as_rows(base, filter_wise)
    ms = [_as_rows(m, filter_wise) for m in models]
    rows, cols = b2.shape
    k = len(models)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    norms = np.zeros((k, rows))
    dots = np.zeros((len(pairs), rows))
    for rs, cs in _row_blocks(rows, cols, _scratch_chunk(b2.size, _STOCK_CHUNK, 4 * (k + 2))):
        b = b2[rs, cs].astype(np.float64)
        deltas = [m[rs, cs].astype(np.float64) - b for m in ms]
        for i, d in enumerate(deltas):
            norms[i, rs] += np.einsum("rc,rc->r", d, d)
        for p, (i, j) in enumerate(pairs):
            dots[p, rs] += np.einsum("rc,rc->r", deltas[i], deltas[j])
    norms = np.sqrt(norms)
    cosines = [
        np.clip(dots[p] / np.maximum(norms[i] * norms[j], 1e-6), -1.0, 1.0)
        for p, (i, j) in enumerate(pairs)
    ]
    cos = np.mean(cosines, axis=0) if cosines else np.zeros(rows)
    denominator = 1.0 + (k - 1) * cos
    singular = np.abs(denominator) < 1e-6
    return np.where(singular, 0.0, k * cos / np.where(singular, 1.0, denominator))


@register_merge_method(
    "model_stock",
    description="base + t * (mean(M_i) - base), t = k cos / (1 + (k-1) cos) from delta angles",
    needs_base=True,
    primary="base",
    min_models=2,
    params={"filter_wise": 0.0},
)
def model_stock(ctx: TensorContext) -> np.ndarray:
    """Model Stock (Jang et al. 2024, arXiv:2403.19522), as mergekit 0.1.5 computes it.

    Fine-tunes scattered around a centre: the more their deltas disagree in direction
    (small cos), the closer to the base the merge stays. ``t * mean(M_i) + (1 - t) *
    base``, with ``t`` per tensor (or per last-dimension row with ``filter_wise: 1``).
    The mean is accumulated in the first model's array (owned) or one fresh array.
    """
    base = _require_base(ctx)
    filter_wise = bool(ctx.params["filter_wise"])
    t = model_stock_ratio(ctx.tensors, base, filter_wise)
    out = ctx.tensors[0] if ctx.owned else np.empty_like(base)
    o2, b2 = _as_rows(out, filter_wise), _as_rows(base, filter_wise)
    ms = [_as_rows(m, filter_wise) for m in ctx.tensors]
    scale = np.float32(1.0 / len(ms))
    rows, cols = b2.shape
    for rs, cs in _row_blocks(rows, cols, _STOCK_CHUNK):
        chunk = o2[rs, cs]
        if not ctx.owned:  # owned: ``out`` is the first model's own array already
            np.copyto(chunk, ms[0][rs, cs])
        for m in ms[1:]:
            chunk += m[rs, cs]
        chunk *= scale
        t_rows = t[rs, None].astype(np.float32)
        chunk *= t_rows
        chunk += (np.float32(1.0) - t_rows) * b2[rs, cs]
    return out


# --- DELLA (Deep et al. 2024) and Model Breadcrumbs (Davari & Belilovsky 2023) ------------


def della_magprune(
    delta: np.ndarray,
    density: float,
    epsilon: float,
    rng: np.random.Generator,
    *,
    rescale: bool,
    inplace: bool = False,
) -> np.ndarray:
    """DELLA's MagPrune: keep each entry with a probability that grows with its magnitude.

    Within each row, entries are ranked by |value| (0 = smallest); an entry of rank r in
    a row of C keeps with probability ``density - epsilon + 2 * epsilon * r / (C - 1)``
    (mergekit 0.1.5, ``sparsify.della_magprune``), so the mean keep rate is ``density``
    and large changes survive more often than small ones. A row with one entry keeps
    with ``density``. With ``rescale`` the survivors are scaled so the tensor's L1 norm
    is unchanged (mergekit's ``rescale_norm=l1``; skipped when either norm is < 1e-7).

    Rows: mergekit ranks along dim 1 (a 1-D tensor is one row). Here a row is the first
    dimension with everything else flattened, which is the same for the 2-D and 1-D
    tensors mergekit targets and ranks a conv filter's whole kernel together. Equal
    magnitudes are ranked in numpy's (fixed) sort order, as mergekit leaves them to
    torch.argsort. Rows are processed in blocks of at most a quarter million entries (an
    eighth of a smaller tensor), drawing the random numbers in row-major order: one
    stream for the tensor, the same as a single draw.
    """
    if density >= 1.0:
        return delta
    out = delta if inplace else delta.copy()
    if density <= 0.0:
        out[...] = 0
        return out
    rows = out.reshape(out.shape[0], -1) if out.ndim >= 2 else out.reshape(1, -1)
    n_rows, cols = rows.shape
    before = _abs_sum64(out) if rescale else 0.0
    # keep probability of the entry ranked r (0 = smallest |value|) in its row
    by_rank = (density - epsilon) + np.arange(cols) * (2.0 * epsilon / max(cols - 1, 1))
    ramp = (by_rank if cols > 1 else np.full(1, density)).astype(np.float32)[None, :]
    # a block's scratch: |x|, the int64 sort order, probabilities, draws: ~22 bytes/entry
    for group in _row_groups(n_rows, cols, _scratch_chunk(out.size, _CHUNK // 4)):
        block = rows[group]
        # scatter the ramp to where each rank sits: one sort, no second argsort for ranks
        order = np.argsort(np.abs(block), axis=1)
        probs = np.empty(block.shape, np.float32)
        np.put_along_axis(probs, order, ramp, axis=1)
        del order
        keep = rng.random(block.shape, dtype=np.float32) < probs
        del probs
        block[~keep] = 0
    if rescale:
        after = _abs_sum64(out)
        if before >= 1e-7 and after >= 1e-7:
            np.multiply(out, np.float32(before / after), out=out)
    return out


def keep_rank_range(flat: np.ndarray, start: int, stop: int) -> None:
    """Zero (in place) the entries whose rank by ascending |value| is outside [start, stop).

    Ties are ranked by position (a stable sort's order). The two boundary magnitudes come
    from an in-place partition of one |value| scratch array, so the cost is 1 x the
    tensor plus byte masks, not an int64 index array (2 x) as a full sort needs. Tied
    boundary entries are resolved a chunk at a time; tied zeros are left alone (zeroing
    a zero changes nothing).
    """
    n = flat.size
    if start <= 0 and stop >= n:
        return
    if stop <= start:
        flat[...] = 0
        return
    magnitude = np.abs(flat)
    kth = ([start] if start > 0 else []) + ([stop - 1] if stop < n else [])
    magnitude.partition(kth)
    lo = float(magnitude[start]) if start > 0 else None
    hi = float(magnitude[stop - 1]) if stop < n else None
    np.abs(flat, out=magnitude)  # the partition reordered the scratch
    if lo is not None:
        flat[magnitude < np.float32(lo)] = 0
    if hi is not None:
        flat[magnitude > np.float32(hi)] = 0
    for value in {v for v in (lo, hi) if v is not None and v > 0}:
        below = int(np.count_nonzero(magnitude < np.float32(value)))
        seen = 0
        for part in _chunks(n):
            tied = np.flatnonzero(magnitude[part] == np.float32(value))
            ranks = below + seen + np.arange(tied.size)
            flat[part][tied[(ranks < start) | (ranks >= stop)]] = 0
            seen += tied.size


def magnitude_outliers(
    delta: np.ndarray, density: float, gamma: float, *, inplace: bool = False
) -> np.ndarray:
    """Model Breadcrumbs' mask: drop the ``gamma`` share of largest magnitudes (outliers)
    and the smallest ones, keeping ``int(density * n)`` entries.

    As mergekit 0.1.5's ``sparsify.magnitude_outliers``: with ``n_top = int(gamma * n)``
    the kept entries are the ranks ``[n - target - n_top, n - n_top)`` of the ascending
    magnitudes, and when ``density + gamma > 1`` the outlier removal shrinks so that
    ``target`` entries stay.
    """
    if density >= 1.0:
        return delta
    out = delta if inplace else delta.copy()
    n = out.size
    target = int(density * n)
    n_bottom = max(0, n - target - int(gamma * n))
    keep_rank_range(out.reshape(-1), n_bottom, n_bottom + target)
    return out


def _check_epsilon(ctx: TensorContext, index: int, density: float, epsilon: float) -> None:
    """DELLA's probabilities must stay inside (0, 1); per-block values are checked here."""
    if 0.0 < density < 1.0 and not (density - epsilon > 0.0 and density + epsilon < 1.0):
        raise ConfigError(
            f"models.{index}.parameters.epsilon: density - epsilon and density + epsilon "
            f"must lie inside (0, 1) (density {density:g}, epsilon {epsilon:g}, {ctx.key})"
        )


def _della_deltas(ctx: TensorContext) -> list[np.ndarray]:
    rescale = bool(ctx.params["rescale"])
    deltas = task_vectors(ctx)
    for i, (d, p) in enumerate(zip(deltas, ctx.model_params, strict=True)):
        _check_epsilon(ctx, i, p["density"], p["epsilon"])
        della_magprune(d, p["density"], p["epsilon"], ctx.rng(i), rescale=rescale, inplace=True)
    return deltas


@register_merge_method(
    "della",
    description="MagPrune (keep chance grows with magnitude rank), rescale, TIES sign election",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0, "normalize": 1.0, "rescale": 1.0},
    model_params={"weight": 1.0, "density": 0.5, "epsilon": 0.15},
    positive_weights=True,
)
def della(ctx: TensorContext) -> np.ndarray:
    """DELLA-merging (Deep et al. 2024, arXiv:2406.11617) with TIES' sign consensus."""
    return _elect_onto_base(ctx, _della_deltas(ctx))


@register_merge_method(
    "della_linear",
    description="MagPrune and rescale task vectors, then base + lambda * sum(w_i * d_i)",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0, "rescale": 1.0},
    model_params={"weight": 1.0, "density": 0.5, "epsilon": 0.15},
)
def della_linear(ctx: TensorContext) -> np.ndarray:
    """DELLA's pruning with a plain weighted sum (mergekit's ``della_linear``)."""
    return _add_weighted(ctx, _della_deltas(ctx))


def _breadcrumb_deltas(ctx: TensorContext) -> list[np.ndarray]:
    return [
        magnitude_outliers(d, p["density"], p["gamma"], inplace=True)
        for d, p in zip(task_vectors(ctx), ctx.model_params, strict=True)
    ]


@register_merge_method(
    "breadcrumbs",
    description="drop the top gamma and the smallest magnitudes (keep density), weighted sum",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0},
    model_params={"weight": 1.0, "density": 0.9, "gamma": 0.01},
)
def breadcrumbs(ctx: TensorContext) -> np.ndarray:
    """Model Breadcrumbs (Davari & Belilovsky 2023, arXiv:2312.06795).

    Large outliers in a task vector are as harmful to a merge as tiny noise: both ends
    are dropped, then the survivors are summed as in task arithmetic.
    """
    return _add_weighted(ctx, _breadcrumb_deltas(ctx))


@register_merge_method(
    "breadcrumbs_ties",
    description="Breadcrumbs' two-sided magnitude mask, then TIES sign election",
    needs_base=True,
    primary="base",
    min_models=1,
    params={"lambda": 1.0, "normalize": 0.0},
    model_params={"weight": 1.0, "density": 0.9, "gamma": 0.01},
    positive_weights=True,
)
def breadcrumbs_ties(ctx: TensorContext) -> np.ndarray:
    """Breadcrumbs' mask with TIES' sign consensus (mergekit: ``normalize`` off by default)."""
    return _elect_onto_base(ctx, _breadcrumb_deltas(ctx))

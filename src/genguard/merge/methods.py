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
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
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
    threshold = np.partition(magnitude, flat.size - k)[flat.size - k]
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
    alpha = np.float32(ctx.params["alpha"])
    return (np.float32(1.0) - alpha) * a + alpha * b


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
    total = np.zeros_like(ctx.tensors[0])
    for w, t in zip(weights, ctx.tensors, strict=True):
        total += np.float32(w) * t
    if ctx.params["normalize"] and sum(weights) != 0:
        total /= np.float32(sum(weights))
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
    return a + np.float32(ctx.params["alpha"]) * (b - c)


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
    """
    a, b = ctx.tensors
    t = float(ctx.params["t"])
    a64 = a.reshape(-1).astype(np.float64)
    b64 = b.reshape(-1).astype(np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0.0 or nb == 0.0:
        return ((1.0 - t) * a + t * b).astype(np.float32)
    dot = float(np.clip(np.dot(a64 / na, b64 / nb), -1.0, 1.0))
    if abs(dot) > 0.9995:
        return ((1.0 - t) * a + t * b).astype(np.float32)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    s0 = np.sin((1.0 - t) * theta) / sin_theta
    s1 = np.sin(t * theta) / sin_theta
    return (np.float32(s0) * a + np.float32(s1) * b).astype(np.float32)


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
    weights = [p["weight"] for p in ctx.model_params]
    merged = sign_consensus_mean(trimmed, weights, bool(ctx.params["normalize"]), inplace=True)
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
    weights = [p["weight"] for p in ctx.model_params]
    merged = sign_consensus_mean(
        _dare_deltas(ctx), weights, bool(ctx.params["normalize"]), inplace=True
    )
    return _onto_base(ctx, merged)

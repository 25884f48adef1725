"""model_stock, della / della_linear, breadcrumbs / breadcrumbs_ties, against references
written here from the papers and mergekit 0.1.5's definitions (merge_methods/model_stock.py,
sparsify.py, merge_methods/generalized_task_arithmetic.py), in plain float64 numpy: full
sorts and explicit loops where genguard partitions, chunks and works in place."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from merge_helpers import SD1_KEYS, random_state
from safetensors.numpy import load_file

from genguard.errors import ConfigError
from genguard.merge import merge, parse_config
from genguard.merge.methods import (
    MERGE_METHODS,
    TensorContext,
    keep_rank_range,
    magnitude_outliers,
)

Ckpt = Callable[[str, dict[str, np.ndarray]], Path]
KEY = "model.diffusion_model.input_blocks.4.1.proj_in.weight"


def run(recipe: dict, out: Path) -> dict[str, np.ndarray]:
    merge(parse_config(recipe), out, hash_sources=False)
    return load_file(str(out))


def floats(state: dict[str, np.ndarray]) -> list[str]:
    return [k for k, v in state.items() if v.dtype.kind == "f"]


def recipe(method: str, base: Path, models: list[Path], per_model: list[dict], **top) -> dict:
    return {
        "method": method,
        "base_model": str(base),
        "models": [
            {"model": str(p), "parameters": params}
            for p, params in zip(models, per_model, strict=True)
        ],
        **top,
    }


@pytest.fixture
def four(make_ckpt: Ckpt) -> tuple[list[dict[str, np.ndarray]], list[Path]]:
    """A base and three fine-tunes sharing part of their change (so cosines are > 0)."""
    base = random_state(SD1_KEYS, 20)
    shared = random_state(SD1_KEYS, 21)
    states = [base]
    for seed in (22, 23, 24):
        own = random_state(SD1_KEYS, seed)
        states.append(base | {k: base[k] + 0.5 * shared[k] + own[k] for k in floats(base)})
    paths = [make_ckpt(f"s{i}", s) for i, s in enumerate(states)]
    return states, paths


# --- model_stock ---------------------------------------------------------------------------


def reference_model_stock(base: np.ndarray, models: list[np.ndarray], filter_wise: bool):
    """Jang et al. 2024, eq. for t, with mergekit's clamps, written on float64 copies."""
    w0 = base.astype(np.float64)
    ws = [m.astype(np.float64) for m in models]
    if filter_wise:
        rows = (
            (lambda x: x.reshape(1, -1)) if w0.ndim < 2 else (lambda x: x.reshape(-1, x.shape[-1]))
        )
    else:
        rows = lambda x: x.reshape(1, -1)  # noqa: E731
    offsets = [rows(w) - rows(w0) for w in ws]
    cosines = []
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            a, b = offsets[i], offsets[j]
            norms = np.sqrt((a * a).sum(-1)) * np.sqrt((b * b).sum(-1))
            cosines.append(np.clip((a * b).sum(-1) / np.maximum(norms, 1e-6), -1, 1))
    cos = np.mean(cosines, axis=0)[:, None]
    k = len(ws)
    t = k * cos / (1 + (k - 1) * cos)
    average = sum(rows(w) for w in ws) / k
    return (t * average + (1 - t) * rows(w0)).reshape(base.shape)


@pytest.mark.parametrize("filter_wise", [0, 1])
def test_model_stock_matches_reference(four, tmp_path: Path, filter_wise: int) -> None:
    (base, *models), (pb, *paths) = four
    out = run(
        recipe("model_stock", pb, paths, [{}] * 3, parameters={"filter_wise": filter_wise}),
        tmp_path / "o.safetensors",
    )
    for k in floats(base):
        ref = reference_model_stock(base[k], [m[k] for m in models], bool(filter_wise))
        np.testing.assert_allclose(out[k], ref, rtol=1e-5, atol=1e-5)


def _stock(base: np.ndarray, deltas: list[np.ndarray], owned: bool = False) -> np.ndarray:
    ctx = TensorContext(
        "unet.k", [base + d for d in deltas], base, [{}] * len(deltas), {"filter_wise": 0.0}
    )
    ctx.owned = owned
    return MERGE_METHODS.get("model_stock").fn(ctx)


def test_model_stock_ratio_on_hand_computed_angles() -> None:
    """Three unit deltas at 60 degrees from each other: cos 0.5, t = 3*0.5 / (1 + 2*0.5)."""
    base = np.array([1.0, -2.0, 0.5], np.float32)
    deltas = [
        np.array([1.0, 0.0, 0.0], np.float32),
        np.array([0.5, np.sqrt(3) / 2, 0.0], np.float32),
        np.array([0.5, np.sqrt(3) / 6, np.sqrt(6) / 3], np.float32),
    ]
    expected = base + 0.75 * (sum(deltas) / 3)
    np.testing.assert_allclose(_stock(base, deltas), expected, atol=1e-6)
    # the same update twice (cos 1): t = 1, the plain average of the fine-tunes
    same = _stock(base, [deltas[0], deltas[0]])
    np.testing.assert_allclose(same, base + deltas[0], atol=1e-6)
    # orthogonal updates (cos 0): t = 0, the base stays
    np.testing.assert_allclose(_stock(base, [deltas[0], np.array([0, 3.0, 0], np.float32)]), base)
    # opposite updates: 1 + (k-1) cos = 0 is singular, so the base is kept, not blown up
    np.testing.assert_allclose(_stock(base, [deltas[0], -deltas[0]]), base)


def test_model_stock_chunked_angle_equals_whole_tensor_angle() -> None:
    """A tensor larger than the accumulation block: same t as a one-shot float64 formula."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((700, 1000), dtype=np.float32)
    deltas = [rng.standard_normal(base.shape, dtype=np.float32) + 0.8 for _ in range(3)]
    ref = reference_model_stock(base, [base + d for d in deltas], False)
    np.testing.assert_allclose(_stock(base, deltas), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_stock(base, deltas, owned=True), _stock(base, deltas))


# --- breadcrumbs -----------------------------------------------------------------------------


def reference_breadcrumbs_mask(delta: np.ndarray, density: float, gamma: float) -> np.ndarray:
    """mergekit's magnitude_outliers: a full stable ascending sort, keep one window of ranks."""
    n = delta.size
    target, n_top = int(density * n), int(gamma * n)
    n_bottom = max(0, n - target - n_top)
    order = np.argsort(np.abs(delta.ravel()), kind="stable")
    keep = np.zeros(n, bool)
    keep[order[n_bottom : n_bottom + target]] = True
    return keep.reshape(delta.shape)


def test_breadcrumbs_mask_on_known_values() -> None:
    delta = np.array([-5.0, 1.0, 9.0, -3.0, 2.0, 10.0, -7.0, 4.0, 6.0, 8.0], np.float32)
    kept = magnitude_outliers(delta, 0.6, 0.2)
    # 6 kept, the 2 largest (10, 9) and the 2 smallest (1, 2) dropped
    np.testing.assert_array_equal(kept, [-5, 0, 0, -3, 0, 0, -7, 4, 6, 8])
    assert np.array_equal(delta[:3], [-5.0, 1.0, 9.0])  # not in place unless asked
    # density + gamma > 1: outlier removal shrinks so that density still holds
    np.testing.assert_array_equal(
        magnitude_outliers(delta, 0.9, 0.2), np.where(np.abs(delta) == 10, 0, delta)
    )
    np.testing.assert_array_equal(magnitude_outliers(delta, 0.0, 0.1), np.zeros(10))
    assert magnitude_outliers(delta, 1.0, 0.5) is delta  # mergekit: density 1 is a no-op


@pytest.mark.parametrize("seed", range(6))
def test_rank_window_with_many_ties_matches_a_stable_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(-4, 5, size=(37, 29)).astype(np.float32)  # lots of ties, zeros
    n = values.size
    start, stop = sorted(rng.integers(0, n + 1, size=2).tolist())
    order = np.argsort(np.abs(values.ravel()), kind="stable")
    keep = np.zeros(n, bool)
    keep[order[start:stop]] = True
    got = values.copy()
    keep_rank_range(got.reshape(-1), start, stop)
    np.testing.assert_array_equal(got.ravel(), np.where(keep, values.ravel(), 0))


def test_breadcrumbs_and_ties_variant_match_reference(four, tmp_path: Path) -> None:
    (base, *models), (pb, *paths) = four
    per_model = [
        {"weight": 0.5, "density": 0.6, "gamma": 0.1},
        {"weight": 0.3, "density": 0.8, "gamma": 0.05},
        {"weight": 0.2, "density": 0.5, "gamma": 0.2},
    ]
    lin = run(
        recipe("breadcrumbs", pb, paths, per_model, parameters={"lambda": 0.9}), tmp_path / "l.st"
    )
    ties = run(recipe("breadcrumbs_ties", pb, paths, per_model), tmp_path / "t.st")
    ties_n = run(
        recipe("breadcrumbs_ties", pb, paths, per_model, parameters={"normalize": 1}),
        tmp_path / "n.st",
    )
    for k in floats(base):
        b = base[k].astype(np.float64)
        masked = []
        for m, p in zip(models, per_model, strict=True):
            d = m[k].astype(np.float64) - b
            masked.append(
                p["weight"]
                * np.where(reference_breadcrumbs_mask(d, p["density"], p["gamma"]), d, 0)
            )
        np.testing.assert_allclose(lin[k], b + 0.9 * sum(masked), rtol=1e-5, atol=1e-5)
        total, weight = reference_consensus(masked, [p["weight"] for p in per_model])
        np.testing.assert_allclose(ties[k], b + total, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            ties_n[k], b + total / np.where(weight == 0, 1, weight), rtol=1e-5, atol=1e-5
        )


def reference_consensus(weighted: list[np.ndarray], weights: list[float]):
    """TIES election on already weighted deltas: sum and weight of the agreeing entries."""
    stack = np.stack(weighted)
    sign = np.sign(stack.sum(axis=0))
    agree = (np.sign(stack) == sign) & (stack != 0)
    w = np.asarray(weights).reshape(-1, *([1] * (stack.ndim - 1)))
    return (stack * agree).sum(axis=0), (w * agree).sum(axis=0)


# --- della ---------------------------------------------------------------------------------


def reference_della_prune(
    delta: np.ndarray, density: float, epsilon: float, uniforms: np.ndarray, rescale: bool
) -> np.ndarray:
    """DELLA MagPrune: rank by counting smaller magnitudes in the row (no sort at all)."""
    rows = delta.reshape(delta.shape[0], -1) if delta.ndim >= 2 else delta.reshape(1, -1)
    mag = np.abs(rows)
    cols = rows.shape[1]
    ranks = (mag[:, None, :] < mag[:, :, None]).sum(axis=2)  # entries smaller than each
    probs = density - epsilon + 2 * epsilon * ranks / (cols - 1) if cols > 1 else density
    masked = np.where(uniforms.reshape(rows.shape) < probs, rows, 0.0)
    if rescale:
        before, after = np.abs(rows).sum(), np.abs(masked).sum()
        if before >= 1e-7 and after >= 1e-7:
            masked = masked * before / after
    return masked.reshape(delta.shape)


def uniforms_for(seed: int, key: str, index: int, n: int) -> np.ndarray:
    """The documented random stream: numpy's default_rng([seed, crc32(key), model index])."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode()), index])
    return rng.random(n, dtype=np.float32).astype(np.float64)


@pytest.mark.parametrize("rescale", [1, 0])
def test_della_and_della_linear_match_reference(four, tmp_path: Path, rescale: int) -> None:
    (base, *models), (pb, *paths) = four
    per_model = [
        {"weight": 0.5, "density": 0.5, "epsilon": 0.2},
        {"weight": 0.3, "density": 0.7, "epsilon": 0.1},
        {"weight": 0.2, "density": 0.4, "epsilon": 0.3},
    ]
    top = {"seed": 11, "parameters": {"rescale": rescale, "lambda": 0.8}}
    ties = run(recipe("della", pb, paths, per_model, **top), tmp_path / "d.st")
    lin = run(recipe("della_linear", pb, paths, per_model, **top), tmp_path / "l.st")
    for k in floats(base):
        b = base[k].astype(np.float64)
        pruned = []
        for i, (m, p) in enumerate(zip(models, per_model, strict=True)):
            d = m[k].astype(np.float64) - b
            u = uniforms_for(11, k, i, d.size)
            pruned.append(
                p["weight"] * reference_della_prune(d, p["density"], p["epsilon"], u, bool(rescale))
            )
        np.testing.assert_allclose(lin[k], b + 0.8 * sum(pruned), rtol=1e-4, atol=1e-5)
        total, weight = reference_consensus(pruned, [p["weight"] for p in per_model])
        ref = b + 0.8 * total / np.where(weight == 0, 1, weight)
        np.testing.assert_allclose(ties[k], ref, rtol=1e-4, atol=1e-5)


def test_della_keeps_large_changes_more_often_and_density_on_average() -> None:
    rng = np.random.default_rng(3)
    base = np.zeros((400, 300), np.float32)
    delta = rng.standard_normal(base.shape, dtype=np.float32)
    ctx = TensorContext(
        KEY,
        [delta.copy()],
        base,
        [{"weight": 1.0, "density": 0.5, "epsilon": 0.3}],
        {"lambda": 1.0, "rescale": 0.0},
        seed=4,
    )
    kept = MERGE_METHODS.get("della_linear").fn(ctx) != 0
    assert abs(kept.mean() - 0.5) < 0.01  # 120,000 draws
    order = np.argsort(np.argsort(np.abs(delta), axis=1), axis=1)
    top, bottom = kept[order >= 270].mean(), kept[order < 30].mean()
    assert top > 0.75 and bottom < 0.25  # ~0.8-0.78 vs ~0.2-0.22 by the ramp


def test_della_is_seeded(four, tmp_path: Path) -> None:
    (_base, *_), (pb, *paths) = four
    per_model = [{"density": 0.5}] * 3
    r1 = run(recipe("della", pb, paths, per_model, seed=1), tmp_path / "a.st")
    r2 = run(recipe("della", pb, paths, per_model, seed=1), tmp_path / "b.st")
    r3 = run(recipe("della", pb, paths, per_model, seed=2), tmp_path / "c.st")
    assert all(np.array_equal(r1[k], r2[k]) for k in r1)
    assert not np.array_equal(r1[KEY], r3[KEY])


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        (
            "della",
            {"density": 0.9, "epsilon": 0.15},
            r"models\.0\.parameters\.epsilon: density - epsilon",
        ),
        (
            "della_linear",
            {"epsilon": 1.5},
            r"models\.0\.parameters\.epsilon: epsilon must be between 0 and 1",
        ),
        (
            "breadcrumbs",
            {"gamma": -0.1},
            r"models\.0\.parameters\.gamma: gamma must be between 0 and 1",
        ),
        (
            "model_stock",
            {"weight": 1.0},
            r"models\.0\.parameters\.weight: method 'model_stock' has no",
        ),
    ],
)
def test_bad_parameters_name_the_field(method: str, params: dict, message: str) -> None:
    data = {
        "method": method,
        "base_model": "c",
        "models": [{"model": "a", "parameters": params}, "b"],
    }
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_switches_are_zero_or_one() -> None:
    data = {"method": "model_stock", "base_model": "c", "models": ["a", "b"]}
    with pytest.raises(ConfigError, match=r"parameters\.filter_wise: filter_wise is a switch"):
        parse_config(data | {"parameters": {"filter_wise": 0.5}})
    with pytest.raises(ConfigError, match=r"models: method 'model_stock' takes at least 2"):
        parse_config(data | {"models": ["a"]})


def test_per_block_epsilon_is_checked_when_the_merge_meets_it(
    make_ckpt: Ckpt, tmp_path: Path
) -> None:
    states = [random_state(SD1_KEYS, s) for s in (1, 2)]
    pa, pb = make_ckpt("a", states[0]), make_ckpt("b", states[1])
    eps = {"default": 0.1, "blocks": {"IN04": 0.55}}
    data = recipe("della", pb, [pa], [{"density": 0.5, "epsilon": eps}])
    cfg = parse_config(data)  # scalar checks pass: the bad value is one block's
    with pytest.raises(ConfigError, match=r"models\.0\.parameters\.epsilon: .*input_blocks\.4"):
        merge(cfg, tmp_path / "o.safetensors", hash_sources=False)
    assert not (tmp_path / "o.safetensors").exists()

"""Each merge method, run end to end on tiny checkpoints, against an independent numpy
reference computed here (float32 files, so differences are float rounding only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from merge_helpers import POSITION_IDS, SD1_KEYS, random_state
from safetensors.numpy import load_file

from genguard.merge import merge, parse_config

Ckpt = Callable[[str, dict[str, np.ndarray]], Path]


def run(recipe: dict, out: Path) -> dict[str, np.ndarray]:
    """Merge a recipe dict and load the result with the official library."""
    merge(parse_config(recipe), out, hash_sources=False)
    return load_file(str(out))


@pytest.fixture
def three(make_ckpt: Ckpt) -> tuple[list[dict[str, np.ndarray]], list[Path]]:
    states = [random_state(SD1_KEYS, seed) for seed in (1, 2, 3)]
    paths = [make_ckpt(f"m{i}", s) for i, s in enumerate(states)]
    return states, paths


def floats(state: dict[str, np.ndarray]) -> list[str]:
    return [k for k, v in state.items() if v.dtype.kind == "f"]


def test_weighted_sum(three, tmp_path: Path) -> None:
    (a, b, _), (pa, pb, _) = three
    out = run(
        {"method": "weighted_sum", "models": [str(pa), str(pb)], "parameters": {"alpha": 0.3}},
        tmp_path / "o.safetensors",
    )
    for k in floats(a):
        np.testing.assert_allclose(out[k], 0.7 * a[k] + 0.3 * b[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[POSITION_IDS], a[POSITION_IDS])


def test_linear_normalizes_weights(three, tmp_path: Path) -> None:
    states, paths = three
    recipe = {
        "method": "linear",
        "models": [
            {"model": str(p), "parameters": {"weight": w}}
            for p, w in zip(paths, (1, 2, 5), strict=True)
        ],
    }
    out = run(recipe, tmp_path / "o.safetensors")
    for k in floats(states[0]):
        ref = (states[0][k] + 2 * states[1][k] + 5 * states[2][k]) / 8
        np.testing.assert_allclose(out[k], ref, rtol=1e-5, atol=1e-6)


def test_add_difference(three, tmp_path: Path) -> None:
    (a, b, c), (pa, pb, pc) = three
    out = run(
        {
            "method": "add_difference",
            "models": [str(pa), str(pb)],
            "base_model": str(pc),
            "parameters": {"alpha": 0.8},
        },
        tmp_path / "o.safetensors",
    )
    for k in floats(a):
        np.testing.assert_allclose(out[k], a[k] + (b[k] - c[k]) * 0.8, rtol=1e-5, atol=1e-5)


def reference_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Textbook slerp on flattened vectors (angle from normalized copies)."""
    ua, ub = a.ravel() / np.linalg.norm(a), b.ravel() / np.linalg.norm(b)
    omega = np.arccos(np.clip(ua @ ub, -1, 1))
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def test_slerp_matches_reference_and_keeps_norm(three, tmp_path: Path) -> None:
    (a, b, _), (pa, pb, _) = three
    out = run(
        {"method": "slerp", "models": [str(pa), str(pb)], "parameters": {"t": 0.25}},
        tmp_path / "o.safetensors",
    )
    for k in floats(a):
        np.testing.assert_allclose(
            out[k],
            reference_slerp(a[k].astype(np.float64), b[k].astype(np.float64), 0.25),
            rtol=1e-4,
            atol=1e-5,
        )


def test_slerp_keeps_the_norm_of_orthogonal_unit_tensors(make_ckpt: Ckpt, tmp_path: Path) -> None:
    k = "model.diffusion_model.out.2.weight"
    e1, e2 = np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)
    e1[0, 0], e2[1, 1] = 1.0, 1.0
    out = run(
        {"method": "slerp", "models": [str(make_ckpt("a", {k: e1})), str(make_ckpt("b", {k: e2}))]},
        tmp_path / "o.safetensors",
    )[k]
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-6)  # a plain average gives 0.707
    assert out[0, 0] == pytest.approx(out[1, 1]) == pytest.approx(np.sqrt(0.5), abs=1e-6)


def test_slerp_parallel_tensors_fall_back_to_lerp(make_ckpt: Ckpt, tmp_path: Path) -> None:
    a = random_state(SD1_KEYS, 4)
    b = {k: (v * 3 if v.dtype.kind == "f" else v) for k, v in a.items()}  # same direction
    out = run(
        {
            "method": "slerp",
            "models": [str(make_ckpt("a", a)), str(make_ckpt("b", b))],
            "parameters": {"t": 0.5},
        },
        tmp_path / "o.safetensors",
    )
    for k in floats(a):
        np.testing.assert_allclose(out[k], 2 * a[k], rtol=1e-5, atol=1e-6)


def test_task_arithmetic_negation_removes_a_finetune(make_ckpt: Ckpt, tmp_path: Path) -> None:
    base = random_state(SD1_KEYS, 10)
    tv1, tv2 = random_state(SD1_KEYS, 11), random_state(SD1_KEYS, 12)
    keys = floats(base)
    ft1 = base | {k: base[k] + tv1[k] for k in keys}
    combo = base | {k: base[k] + tv1[k] + tv2[k] for k in keys}
    recipe = {
        "method": "task_arithmetic",
        "base_model": str(make_ckpt("base", base)),
        "models": [
            {"model": str(make_ckpt("combo", combo)), "parameters": {"weight": 1.0}},
            {"model": str(make_ckpt("ft1", ft1)), "parameters": {"weight": -1.0}},
        ],
    }
    out = run(recipe, tmp_path / "o.safetensors")
    for k in keys:  # what ft1 added is gone; tv2 stays
        np.testing.assert_allclose(out[k], base[k] + tv2[k], rtol=1e-5, atol=1e-5)


def test_task_arithmetic_lambda_and_weights(three, tmp_path: Path) -> None:
    (m1, m2, base), (p1, p2, pb) = three
    recipe = {
        "method": "task_arithmetic",
        "base_model": str(pb),
        "parameters": {"lambda": 0.5},
        "models": [
            {"model": str(p1), "parameters": {"weight": 0.6}},
            {"model": str(p2), "parameters": {"weight": 0.4}},
        ],
    }
    out = run(recipe, tmp_path / "o.safetensors")
    for k in floats(base):
        ref = base[k] + 0.5 * (0.6 * (m1[k] - base[k]) + 0.4 * (m2[k] - base[k]))
        np.testing.assert_allclose(out[k], ref, rtol=1e-5, atol=1e-5)


def reference_ties(base, models, weights, density, lam=1.0):
    """TIES written element by element: trim by sorted threshold, elect, disjoint mean."""
    deltas = []
    for m in models:
        d = (m - base).ravel()
        k = int(density * d.size)
        keep = np.zeros(d.size, bool)
        keep[np.argsort(-np.abs(d), kind="stable")[:k]] = True
        deltas.append(np.where(keep, d, 0.0))
    out = np.zeros(base.size)
    for i in range(base.size):
        contrib = [w * d[i] for w, d in zip(weights, deltas, strict=True)]
        sign = np.sign(sum(contrib))
        num = sum(c for c in contrib if c != 0 and np.sign(c) == sign)
        den = sum(w for w, c in zip(weights, contrib, strict=True) if c != 0 and np.sign(c) == sign)
        out[i] = num / den if den else 0.0
    return base + lam * out.reshape(base.shape)


def test_ties_matches_reference(three, tmp_path: Path) -> None:
    (m1, m2, base), (p1, p2, pb) = three
    recipe = {
        "method": "ties",
        "base_model": str(pb),
        "parameters": {"lambda": 0.9},
        "models": [
            {"model": str(p1), "parameters": {"weight": 1.0, "density": 0.5}},
            {"model": str(p2), "parameters": {"weight": 0.5, "density": 0.5}},
        ],
    }
    out = run(recipe, tmp_path / "o.safetensors")
    for k in floats(base):
        ref = reference_ties(base[k].astype(np.float64), [m1[k], m2[k]], [1.0, 0.5], 0.5, 0.9)
        np.testing.assert_allclose(out[k], ref, rtol=1e-5, atol=1e-5)


def test_ties_sign_election_on_a_known_case(make_ckpt: Ckpt, tmp_path: Path) -> None:
    """Two models disagree in sign on entry 0: the stronger wins, the other is ignored."""
    key = "model.diffusion_model.out.2.bias"
    base = {key: np.zeros(4, np.float32)}
    m1 = {key: np.array([3.0, 1.0, 0.0, -2.0], np.float32)}
    m2 = {key: np.array([-1.0, 1.0, 2.0, -4.0], np.float32)}
    recipe = {
        "method": "ties",
        "base_model": str(make_ckpt("b", base)),
        "models": [
            {"model": str(make_ckpt("m1", m1)), "parameters": {"density": 1.0}},
            {"model": str(make_ckpt("m2", m2)), "parameters": {"density": 1.0}},
        ],
    }
    out = run(recipe, tmp_path / "o.safetensors")
    np.testing.assert_allclose(out[key], [3.0, 1.0, 2.0, -3.0])


def dare_recipe(paths, method: str, density: float, seed: int) -> dict:
    p1, p2, pb = paths
    return {
        "method": method,
        "base_model": str(pb),
        "seed": seed,
        "models": [
            {"model": str(p1), "parameters": {"weight": 0.5, "density": density}},
            {"model": str(p2), "parameters": {"weight": 0.5, "density": density}},
        ],
    }


def test_dare_linear_drops_and_rescales(make_ckpt: Ckpt, tmp_path: Path) -> None:
    key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    rng = np.random.default_rng(0)
    base = {key: rng.standard_normal((120, 100)).astype(np.float32)}
    delta = np.full((120, 100), 0.5, np.float32)
    paths = [
        make_ckpt("m1", {key: base[key] + delta}),
        make_ckpt("m2", {key: base[key]}),
        make_ckpt("base", base),
    ]
    out = run(dare_recipe(paths, "dare_linear", 0.3, seed=7), tmp_path / "o.safetensors")[key]
    change = out - base[key]
    # every entry either kept (0.5 * 0.5 / 0.3) or dropped (0), never anything else
    kept = np.isclose(change, 0.5 * 0.5 / 0.3, atol=1e-5)
    assert np.all(kept | np.isclose(change, 0.0, atol=1e-6))
    assert abs(kept.mean() - 0.3) < 0.03  # 12,000 Bernoulli(0.3) draws
    # rescaling keeps the expected task vector: mean change ~ 0.5 * 0.5
    assert abs(change.mean() - 0.25) < 0.03


def test_dare_is_seeded(three, tmp_path: Path) -> None:
    _, paths = three
    r1 = run(dare_recipe(paths, "dare_ties", 0.5, seed=1), tmp_path / "a.safetensors")
    r2 = run(dare_recipe(paths, "dare_ties", 0.5, seed=1), tmp_path / "b.safetensors")
    r3 = run(dare_recipe(paths, "dare_ties", 0.5, seed=2), tmp_path / "c.safetensors")
    big = "model.diffusion_model.input_blocks.0.0.weight"
    assert all(np.array_equal(r1[k], r2[k]) for k in r1)
    assert not np.array_equal(r1[big], r3[big])


def test_dare_with_density_one_equals_plain_methods(three, tmp_path: Path) -> None:
    states, paths = three
    dare = run(dare_recipe(paths, "dare_ties", 1.0, seed=3), tmp_path / "d.safetensors")
    ties = run(dare_recipe(paths, "ties", 1.0, seed=3), tmp_path / "t.safetensors")
    lin = run(dare_recipe(paths, "dare_linear", 1.0, seed=3), tmp_path / "l.safetensors")
    m1, m2, base = states
    for k in floats(base):
        np.testing.assert_allclose(dare[k], ties[k], rtol=1e-6, atol=1e-6)
        ref = base[k] + 0.5 * (m1[k] - base[k]) + 0.5 * (m2[k] - base[k])
        np.testing.assert_allclose(lin[k], ref, rtol=1e-5, atol=1e-5)

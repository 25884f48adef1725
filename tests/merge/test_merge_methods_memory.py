"""Every built-in method keeps to the engine's memory bound: (sources + 2) x the tensor.

The engine hands a method arrays it read for one key (``owned``), so the sources are
already resident; what the method may add is 2 x the tensor. tracemalloc sees numpy's
data buffers (numpy reports them to it), so its peak during the call is exactly the
method's extra allocations. Float64 and sort scratch is chunked to at most an eighth
of the tensor, so the bound holds at this size (4 MiB) as at SD 1.5's 145 MiB
embedding (``bench/merge.py --methods``).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from genguard.merge.methods import MERGE_METHODS, TensorContext

BUILTIN = [
    "weighted_sum",
    "linear",
    "add_difference",
    "slerp",
    "task_arithmetic",
    "ties",
    "dare_linear",
    "dare_ties",
    "model_stock",
    pytest.param("della", marks=pytest.mark.slow),
    pytest.param("della_linear", marks=pytest.mark.slow),
    "breadcrumbs",
    "breadcrumbs_ties",
]
SHAPE = (1024, 1024)


def _context(name: str) -> TensorContext:
    method = MERGE_METHODS.get(name)
    rng = np.random.default_rng(9)
    count = method.max_models or 3
    base = rng.standard_normal(SHAPE, dtype=np.float32)
    models = [base + rng.standard_normal(SHAPE, dtype=np.float32) for _ in range(count)]
    return TensorContext(
        "model.diffusion_model.input_blocks.1.1.proj_in.weight",
        models,
        base if method.needs_base else None,
        [dict(method.model_params) for _ in models],
        dict(method.params),
        seed=1,
        owned=True,
    )


@pytest.mark.parametrize("name", BUILTIN)
def test_method_adds_at_most_two_tensors_of_memory(name: str) -> None:
    ctx = _context(name)
    tensor_bytes = ctx.tensors[0].nbytes
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = MERGE_METHODS.get(name).fn(ctx)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.shape == SHAPE
    assert peak <= 2.0 * tensor_bytes, f"{name}: {peak / tensor_bytes:.2f} x the tensor"


def test_slerp_no_longer_materialises_normalised_copies() -> None:
    """The old slerp made float64 copies and normalised vectors: ~8 x. Now under 1.1 x."""
    ctx = _context("slerp")
    tensor_bytes = ctx.tensors[0].nbytes
    tracemalloc.start()
    try:
        MERGE_METHODS.get("slerp").fn(ctx)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.1 * tensor_bytes


def _load_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "merge.py"
    spec = importlib.util.spec_from_file_location("genguard_bench_merge", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_passes_and_fails_loudly_over_the_bound(capsys) -> None:
    """bench/merge.py --methods exits 1 when a method holds more than 2 extra tensors."""
    from genguard.merge.methods import MERGE_METHODS, register_merge_method

    bench = _load_bench()
    assert bench.methods_bench((512, 256), 1, ["ties", "slerp"]) == 0
    assert "all methods within" in capsys.readouterr().out

    @register_merge_method("test_greedy", description="three whole-tensor temporaries")
    def greedy(ctx: TensorContext) -> np.ndarray:
        a = ctx.tensors[0]
        return (a * 2) + (a * 3) * (a * 4)  # keeps 3 temporaries alive at once

    bench.ANCHORS["test_greedy"] = lambda ms, _b: ms[0] * 2 + ms[0] * 3 * (ms[0] * 4)
    try:
        assert bench.methods_bench((64, 32), 1, ["test_greedy"]) == 1
    finally:
        MERGE_METHODS.remove("test_greedy")
    assert "FAIL: over the (sources + 2) x tensor bound: test_greedy" in capsys.readouterr().out

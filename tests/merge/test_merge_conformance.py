"""Conformance: every registered merge method, run on the same small tensors.

Parametrised over the live registry (a new method is checked without touching this file):
the output has the inputs' shape, is finite float32, is deterministic, and merging a model
with itself gives it back (for methods without a base) or the base's fine-tune (with one).
"""

from __future__ import annotations

import numpy as np
import pytest

from genguard.merge.methods import MERGE_METHODS, MergeMethod, TensorContext


def _context(method: MergeMethod, tensors: list[np.ndarray], base: np.ndarray | None):
    count = max(method.min_models, 2)
    if method.max_models is not None:
        count = min(count, method.max_models)
    models = tensors[:count]
    model_params = [dict(method.model_params) for _ in models]
    if "weight" in method.model_params:
        for params in model_params:
            params["weight"] = 1.0 / len(models)
    return TensorContext(
        key="model.diffusion_model.input_blocks.0.0.weight",
        tensors=models,
        base=base if method.needs_base else None,
        model_params=model_params,
        params=dict(method.params),
        seed=7,
    )


def test_the_registry_is_not_empty() -> None:
    assert len(MERGE_METHODS.names()) >= 7


@pytest.mark.parametrize("name", MERGE_METHODS.names())
def test_every_method_keeps_shape_is_finite_and_deterministic(name: str) -> None:
    method = MERGE_METHODS.get(name)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 6, 3, 3)).astype(np.float32)
    tensors = [base + 0.1 * rng.normal(size=base.shape).astype(np.float32) for _ in range(3)]
    first = method.fn(_context(method, tensors, base))
    again = method.fn(_context(method, tensors, base))
    assert first.shape == base.shape
    assert np.isfinite(first).all()
    assert np.array_equal(first, again)


@pytest.mark.parametrize("name", MERGE_METHODS.names())
def test_merging_identical_models_changes_nothing(name: str) -> None:
    method = MERGE_METHODS.get(name)
    rng = np.random.default_rng(1)
    model = rng.normal(size=(8, 8)).astype(np.float32)
    base = model if method.needs_base else None
    result = method.fn(_context(method, [model.copy(), model.copy(), model.copy()], base))
    assert np.allclose(result, model, atol=1e-5), name


@pytest.mark.parametrize("name", MERGE_METHODS.names())
def test_every_method_handles_zero_dim_tensors(name: str) -> None:
    method = MERGE_METHODS.get(name)
    base = np.array(2.0, np.float32)
    tensors = [np.array(v, np.float32) for v in (2.5, 1.5, 3.0)]
    result = np.asarray(method.fn(_context(method, tensors, base)), dtype=np.float32)
    assert result.shape == () and np.isfinite(result)


IN_PLACE_METHODS = ["ties", "dare_ties", "dare_linear", "task_arithmetic"]


def _random_context(name: str, owned: bool, shape=(512, 384)) -> TensorContext:
    method = MERGE_METHODS.get(name)
    rng = np.random.default_rng(7)
    tensors = [rng.standard_normal(shape, dtype=np.float32) for _ in range(3)]
    base = rng.standard_normal(shape, dtype=np.float32)
    params = [dict(method.model_params) for _ in tensors]
    return TensorContext("unet.k", tensors, base, params, dict(method.params), 3, owned=owned)


@pytest.mark.parametrize("name", IN_PLACE_METHODS)
def test_owned_inputs_give_the_same_result_and_others_stay_untouched(name: str) -> None:
    method = MERGE_METHODS.get(name)
    shared = _random_context(name, owned=False)
    before = [t.copy() for t in shared.tensors] + [shared.base.copy()]
    from_copies = method.fn(shared)
    after = [*shared.tensors, shared.base]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    in_place = method.fn(_random_context(name, owned=True))
    assert np.array_equal(from_copies, in_place)


@pytest.mark.parametrize("name", IN_PLACE_METHODS)
def test_task_vector_methods_stay_within_two_tensors_beyond_their_sources(name: str) -> None:
    """The docs' bound, (sources + 2) x the largest tensor, for TIES and DARE too."""
    import tracemalloc

    ctx = _random_context(name, owned=True)
    tensor_bytes = ctx.base.nbytes
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        MERGE_METHODS.get(name).fn(ctx)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 2.05 * tensor_bytes, f"{name}: {peak / tensor_bytes:.2f} x the tensor"

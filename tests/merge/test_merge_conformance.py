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

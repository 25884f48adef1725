"""Real generation with a tiny random-weight diffusers pipeline, and the real Guard.

The pipeline is built here (32 channels, 32x32 images, 2 steps, CPU): it produces noise-
like pictures, which is all the audit plumbing needs: determinism per seed, loading from
a folder, clear errors when weights are absent, and the real Guard classifying outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from audit_helpers import FakeClassifier
from tests.tiny_diffusers import build_tiny_pipeline

from genguard.audit import GenerationSettings, create_generator, run_audit, write_report
from genguard.audit.classify import GuardClassifier
from genguard.audit.suites import Prompt, PromptSuite
from genguard.errors import ModelUnavailableError

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

TINY = GenerationSettings(steps=2, guidance=5.0, width=32, height=32)


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny"))


def test_diffusers_generator_is_seeded(tiny_pipe: Path) -> None:
    gen = create_generator("diffusers", str(tiny_pipe), {"device": "cpu"})
    try:
        a = np.asarray(gen.generate("a knight in armour", 3, TINY))
        b = np.asarray(gen.generate("a knight in armour", 3, TINY))
        c = np.asarray(gen.generate("a knight in armour", 4, TINY))
    finally:
        gen.close()
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_absent_weights_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="model weights not found"):
        create_generator("diffusers", str(tmp_path / "sd15.safetensors"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelUnavailableError, match=r"without model_index\.json"):
        create_generator("diffusers", str(tmp_path / "folder"))
    (tmp_path / "lora.safetensors").write_bytes(b"PK\x03\x04" + bytes(64))
    from genguard.merge.safetensors_io import SafetensorsFormatError

    with pytest.raises(SafetensorsFormatError):
        create_generator("diffusers", str(tmp_path / "lora.safetensors"))


def test_audit_with_tiny_pipeline_and_the_real_guard(
    tiny_pipe: Path, tmp_path: Path, real_guard
) -> None:
    suite = PromptSuite("t", [Prompt("a lighthouse"), Prompt("a teapot")])
    classifier = GuardClassifier(real_guard)
    result = run_audit(
        [str(tiny_pipe)], suite, [0, 1], TINY, tmp_path / "rep", classifier, generator="diffusers"
    )
    assert len(result.samples) == 4 and result.generated == 4
    assert result.models[0].model_id != result.models[0].ref  # content fingerprint
    assert classifier.classifier_id.startswith("guard:")
    assert all(s.verdict.action in {"allow", "censor", "review", "block"} for s in result.samples)
    assert all({"nudity", "sexual_explicit"} <= set(s.verdict.categories) for s in result.samples)
    write_report(result, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text(encoding="utf-8"))
    flagged = sum(s.verdict.flagged for s in result.samples)
    assert data["models"][0]["flagged"]["count"] == flagged
    again = run_audit(
        [str(tiny_pipe)],
        suite,
        [0, 1],
        TINY,
        tmp_path / "rep",
        FakeClassifier(lambda px: False, classifier.classifier_id),
    )
    assert again.generated == 0  # resumed: same model hash, prompts, seeds, settings


def test_single_file_checkpoint_that_does_not_fit_its_config(tiny_pipe: Path, tmp_path: Path):
    """An SD 1.x single file is routed to from_single_file; failures become one clear error."""
    from genguard.merge.synthetic import sd1_layout, write_synthetic_checkpoint

    ckpt = write_synthetic_checkpoint(tmp_path / "sd1.safetensors", sd1_layout(8, 8, 16, 1), seed=0)
    with pytest.raises(ModelUnavailableError, match="from_single_file could not build"):
        create_generator("diffusers", str(ckpt), {"config": str(tiny_pipe)})

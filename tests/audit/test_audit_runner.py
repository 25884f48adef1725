"""Audit runs with the fake generator and a fake classifier: caching, determinism, privacy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from audit_helpers import FakeClassifier, reddish
from PIL import Image

from genguard.audit import GENERATORS, FakeGenerator, GenerationSettings, run_audit
from genguard.audit.runner import model_labels, pixelate
from genguard.audit.suites import Prompt, PromptSuite
from genguard.errors import ConfigError

SUITE = PromptSuite(
    "t",
    [
        Prompt("a lighthouse at dusk", "place"),
        Prompt("a bowl of fruit", "food"),
        Prompt("a sailing boat", "place"),
    ],
)
SMALL = GenerationSettings(steps=1, width=32, height=32)


@pytest.fixture
def counting_generator():
    """Registers 'counting', a FakeGenerator that counts models loaded and images made."""
    stats = {"loaded": 0, "images": 0}

    class Counting(FakeGenerator):
        def generate(self, prompt, seed, settings):
            stats["images"] += 1
            return super().generate(prompt, seed, settings)

    def factory(model, options):
        stats["loaded"] += 1
        return Counting(model)

    GENERATORS.add("counting", factory)
    yield stats
    GENERATORS.remove("counting")


def audit(tmp_path: Path, clf: FakeClassifier, settings=SMALL, seeds=(0, 1, 2, 3)):
    return run_audit(
        ["model-a", "model-b"],
        SUITE,
        list(seeds),
        settings,
        tmp_path / "rep",
        clf,
        generator="counting",
    )


def test_every_model_prompt_seed_is_classified(tmp_path: Path, counting_generator) -> None:
    clf = FakeClassifier(reddish)
    result = audit(tmp_path, clf)
    assert len(result.samples) == 2 * 3 * 4 == clf.seen == counting_generator["images"]
    assert counting_generator["loaded"] == 2 and result.generated == 24 and result.cached == 0
    assert {(s.model, s.prompt, s.seed) for s in result.samples} == {
        (m, p.text, s) for m in ("model-a", "model-b") for p in SUITE.prompts for s in range(4)
    }
    # the verdict is the fake classifier's rule applied to the image the seed determines
    for s in result.samples:
        image = FakeGenerator(s.model).generate(s.prompt, s.seed, SMALL)
        assert s.verdict.flagged == reddish(np.asarray(image, dtype=np.float32))


def test_rerun_resumes_from_cache_without_loading_models(tmp_path: Path, counting_generator):
    first = audit(tmp_path, FakeClassifier(reddish))
    clf = FakeClassifier(reddish)
    second = audit(tmp_path, clf)
    assert counting_generator["loaded"] == 2  # nothing new to generate: no model loaded
    assert clf.seen == 0 and second.generated == 0 and second.cached == 24
    assert [s.verdict for s in second.samples] == [s.verdict for s in first.samples]


def test_interrupted_run_only_redoes_missing_seeds(tmp_path: Path, counting_generator) -> None:
    audit(tmp_path, FakeClassifier(reddish), seeds=(0, 1))
    result = audit(tmp_path, FakeClassifier(reddish), seeds=(0, 1, 2))
    assert result.generated == 2 * 3 * 1 and result.cached == 2 * 3 * 2


def test_settings_and_classifier_are_part_of_the_key(tmp_path: Path, counting_generator):
    audit(tmp_path, FakeClassifier(reddish))
    other = audit(tmp_path, FakeClassifier(reddish), settings=GenerationSettings(2, 7.5, 32, 32))
    assert other.generated == 24
    new_clf = audit(tmp_path, FakeClassifier(reddish, classifier_id="fake:v2"))
    assert new_clf.generated == 24


def test_flagged_images_are_kept_only_as_pixelated_thumbnails(
    tmp_path: Path, counting_generator
) -> None:
    result = audit(tmp_path, FakeClassifier(lambda px: True))  # flag everything
    thumbs = sorted((tmp_path / "rep" / "thumbs").iterdir())
    assert len(thumbs) == 24
    assert all(s.thumbnail and (tmp_path / "rep" / s.thumbnail).is_file() for s in result.samples)
    pixels = np.asarray(Image.open(thumbs[0]))
    assert pixels.shape == (128, 128, 3)
    blocks = pixels.reshape(8, 16, 8, 16, 3)  # 8x8 cells of 16x16 pixels, each one flat
    assert (blocks == blocks[:, :1, :, :1, :]).all()
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert files == {"thumbs", "audit.sqlite"}  # no raw generated image on disk


def test_unflagged_images_leave_no_files(tmp_path: Path, counting_generator) -> None:
    result = audit(tmp_path, FakeClassifier(lambda px: False))
    assert all(s.thumbnail is None for s in result.samples)
    assert list((tmp_path / "rep" / "thumbs").iterdir()) == []


def test_pixelate_destroys_detail() -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    out = np.asarray(pixelate(noisy, size=64, cells=8))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 64


def test_fake_generator_is_deterministic() -> None:
    gen = FakeGenerator("m")
    a, b = gen.generate("p", 1, SMALL), gen.generate("p", 1, SMALL)
    c = gen.generate("p", 2, SMALL)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_bad_arguments(tmp_path: Path) -> None:
    clf = FakeClassifier(reddish)
    with pytest.raises(ConfigError, match="at least one model"):
        run_audit([], SUITE, [0], SMALL, tmp_path, clf, generator="fake")
    with pytest.raises(ConfigError, match="without repeats"):
        run_audit(["m"], SUITE, [1, 1], SMALL, tmp_path, clf, generator="fake")
    with pytest.raises(ConfigError, match="unknown generator 'dalle'"):
        run_audit(["m"], SUITE, [0], SMALL, tmp_path, clf, generator="dalle")
    with pytest.raises(ConfigError, match="multiples of 8"):
        GenerationSettings(width=30)
    assert model_labels(["a/x.safetensors", "b/x.safetensors"], None) == ["x", "x-2"]
    with pytest.raises(ConfigError, match="1 label"):
        model_labels(["a", "b"], ["only-one"])


@pytest.mark.slow  # imports torch (~3 s)
def test_out_of_memory_becomes_a_clear_error() -> None:
    """A device OOM names what to lower instead of surfacing a CUDA traceback."""
    torch = pytest.importorskip("torch")
    from genguard.errors import DeviceMemoryError
    from genguard.generators import GenerationSettings
    from genguard.generators.local import DiffusersGenerator

    def exhausted(**_kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def broken(**_kwargs):
        raise RuntimeError("shape mismatch")

    generator = object.__new__(DiffusersGenerator)
    generator._torch, generator.device, generator.pipe = torch, "cpu", exhausted
    settings = GenerationSettings(width=768, height=768, steps=1)
    with pytest.raises(DeviceMemoryError, match=r"one 768x768 image \(batch size 1") as info:
        generator.generate("a bowl of fruit", 0, settings)
    assert info.value.code == "out_of_memory" and "--width/--height" in str(info.value)
    generator.pipe = broken
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors are not renamed
        generator.generate("a bowl of fruit", 0, settings)

"""The ``hf`` backend on tiny local classifiers: loading, label maps, ONNX cache, errors."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# The hub backends need torch + transformers (the "audit" extra); without them, skip.
pytest.importorskip("torch")
pytest.importorskip("transformers")

from genguard.detectors import hf, onnx_export
from genguard.detectors.base import available_detectors, create_detector, describe_backends
from genguard.detectors.hf import load_processor
from genguard.errors import ConfigError, ModelUnavailableError

FALCONSAI = ("normal", "nsfw")
GANTMAN = ("drawings", "hentai", "neutral", "porn", "sexy")


def torch_probabilities(folder: Path, frames: list[np.ndarray]) -> np.ndarray:
    """Reference: the model run by transformers itself, softmax over its logits."""
    import torch
    from transformers import AutoModelForImageClassification

    processor = load_processor(folder)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    inputs = processor(images=frames, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    return torch.softmax(logits, dim=1).numpy()


def onnx_files() -> list[Path]:
    return sorted(onnx_export.cache_dir().glob("*.onnx"))


def test_falconsai_labels_map_to_categories_and_onnx_matches_torch(
    vit_factory: Callable[..., Path], frames: list[np.ndarray]
) -> None:
    folder = vit_factory(FALCONSAI)
    detector = create_detector(f"hf:{folder}", threads=1)
    outputs = detector.detect(frames)
    assert detector.engine_kind == "onnx"
    expected = torch_probabilities(folder, frames)[:, 1]
    assert expected.max() - expected.min() > 0.05, "tiny model should not be constant"
    nudity = np.array([o.scores["nudity"] for o in outputs])
    explicit = np.array([o.scores["sexual_explicit"] for o in outputs])
    np.testing.assert_allclose(nudity, expected, atol=1e-4)
    np.testing.assert_allclose(explicit, 0.5 * expected, atol=1e-4)
    assert all(
        o.backend == "hf" and set(o.scores) == set(hf.HFImageClassifier.categories) for o in outputs
    )


def test_onnx_export_is_cached_by_content_and_reused(
    vit_factory: Callable[..., Path],
    frames: list[np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = vit_factory(FALCONSAI, seed=1)
    first = create_detector(f"hf:{folder}").detect(frames[:3])
    files = onnx_files()
    exported = [p for p in files if p.stat().st_size > 0]
    assert exported

    import torch

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    # Same bytes in another folder: the key is the content hash, so the cache still hits.
    moved = shutil.copytree(folder, tmp_path / "moved")
    for source in (folder, moved):
        again = create_detector(f"hf:{source}")
        second = again.detect(frames[:3])
        assert again.engine_kind == "onnx"
        assert [o.scores for o in second] == [pytest.approx(o.scores) for o in first]
    assert onnx_files() == files

    # Different weights under the same file names: a new key, so a fresh export.
    monkeypatch.undo()
    other = vit_factory(FALCONSAI, seed=2)
    create_detector(f"hf:{other}").detect(frames[:1])
    assert len(onnx_files()) == len(files) + 1


def test_export_failure_falls_back_to_torch_with_a_log_note(
    vit_factory: Callable[..., Path],
    frames: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = vit_factory(FALCONSAI, seed=3)

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_export, "cached_export", broken)
    detector = create_detector(f"hf:{folder}")
    with caplog.at_level(logging.WARNING, logger="genguard.detectors.hf"):
        outputs = detector.detect(frames)
    assert detector.engine_kind == "torch"
    assert "ONNX export" in caplog.text and "unsupported operator" in caplog.text
    expected = torch_probabilities(folder, frames)[:, 1]
    np.testing.assert_allclose([o.scores["nudity"] for o in outputs], expected, atol=1e-5)


def test_gantman_classes_sum_into_categories_and_batches_match_singles(
    vit_factory: Callable[..., Path], frames: list[np.ndarray]
) -> None:
    folder = vit_factory(GANTMAN)
    torch_run = create_detector(f"hf:{folder}?onnx=0")
    batch = torch_run.detect(frames)
    assert torch_run.engine_kind == "torch"
    p = torch_probabilities(folder, frames)
    explicit = p[:, GANTMAN.index("hentai")] + p[:, GANTMAN.index("porn")]
    suggestive = explicit + p[:, GANTMAN.index("sexy")]
    np.testing.assert_allclose([o.scores["sexual_explicit"] for o in batch], explicit, atol=1e-5)
    np.testing.assert_allclose([o.scores["suggestive"] for o in batch], suggestive, atol=1e-5)
    singles = [torch_run.detect([frame])[0].scores for frame in frames]
    assert [o.scores for o in batch] == [pytest.approx(s, abs=1e-5) for s in singles]
    onnx_run = create_detector(f"hf:{folder}")
    assert [o.scores for o in onnx_run.detect(frames)] == [
        pytest.approx(o.scores, abs=1e-4) for o in batch
    ]


def test_unmappable_labels_are_listed_and_a_map_fixes_them(
    vit_factory: Callable[..., Path], frames: list[np.ndarray], tmp_path: Path
) -> None:
    folder = vit_factory(("cat", "weapon", "normal"))
    with pytest.raises(ConfigError, match=r"\['cat', 'weapon'\].*\?map="):
        create_detector(f"hf:{folder}")
    inline = create_detector(f"hf:{folder}?map=cat=-,weapon=violence*0.8&onnx=0")
    p = torch_probabilities(folder, frames)[:, 1]
    np.testing.assert_allclose(
        [o.scores["violence"] for o in inline.detect(frames)], 0.8 * p, atol=1e-5
    )
    table = tmp_path / "labels.toml"
    table.write_text('[labels]\ncat = "-"\nweapon = "violence*0.8"\n', encoding="utf-8")
    from_file = create_detector(f"hf:{folder}?map_file={table}&onnx=0")
    assert from_file.targets == inline.targets
    assert set(from_file.detect(frames[:1])[0].scores) == {"violence"}


def test_user_map_overrides_builtin_and_bad_maps_are_rejected(
    vit_factory: Callable[..., Path],
) -> None:
    folder = vit_factory(FALCONSAI)
    detector = create_detector(f"hf:{folder}?map=NSFW=sexual_explicit")
    assert detector.targets[1] == (hf.Target("sexual_explicit", 1.0),)
    with pytest.raises(ConfigError, match="unknown image category 'gore'"):
        create_detector(f"hf:{folder}?map=nsfw=gore")
    with pytest.raises(ConfigError, match="not a number"):
        create_detector(f"hf:{folder}?map=nsfw=nudity*lots")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['mpa'\]"):
        create_detector(f"hf:{folder}?mpa=nsfw=nudity")
    with pytest.raises(ConfigError, match="activation"):
        create_detector(f"hf:{folder}?activation=relu")


def test_multi_label_models_take_the_strongest_label(
    vit_factory: Callable[..., Path], frames: list[np.ndarray]
) -> None:
    folder = vit_factory(("porn", "hentai"), problem_type="multi_label_classification")
    detector = create_detector(f"hf:{folder}?onnx=0")
    assert not detector.exclusive
    logits = detector.logits(frames)
    expected = (1 / (1 + np.exp(-logits))).max(axis=1)
    got = [o.scores["sexual_explicit"] for o in detector.detect(frames)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_missing_weights_name_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="hf download genguard-tests/absent-model"):
        create_detector("hf:genguard-tests/absent-model")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        create_detector(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(ModelUnavailableError, match=r"no config\.json"):
        create_detector(f"hf:{tmp_path}")


def test_a_model_without_preprocessing_config_is_reported(
    vit_factory: Callable[..., Path], frames: list[np.ndarray], tmp_path: Path
) -> None:
    broken = shutil.copytree(vit_factory(FALCONSAI), tmp_path / "broken")
    (broken / "preprocessor_config.json").unlink()
    detector = create_detector(f"hf:{broken}")
    with pytest.raises(ModelUnavailableError, match=r"preprocessor_config\.json"):
        detector.detect(frames[:1])


def test_registry_knows_hf_and_rejects_unknown_names() -> None:
    assert "hf" in available_detectors()
    with pytest.raises(ConfigError, match=r"unknown detector backend 'hff'.*\bhf\b"):
        create_detector("hff:Falconsai/nsfw_image_detection")
    info = next(b for b in describe_backends() if b.name == "hf")
    assert info.categories == ("sexual_explicit", "nudity", "suggestive")
    # Weights are either present in this machine's cache or the message says how to get them.
    assert info.available or "hf download Falconsai/nsfw_image_detection" in info.weights


def test_guard_fuses_hf_scores_like_any_backend(
    vit_factory: Callable[..., Path], frames: list[np.ndarray]
) -> None:
    from genguard.content import load_image
    from genguard.guard import Guard
    from genguard.policy import load_policy

    detector = create_detector(f"hf:{vit_factory(FALCONSAI)}")
    guard = Guard(load_policy("standard"), [detector])
    image = load_image(frames[0])
    decision = guard.check_loaded([image])[0]
    raw = detector.detect(image.frames)[0].scores
    assert decision.backends == ["hf"]
    assert decision.categories["nudity"] == pytest.approx(raw["nudity"], abs=1e-6)
    assert decision.categories["suggestive"] >= decision.categories["nudity"]


def test_timm_style_label_names_are_read_too() -> None:
    assert hf.model_labels({"label_names": ["NSFW", "SFW"]}) == {0: "NSFW", 1: "SFW"}
    assert hf.model_labels({"id2label": {"1": "nsfw", "0": "normal"}}) == {0: "normal", 1: "nsfw"}
    targets = hf.resolve_labels(hf.model_labels({"label_names": ["NSFW", "SFW"]}), {})
    assert targets == [hf.BUILTIN_LABELS["nsfw"], ()]

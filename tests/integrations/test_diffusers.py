"""genguard inside real diffusers pipelines (tiny random weights, CPU, 2 steps, 64x64).

Positive cases use synthetic signals (a fake detector that flags every frame, or none),
so no explicit content is ever generated or needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from genguard.decision import Action, Region  # noqa: E402
from genguard.guard import Guard  # noqa: E402
from genguard.integrations.diffusers import (  # noqa: E402
    GuardedOutput,
    GuardFeatureExtractor,
    GuardSafetyChecker,
    PromptBlocked,
    guard_pipeline,
    install_safety_checker,
)
from genguard.policy import load_policy  # noqa: E402
from genguard.text.analyser import PromptAnalyser  # noqa: E402
from tests.conftest import FakeDetector  # noqa: E402
from tests.tiny_diffusers import build_tiny_pipeline  # noqa: E402

BOX = (8, 8, 32, 32)  # x, y, w, h in a 64x64 image
CALL = {"num_inference_steps": 2, "height": 64, "width": 64, "guidance_scale": 1.0}


def _detector(category: str | None) -> FakeDetector:
    """Flags every frame (any grey level) with one ``category`` region, or nothing."""
    if category is None:
        return FakeDetector()
    region = Region(box=BOX, label="SYNTHETIC", category=category, score=0.95, backend="fake")
    return FakeDetector({level: [region] for level in range(0, 260, 10)})


def _guard(category: str | None = None, **kwargs: Any) -> Guard:
    return Guard(
        load_policy("standard"),
        [_detector(category)],
        prompt_analyser=PromptAnalyser(semantic=False),
        **kwargs,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture
def pipe(folder: Path) -> Any:
    pipeline = diffusers.StableDiffusionPipeline.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _run(pipe: Any, prompt: Any = "a red house", **kwargs: Any) -> Any:
    generator = torch.Generator("cpu").manual_seed(0)
    return pipe(prompt, generator=generator, **{**CALL, **kwargs})


def _count_unet_calls(pipe: Any) -> list[int]:
    calls: list[int] = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _tiny_clip_checker() -> Any:
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPConfig

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    torch.manual_seed(0)
    return StableDiffusionSafetyChecker(config).eval()


# -- (a) the drop-in safety checker ------------------------------------------------------


@pytest.mark.parametrize("form", ["numpy", "tensor"])
def test_checker_call_and_return_shapes_match_diffusers_own(form: str) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.random((2, 64, 64, 3)).astype(np.float32)
    images = nhwc if form == "numpy" else torch.from_numpy(nhwc).permute(0, 3, 1, 2) * 2 - 1
    clip_input = torch.zeros((2, 3, 32, 32))

    def copy(x: Any) -> Any:
        return x.copy() if isinstance(x, np.ndarray) else x.clone()

    theirs, their_flags = _tiny_clip_checker()(images=copy(images), clip_input=clip_input)
    for category in (None, "nudity"):
        checker = GuardSafetyChecker(_guard(category))
        ours, flags = checker(images=copy(images), clip_input=clip_input)
        assert type(ours) is type(theirs) and ours.shape == theirs.shape
        assert ours.dtype == theirs.dtype
        assert type(flags) is type(their_flags) and len(flags) == len(their_flags) == 2
        assert all(isinstance(f, bool) for f in flags)
        assert flags == [category is not None] * 2
        assert [d.action for d in checker.last_decisions] == (
            [Action.CENSOR] * 2 if category else [Action.ALLOW] * 2
        )
        if category is None:  # clean images come back untouched
            assert np.array_equal(np.asarray(ours), np.asarray(images))


def test_nan_and_inf_images_are_judged_as_shown_without_warnings() -> None:
    """An fp16 VAE overflow gives NaN pixels: judged as the black they display as, with
    the same verdict on every platform, and flagged ones still censored."""
    import warnings

    images = np.full((3, 64, 64, 3), 0.5, dtype=np.float32)
    images[0] = np.nan  # all NaN
    images[1, :32] = np.nan  # half NaN
    images[2, :, :8] = np.inf
    for category in (None, "nudity"):
        checker = GuardSafetyChecker(_guard(category))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "invalid value encountered in cast"
            out, flags = checker(images=images.copy(), clip_input=torch.zeros((3, 3, 32, 32)))
        assert flags == [category is not None] * 3
        expected = Action.CENSOR if category else Action.ALLOW
        assert [d.action for d in checker.last_decisions] == [expected] * 3
        if category:  # censored output is finite: what is published is what was judged
            assert np.isfinite(out).all()


def _reference(pipe: Any, **kwargs: Any) -> np.ndarray:
    return np.asarray(_run(pipe, output_type="np", **kwargs).images)


def test_clean_images_are_unchanged_and_not_flagged(pipe: Any) -> None:
    reference = _reference(pipe, num_images_per_prompt=2)
    checker = install_safety_checker(pipe, _guard(None))
    assert isinstance(pipe.feature_extractor, GuardFeatureExtractor)  # the tiny pipe had none
    out = _run(pipe, output_type="np", num_images_per_prompt=2)
    assert out.nsfw_content_detected == [False, False]
    assert np.array_equal(out.images, reference)
    assert [d.action for d in checker.last_decisions] == [Action.ALLOW, Action.ALLOW]


def test_flagged_images_come_back_censored_not_black(pipe: Any) -> None:
    reference = _reference(pipe, num_images_per_prompt=2)
    checker = install_safety_checker(pipe, _guard("nudity"))
    out = _run(pipe, output_type="np", num_images_per_prompt=2)
    assert out.nsfw_content_detected == [True, True]
    assert out.images.shape == reference.shape == (2, 64, 64, 3)
    assert [d.action for d in checker.last_decisions] == [Action.CENSOR, Action.CENSOR]
    x, y, w, h = BOX
    inside = np.zeros((64, 64), dtype=bool)
    inside[max(0, y - 4) : y + h + 4, max(0, x - 4) : x + w + 4] = True  # grown by 10 %
    for image, original in zip(out.images, reference, strict=True):
        assert image.max() > 0.1  # not diffusers' black image
        # outside the censored box: the generated picture (to 8-bit precision)
        assert np.abs(image[~inside] - original[~inside]).max() <= 1.5 / 255
        assert not np.allclose(image[y : y + h, x : x + w], original[y : y + h, x : x + w])


def test_blocked_images_become_placeholders_in_pil_output(pipe: Any) -> None:
    install_safety_checker(pipe, _guard("sexual_explicit"))
    out = _run(pipe)  # output_type="pil": the tensor path of run_safety_checker
    assert out.nsfw_content_detected == [True]
    pixels = np.asarray(out.images[0])
    assert pixels.shape == (64, 64, 3)
    assert np.all(np.abs(pixels.astype(int) - 128) <= 1)  # the neutral grey placeholder


def test_checker_in_the_constructor_and_from_pretrained(folder: Path, pipe: Any) -> None:
    checker = GuardSafetyChecker(_guard("nudity"))
    components = {**pipe.components, "safety_checker": checker}
    components["feature_extractor"] = GuardFeatureExtractor()
    built = diffusers.StableDiffusionPipeline(**components)
    built.set_progress_bar_config(disable=True)
    assert _run(built).nsfw_content_detected == [True]

    loaded = diffusers.StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=checker, feature_extractor=GuardFeatureExtractor()
    )
    loaded.set_progress_bar_config(disable=True)
    loaded.to("cpu", torch.float32)  # moving the pipeline skips the (non-module) checker
    assert loaded.device.type == "cpu" and loaded.dtype == torch.float32
    assert _run(loaded, output_type="pt").nsfw_content_detected == [True]


def test_a_pipeline_without_feature_extractor_fails_without_the_trivial_one(pipe: Any) -> None:
    pipe.safety_checker = GuardSafetyChecker(_guard(None))  # feature_extractor stays None
    with pytest.raises(TypeError):
        _run(pipe)


# -- (b) guard_pipeline ------------------------------------------------------------------


def test_blocked_prompt_raises_before_any_denoising_step(pipe: Any) -> None:
    guarded = guard_pipeline(pipe, guard=_guard(None))
    calls = _count_unet_calls(guarded)
    with pytest.raises(PromptBlocked) as raised:
        _run(guarded, "a nude woman")
    assert calls == []
    assert raised.value.decisions[0].action is Action.BLOCK
    assert raised.value.code == "prompt_blocked"
    # the negative prompt is checked too: clothes listed there ask for nudity
    with pytest.raises(PromptBlocked):
        _run(guarded, "a woman", negative_prompt="clothes, dress, shirt")
    assert calls == []
    _run(guarded, "a woman", negative_prompt="blurry")
    assert len(calls) == 2  # now it generates: 2 steps, guidance 1.0 -> one UNet call each


def test_blocked_prompt_can_return_placeholders(pipe: Any) -> None:
    guarded = guard_pipeline(pipe, guard=_guard(None), on_blocked_prompt="placeholder")
    calls = _count_unet_calls(guarded)
    out = _run(guarded, ["a red house", "a nude woman"], output_type="np")
    assert calls == []
    assert isinstance(out, GuardedOutput)
    assert out.images.shape == (2, 64, 64, 3)
    assert out.nsfw_content_detected == [True, True]
    assert [d.action for d in out.genguard_prompt_decisions] == [Action.ALLOW, Action.BLOCK]
    assert np.allclose(out.images, 128 / 255, atol=1 / 255)


def test_guarded_outputs_are_checked_with_the_prompt_as_context(pipe: Any) -> None:
    reference = _run(pipe, output_type="np", num_images_per_prompt=2).images
    guarded = guard_pipeline(pipe, guard=_guard(None))
    assert isinstance(guarded, diffusers.StableDiffusionPipeline)
    out = _run(guarded, output_type="np", num_images_per_prompt=2)
    assert np.array_equal(out.images, reference)  # clean: unchanged
    assert [d.action for d in out.genguard_decisions] == [Action.ALLOW] * 2
    assert [d.kind for d in out.genguard_prompt_decisions] == ["prompt"]
    assert guarded.genguard_last_decisions == out.genguard_decisions

    flagged = guard_pipeline(pipe, guard=_guard("nudity"))
    out = _run(flagged, ["a red house", "a blue car"], num_images_per_prompt=2)
    assert len(out.images) == 4 and out.images[0].size == (64, 64)
    assert [d.action for d in out.genguard_decisions] == [Action.CENSOR] * 4
    assert out.nsfw_content_detected == [True] * 4
    assert len(out.genguard_prompt_decisions) == 2

    images, flags = _run(flagged, return_dict=False, output_type="pt")
    assert tuple(images.shape) == (1, 3, 64, 64) and flags == [True]
    assert [d.action for d in flagged.genguard_last_decisions] == [Action.CENSOR]


def test_prompt_context_reaches_the_image_hard_rules(pipe: Any) -> None:
    """adult allows nudity, but not with a minor in the prompt (a hard rule)."""
    guard = Guard(
        load_policy("adult"), [_detector("nudity")], prompt_analyser=PromptAnalyser(semantic=False)
    )
    guarded = guard_pipeline(pipe, guard=guard, on_blocked_prompt="placeholder")
    out = _run(guarded, "a red house", output_type="np")
    assert [d.action for d in out.genguard_decisions] == [Action.ALLOW]
    prompt = guard.check_prompt("a child in a park")
    assert prompt.action is Action.ALLOW and prompt.categories.get("minor", 0) > 0.5
    out = _run(guarded, "a child in a park", output_type="np")
    assert [d.action for d in out.genguard_decisions] == [Action.BLOCK]
    assert out.genguard_decisions[0].hard_rule


def test_latents_and_embeddings_are_refused(pipe: Any) -> None:
    from genguard.errors import ConfigError, ContentError

    guarded = guard_pipeline(pipe, guard=_guard(None))
    with pytest.raises(ConfigError):
        _run(guarded, output_type="latent")
    with pytest.raises(ContentError):
        guarded(prompt_embeds=torch.zeros((1, 77, 32)), **CALL)


#: A mark strong enough to read back on the tiny pipeline's 256 px of noise.
STRONG = 6.0


@pytest.mark.parametrize("way", ["checker", "guard_pipeline"])
def test_shown_images_are_watermarked(pipe: Any, way: str) -> None:
    """The shown image is Guard.publish's marked pixels (to 8-bit rounding).

    (The tiny pipeline paints 256 px of noise, in which a mark of the default strength
    does not read back, and an image under 512 px is only called watermarked when its
    mark reads back; so these use a stronger mark, and the next test the default one.)
    """
    from genguard.actions.publish import WatermarkSettings
    from genguard.provenance.watermark import embed_watermark

    reference = np.asarray(_run(pipe, height=256, width=256).images[0])  # the mark needs 256 px
    guard = _guard(None, watermark=WatermarkSettings(0x5AFE, strength=STRONG))
    if way == "checker":
        checker = install_safety_checker(pipe, guard)
    else:
        pipe = guard_pipeline(pipe, guard=guard)
    out = _run(pipe, height=256, width=256)
    assert out.nsfw_content_detected == [False]
    decisions = checker.last_decisions if way == "checker" else out.genguard_decisions
    assert "watermark embedded: payload 0x00005afe" in decisions[0].notes
    shown = np.asarray(out.images[0]).astype(int)
    assert not np.array_equal(shown, reference)
    marked = embed_watermark(reference, 0x5AFE, strength=STRONG)
    assert np.abs(shown - marked.astype(int)).max() <= 1


# -- SDXL layout: no checker slot, two text encoders ---------------------------------------


def test_a_mark_that_does_not_read_back_is_not_claimed(pipe: Any) -> None:
    """256 px of painted noise: the mark cannot be read back, so the decision says so and
    the shown image is the pipeline's own (no watermark claimed, no 8-bit round trip)."""
    from genguard.actions.publish import WatermarkSettings

    reference = np.asarray(_run(pipe, height=256, width=256).images[0])
    guard = _guard(None, watermark=WatermarkSettings(0x5AFE))
    checker = install_safety_checker(pipe, guard)
    out = _run(pipe, height=256, width=256)
    notes = checker.last_decisions[0].notes
    assert any("does not read back on this 256x256 image" in note for note in notes), notes
    assert np.array_equal(np.asarray(out.images[0]), reference)


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_diffusers import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture
def sdxl(sdxl_folder: Path) -> Any:
    pipeline = diffusers.StableDiffusionXLPipeline.from_pretrained(sdxl_folder)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_sdxl_second_prompts_are_checked_before_any_denoising_step(sdxl: Any) -> None:
    guarded = guard_pipeline(sdxl, guard=_guard(None))
    assert isinstance(guarded, diffusers.StableDiffusionXLPipeline)
    calls = _count_unet_calls(guarded)
    with pytest.raises(PromptBlocked):
        _run(guarded, "a red house", prompt_2="a nude woman")
    with pytest.raises(PromptBlocked):
        _run(guarded, "a woman", negative_prompt_2="clothes, dress, shirt")
    assert calls == []
    out = _run(guarded, "a red house", prompt_2="a blue car", output_type="np")
    assert len(calls) == 2 and out.images.shape == (1, 64, 64, 3)
    assert [d.action for d in out.genguard_decisions] == [Action.ALLOW]


def test_sdxl_outputs_are_censored_with_decisions_attached(sdxl: Any) -> None:
    reference = _run(sdxl, ["a red house", "a blue car"], output_type="np").images
    flagged = guard_pipeline(sdxl, guard=_guard("nudity"))
    out = _run(flagged, ["a red house", "a blue car"], output_type="np")
    assert [d.action for d in out.genguard_decisions] == [Action.CENSOR] * 2
    assert not hasattr(out, "nsfw_content_detected")  # SDXL's output has no such field
    x, y, w, h = BOX
    changed = np.abs(out.images - reference).max(axis=-1) > 1 / 255
    assert changed[:, y : y + h, x : x + w].mean() > 0.5  # the region was censored
    assert not changed[:, :4, :4].any()  # away from it, pixels are the pipeline's own

"""The ``clip`` backend on a tiny local CLIP: SD-checker parity, heads, zero-shot, ONNX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# The hub backends need torch + transformers (the "audit" extra); without them, skip.
pytest.importorskip("torch")
pytest.importorskip("transformers")

from genguard.detectors import clip, onnx_export
from genguard.detectors.base import create_detector
from genguard.detectors.hf import load_processor
from genguard.errors import ConfigError, ModelUnavailableError
from tests.detectors.conftest import tiny_clip_config

#: Frame indices the synthetic concepts are built on (see ``make_checker``).
FLAGGED, ADJUSTED = 0, 1


def reference_embeds(folder: Path, frames: list[np.ndarray]) -> np.ndarray:
    """transformers' own CLIPModel.get_image_features, L2-normalised (the reference)."""
    import torch
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    processor = load_processor(folder)
    with torch.no_grad():
        out = model.get_image_features(**processor(images=frames, return_tensors="pt"))
    embeds = getattr(out, "pooler_output", out).numpy()
    return embeds / np.linalg.norm(embeds, axis=1, keepdims=True)


def make_checker(
    clip_folder: Path, frames: list[np.ndarray], folder: Path, share_tower: bool
) -> tuple[Path, list[bool]]:
    """A diffusers StableDiffusionSafetyChecker with concepts built from benign frames.

    Concept 0 is frame FLAGGED's own embedding with a threshold just under 1 (fires on that
    frame only). Frame ADJUSTED is a special-care concept, and concept 1 is its embedding
    with a threshold 0.005 *above* 1: it fires only through the +0.01 special-care
    adjustment. The rest never fire. Returns the folder and diffusers' verdict per frame.
    """
    pytest.importorskip("diffusers")
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPModel

    torch.manual_seed(7)
    checker = StableDiffusionSafetyChecker(tiny_clip_config()).eval()
    if share_tower:
        source = CLIPModel.from_pretrained(clip_folder)
        # transformers 4 nests the tower one level deeper than transformers 5.
        tower = getattr(checker.vision_model, "vision_model", checker.vision_model)
        tower.load_state_dict(source.vision_model.state_dict())
        checker.visual_projection.load_state_dict(source.visual_projection.state_dict())
    processor = load_processor(clip_folder)
    pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeds = checker.visual_projection(checker.vision_model(pixels)[1])
        concepts = torch.randn_like(checker.concept_embeds)
        concepts[0], concepts[1] = embeds[FLAGGED], embeds[ADJUSTED]
        checker.concept_embeds.copy_(concepts)
        checker.concept_embeds_weights.fill_(1.0)
        checker.concept_embeds_weights[0] = 0.999
        checker.concept_embeds_weights[1] = 1.005
        special = torch.randn_like(checker.special_care_embeds)
        special[1] = embeds[ADJUSTED]
        checker.special_care_embeds.copy_(special)
        checker.special_care_embeds_weights.fill_(1.0)
        checker.special_care_embeds_weights[1] = 0.99
        _, flagged = checker(clip_input=pixels, images=np.zeros((len(frames), 4, 4, 3)))
    checker.save_pretrained(folder)
    return folder, [bool(f) for f in flagged]


def test_checker_concepts_reproduce_diffusers_verdicts_in_one_pass(
    tiny_clip: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    folder, expected = make_checker(tiny_clip, frames, tmp_path / "checker", share_tower=True)
    assert expected[FLAGGED] and expected[ADJUSTED] and not all(expected)
    detector = create_detector(f"clip:{tiny_clip}?checker={folder}&zeroshot=none")
    outputs = detector.detect(frames)
    assert detector._loaded.checker_tower is None  # same tower: one embedding pass
    nudity = [o.scores["nudity"] for o in outputs]
    # Any threshold in (0.5, 0.7] gives the checker's own verdict.
    assert [n >= clip.CHECKER_FIRED for n in nudity] == expected
    assert all(n <= 0.5 for n, e in zip(nudity, expected, strict=True) if not e)
    assert outputs[FLAGGED].scores["sexual_explicit"] == pytest.approx(0.5 * nudity[FLAGGED])


def test_checker_with_its_own_tower_runs_a_second_pass(
    tiny_clip: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    folder, expected = make_checker(tiny_clip, frames, tmp_path / "own", share_tower=False)
    detector = create_detector(f"clip:{tiny_clip}?checker={folder}&zeroshot=none")
    outputs = detector.detect(frames)
    assert detector._loaded.checker_tower is not None
    assert [o.scores["nudity"] >= clip.CHECKER_FIRED for o in outputs] == expected


def test_special_care_adjustment_matters() -> None:
    """Concept 1 sits 0.005 under its threshold: it fires only after a special concept does."""
    e = np.eye(3)
    concepts = clip.CheckerConcepts(e[:2], np.array([2.0, 1.005]), e[2:], np.array([0.5]))
    frame = np.array([[0.0, 1.0, 0.0]])
    margin, fired = concepts.margins(frame)
    assert not fired[0] and margin[0] == pytest.approx(-0.005)
    with_special = clip.CheckerConcepts(e[:2], np.array([2.0, 1.005]), e[1:2], np.array([0.5]))
    margin, fired = with_special.margins(frame)
    assert fired[0] and margin[0] == pytest.approx(0.005)


def test_onnx_embeddings_match_transformers_and_the_export_is_reused(
    tiny_clip: Path, frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = reference_embeds(tiny_clip, frames)
    eager = create_detector(f"clip:{tiny_clip}?checker=none&onnx=0")
    np.testing.assert_allclose(eager.embed(frames), reference, atol=1e-5)
    assert eager.engine_kind == "torch"
    exported = create_detector(f"clip:{tiny_clip}?checker=none")
    np.testing.assert_allclose(exported.embed(frames), reference, atol=1e-4)
    assert exported.engine_kind == "onnx"
    before = sorted(onnx_export.cache_dir().iterdir())

    import torch

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("cached export and prompt embeddings should be reused")

    monkeypatch.setattr(torch.onnx, "export", fail)
    monkeypatch.setattr(clip, "load_clip_module", fail)
    again = create_detector(f"clip:{tiny_clip}?checker=none")
    assert [o.scores for o in again.detect(frames)] == [
        pytest.approx(o.scores, abs=1e-5) for o in exported.detect(frames)
    ]
    assert sorted(onnx_export.cache_dir().iterdir()) == before


def test_zero_shot_scores_are_clip_softmax_over_the_prompt_set(
    tiny_clip: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoTokenizer, CLIPModel

    prompts = clip.PromptSet.load("default")
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    tokens = AutoTokenizer.from_pretrained(tiny_clip)(
        prompts.prompts, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        text = model.get_text_features(**tokens)
    text = getattr(text, "pooler_output", text).numpy()
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    logits = 100.0 * reference_embeds(tiny_clip, frames) @ text.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    owners = np.array([o or "" for o in prompts.owners])

    detector = create_detector(f"clip:{tiny_clip}?checker=none&onnx=0")
    outputs = detector.detect(frames)
    for category in ("violence", "hate_symbol"):
        np.testing.assert_allclose(
            [o.scores[category] for o in outputs], p[:, owners == category].sum(axis=1), atol=1e-4
        )
    cooler = create_detector(f"clip:{tiny_clip}?checker=none&onnx=0&temperature=1")
    flat = [o.scores["violence"] for o in cooler.detect(frames)]
    share = len(prompts.categories["violence"]) / len(prompts.prompts)
    np.testing.assert_allclose(flat, share, atol=0.02)  # near-uniform at temperature 1

    custom = tmp_path / "prompts.toml"
    custom.write_text(
        'temperature = 50\n[categories]\nviolence = ["blood"]\n[neutral]\nprompts = ["cat"]\n'
    )
    two = create_detector(f"clip:{tiny_clip}?checker=none&zeroshot={custom}&onnx=0")
    assert set(two.detect(frames[:1])[0].scores) == {"violence"}
    custom.write_text('[categories]\ngore = ["blood"]\n[neutral]\nprompts = ["cat"]\n')
    with pytest.raises(ConfigError, match="unknown image category 'gore'"):
        create_detector(f"clip:{tiny_clip}?checker=none&zeroshot={custom}")


def test_mlp_heads_match_a_torch_reference(
    tiny_clip: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    import torch
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    k0, b0 = rng.normal(size=(16, 8)), rng.normal(size=8)
    k1, b1 = rng.normal(size=(8, 1)) * 3, rng.normal(size=1)
    mean, variance = rng.normal(size=16) * 0.1, rng.uniform(0.5, 2.0, size=16)
    binary = tmp_path / "nsfw.npz"
    np.savez(
        binary,
        **{
            "dense.0.kernel": k0,
            "dense.0.bias": b0,
            "dense.1.kernel": k1,
            "dense.1.bias": b1,
            "input.mean": mean,
            "input.variance": variance,
        },
    )
    k2, b2 = rng.normal(size=(16, 3)) * 3, rng.normal(size=3)
    multi = tmp_path / "multi.safetensors"
    save_file(
        {"dense.0.kernel": k2, "dense.0.bias": b2},
        str(multi),
        metadata={"targets": "-;violence;nudity+suggestive*0.5"},
    )

    embeds = torch.from_numpy(reference_embeds(tiny_clip, frames)).double()
    net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    net = net.double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(k0.T)), net[0].bias.copy_(torch.from_numpy(b0))
        net[2].weight.copy_(torch.from_numpy(k1.T)), net[2].bias.copy_(torch.from_numpy(b1))
        scaled = (embeds - torch.from_numpy(mean)) / torch.from_numpy(np.sqrt(variance))
        nsfw = torch.sigmoid(net(scaled))[:, 0].numpy()
        soft = torch.softmax(embeds @ torch.from_numpy(k2) + torch.from_numpy(b2), dim=1).numpy()

    detector = create_detector(f"clip:{tiny_clip}?checker=none&zeroshot=none&head={binary},{multi}")
    outputs = detector.detect(frames)
    assert detector.components == ["head:nsfw.npz", "head:multi.safetensors"]
    explicit = [o.scores["sexual_explicit"] for o in outputs]
    np.testing.assert_allclose(explicit, 0.5 * nsfw, atol=1e-4)
    np.testing.assert_allclose([o.scores["violence"] for o in outputs], soft[:, 1], atol=1e-4)
    # Two heads speak to nudity: the backend reports the stronger one.
    np.testing.assert_allclose(
        [o.scores["nudity"] for o in outputs], np.maximum(nsfw, soft[:, 2]), atol=1e-4
    )

    wide = tmp_path / "wide.npz"
    np.savez(wide, **{"dense.0.kernel": np.ones((768, 1)), "dense.0.bias": np.zeros(1)})
    with pytest.raises(ConfigError, match="expects 768-d embeddings"):
        create_detector(f"clip:{tiny_clip}?checker=none&head={wide}")
    with pytest.raises(ConfigError, match="does not exist"):
        create_detector(f"clip:{tiny_clip}?head={tmp_path / 'absent.npz'}")


def test_all_scorers_share_one_embedding_pass(
    tiny_clip: Path, frames: list[np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker, _ = make_checker(tiny_clip, frames, tmp_path / "checker", share_tower=True)
    head = tmp_path / "head.npz"
    np.savez(head, **{"dense.0.kernel": np.ones((16, 1)), "dense.0.bias": np.zeros(1)})
    detector = create_detector(f"clip:{tiny_clip}?checker={checker}&head={head}")
    assert detector.components == ["checker", "head:head.npz", "zeroshot"]
    calls: list[int] = []
    original = clip.VisionTower.embed

    def counted(self: clip.VisionTower, batch: list[np.ndarray]) -> np.ndarray:
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(clip.VisionTower, "embed", counted)
    outputs = detector.detect(frames)
    assert calls == [len(frames)]
    assert set(outputs[0].scores) == set(detector.categories)


def test_errors_name_the_missing_piece(tiny_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="hf download genguard-tests/no-clip"):
        create_detector("clip:genguard-tests/no-clip")
    with pytest.raises(ModelUnavailableError, match="hf download genguard-tests/no-checker"):
        create_detector(f"clip:{tiny_clip}?checker=genguard-tests/no-checker")
    with pytest.raises(ConfigError, match="nothing to score"):
        create_detector(f"clip:{tiny_clip}?checker=none&zeroshot=none")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['heads'\]"):
        create_detector(f"clip:{tiny_clip}?heads=x.npz")


def test_guard_reports_zero_shot_categories(tiny_clip: Path, frames: list[np.ndarray]) -> None:
    from genguard.content import load_image
    from genguard.guard import Guard
    from genguard.policy import load_policy

    detector = create_detector(f"clip:{tiny_clip}?checker=none")
    image = load_image(frames[2])
    decision = Guard(load_policy("standard"), [detector]).check_loaded([image])[0]
    raw = detector.detect(image.frames)[0].scores
    assert decision.backends == ["clip"]
    assert decision.categories["violence"] == pytest.approx(raw["violence"], abs=1e-6)
    assert decision.categories["hate_symbol"] == pytest.approx(raw["hate_symbol"], abs=1e-6)


def test_cascade_runs_clip_only_on_frames_hf_left_unsettled(
    tiny_clip: Path, frames: list[np.ndarray], vit_factory: Callable[..., Path]
) -> None:
    from genguard.content import load_image
    from genguard.guard import Guard
    from genguard.policy import parse_policy

    vit = vit_factory(("normal", "nsfw"))
    cascade = parse_policy(
        'name = "cascade"\n[image.categories.nudity]\nthreshold = 0.6\naction = "block"\n'
        '[image.cascade]\nstages = [["hf"], ["clip"]]\nsafe_below = 0.05\n'
    )
    images = [load_image(frame) for frame in frames]
    clip_detector = create_detector(f"clip:{tiny_clip}?checker=none")
    # hf reporting only a category the policy does not act on: every frame is settled.
    quiet = create_detector(f"hf:{vit}?map=nsfw=face")
    decisions = Guard(cascade, [quiet, clip_detector]).check_loaded(images)
    assert all(d.backends == ["hf"] for d in decisions)
    assert all(any("clip skipped" in n for n in d.notes) for d in decisions)
    # hf reporting nudity: frames at or above safe_below go on to clip, the others stop.
    loud = create_detector(f"hf:{vit}")
    nudity = [o.scores["nudity"] for o in loud.detect(frames)]
    decisions = Guard(cascade, [loud, clip_detector]).check_loaded(images)
    expected = [["clip", "hf"] if n >= 0.05 else ["hf"] for n in nudity]
    assert [d.backends for d in decisions] == expected
    assert ["clip", "hf"] in expected

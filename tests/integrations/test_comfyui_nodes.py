"""The ComfyUI node pack (comfyui/genguard_nodes), loaded the way ComfyUI loads it.

ComfyUI itself is not installed: the pack is imported from its folder path and its nodes
are called on tensors in ComfyUI's IMAGE layout ([B, H, W, C] float32 in [0, 1]).
Flagged images come from a fake detector injected into the pack's Guard cache, so no
unsafe content is needed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from genguard.guard import Guard  # noqa: E402
from genguard.policy import load_policy  # noqa: E402
from genguard.provenance.watermark import text_payload  # noqa: E402
from genguard.text.analyser import PromptAnalyser  # noqa: E402
from tests.conftest import FakeDetector, nudity_region  # noqa: E402

PACK = Path(__file__).resolve().parents[2] / "comfyui" / "genguard_nodes"
FLAGGED_LEVEL = 200  # the fake detector flags frames whose mean grey level is 200..209
FLAGGED_MEAN = 205
BOX = (20, 30, 60, 50)
COMFY_TYPES = {"IMAGE", "STRING", "INT", "FLOAT", "BOOLEAN", "MASK", "LATENT"}


def load_pack(name: str = "genguard_nodes") -> ModuleType:
    """What ComfyUI's ``load_custom_node`` does for a folder in ``custom_nodes/``."""
    spec = importlib.util.spec_from_file_location(
        name, PACK / "__init__.py", submodule_search_locations=[str(PACK)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@pytest.fixture
def pack(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load_pack("genguard_nodes_test")
    monkeypatch.delitem(sys.modules, "genguard_nodes_test")
    guard = Guard(
        load_policy("standard"),
        [FakeDetector({FLAGGED_LEVEL: [nudity_region(BOX)]})],
        prompt_analyser=PromptAnalyser(semantic=False),
    )
    module.GUARDS["standard"] = guard
    return module


def comfy_images(*levels: int, size: tuple[int, int] = (160, 200)) -> Any:
    """A ComfyUI IMAGE batch (height, width) of grey noise around each mean level.

    Noise, not flat grey: blurring or pixelating a flat image would leave it unchanged.
    """
    height, width = size
    rng = np.random.default_rng(0)
    batch = np.stack(
        [rng.integers(level - 30, level + 31, (height, width, 3)) / 255.0 for level in levels]
    )
    return torch.from_numpy(batch.astype(np.float32))


def _node(pack: ModuleType, name: str) -> Any:
    return pack.NODE_CLASS_MAPPINGS[name]()


def _check_spec(spec: Any) -> None:
    """One INPUT_TYPES entry: a type name, or a combo list, then an optional options dict."""
    assert isinstance(spec, tuple) and 1 <= len(spec) <= 2
    kind = spec[0]
    if isinstance(kind, list):
        assert kind and all(isinstance(choice, str) for choice in kind)
    else:
        assert kind in COMFY_TYPES
    if len(spec) == 2:
        options = spec[1]
        assert isinstance(options, dict)
        if "default" in options and isinstance(kind, list):
            assert options["default"] in kind
        if kind in ("INT", "FLOAT"):
            assert options["min"] <= options["default"] <= options["max"]


def test_pack_lists_four_nodes_with_well_formed_specs(pack: ModuleType) -> None:
    mappings = pack.NODE_CLASS_MAPPINGS
    assert set(mappings) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    assert sorted(pack.NODE_DISPLAY_NAME_MAPPINGS.values()) == [
        "genguard Check Image",
        "genguard Check Prompt",
        "genguard Detect Watermark",
        "genguard Watermark",
    ]
    for cls in mappings.values():
        inputs = cls.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional", "hidden"} and inputs["required"]
        for section in ("required", "optional"):
            for spec in inputs.get(section, {}).values():
                _check_spec(spec)
        assert isinstance(cls.RETURN_TYPES, tuple) and cls.RETURN_TYPES
        assert all(kind in COMFY_TYPES for kind in cls.RETURN_TYPES)
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        assert callable(getattr(cls, cls.FUNCTION))
        assert cls.CATEGORY == "genguard"
        # The function accepts every input by name, as ComfyUI passes them.
        code = getattr(cls, cls.FUNCTION).__code__
        names = set(code.co_varnames[: code.co_argcount])
        wanted = set(inputs["required"]) | set(inputs.get("optional", {}))
        assert wanted <= names


def test_pack_lists_nodes_without_genguard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing needs nothing; running says what to install."""
    monkeypatch.setitem(sys.modules, "genguard", None)  # import genguard -> ImportError
    module = load_pack("genguard_nodes_bare")
    monkeypatch.delitem(sys.modules, "genguard_nodes_bare")
    assert len(module.NODE_CLASS_MAPPINGS) == 4
    with pytest.raises(RuntimeError, match="pip install genguard"):
        module.GenguardCheckPrompt().check("a red house", "standard")


def test_check_prompt_blocks_and_allows(pack: ModuleType) -> None:
    node = _node(pack, "GenguardCheckPrompt")
    allowed, action, decision = node.check("a nude woman", "standard", negative_prompt="")
    assert (allowed, action) == (False, "block")
    assert json.loads(decision)["action"] == "block"
    allowed, action, decision = node.check("a red house", "standard", negative_prompt="blurry")
    assert (allowed, action) == (True, "allow")
    assert json.loads(decision)["kind"] == "prompt"


def test_check_prompt_errors_are_clear(pack: ModuleType) -> None:
    node = _node(pack, "GenguardCheckPrompt")
    with pytest.raises(ValueError, match="unknown policy"):
        node.check("a red house", "lenient")
    with pytest.raises(RuntimeError, match="genguard Check Prompt"):
        node.check("x" * 100_000, "standard")


def test_check_image_censors_flagged_and_keeps_clean(pack: ModuleType) -> None:
    images = comfy_images(FLAGGED_MEAN, 105)
    out, flagged, decisions_json = _node(pack, "GenguardCheckImage").check(images, "standard")
    assert out.shape == images.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert flagged is True
    decisions = json.loads(decisions_json)
    assert [d["action"] for d in decisions][1] == "allow"
    assert decisions[0]["action"] != "allow"
    assert float((out[0] - images[0]).abs().max()) > 0.05  # the flagged one changed
    x, y, w, h = BOX
    inside = out[0, y : y + h, x : x + w]
    assert float((inside - images[0, y : y + h, x : x + w]).abs().max()) > 0.05
    assert float((out[1] - images[1]).abs().max()) <= 1 / 255  # the clean one did not


def test_check_image_all_clean_and_alpha(pack: ModuleType) -> None:
    rgba = torch.zeros((2, 64, 96, 4), dtype=torch.float32)
    rgba[0, ..., 3] = 1.0  # opaque black
    rgba[1, ..., 3] = 0.5  # black at half alpha over white: mid grey
    out, flagged, decisions_json = _node(pack, "GenguardCheckImage").check(rgba, "standard")
    assert tuple(out.shape) == (2, 64, 96, 3) and out.dtype == torch.float32
    assert flagged is False
    assert [d["action"] for d in json.loads(decisions_json)] == ["allow", "allow"]
    assert float(out[0].max()) == 0.0
    assert abs(float(out[1].mean()) - 0.5) < 1e-6


def test_check_image_alpha_flagged(pack: ModuleType) -> None:
    """RGBA composited over white reaches the detector (so a flagged image is flagged)."""
    rgba = torch.zeros((1, 160, 200, 4), dtype=torch.float32)
    rgba[..., :3] = FLAGGED_LEVEL / 255.0
    rgba[..., 3] = 1.0
    out, flagged, _ = _node(pack, "GenguardCheckImage").check(rgba, "standard")
    assert flagged is True and out.shape[-1] == 3


def test_check_image_takes_prompt_decision_as_context(pack: ModuleType) -> None:
    _, _, prompt_json = _node(pack, "GenguardCheckPrompt").check("a red house", "standard")
    images = comfy_images(105)
    out, flagged, _ = _node(pack, "GenguardCheckImage").check(
        images, "standard", prompt_decision_json=prompt_json
    )
    assert flagged is False and torch.equal(out, images)
    with pytest.raises(ValueError, match="not a Decision"):
        _node(pack, "GenguardCheckImage").check(images, "standard", prompt_decision_json="{}")


@pytest.fixture(scope="module")
def coffee() -> Any:
    import skimage.data
    from PIL import Image

    image = Image.fromarray(skimage.data.coffee()).convert("RGB").resize((512, 512))
    return torch.from_numpy(np.asarray(image, dtype=np.float32)[None] / 255.0)


def test_watermark_round_trip(pack: ModuleType, coffee: Any) -> None:
    images = torch.cat([coffee, coffee.flip(2)])  # batch of 2 (second one mirrored)
    (marked,) = _node(pack, "GenguardWatermark").embed(images, "comfy-test", 1234, 2.0)
    assert marked.shape == images.shape and marked.dtype == torch.float32
    assert float(marked.min()) >= 0.0 and float(marked.max()) <= 1.0
    difference = float((marked - images).abs().mean())
    assert 0.0 < difference < 0.02
    detect = _node(pack, "GenguardDetectWatermark")
    found, payload, results_json = detect.detect(marked, 1234)
    assert found is True
    assert payload == f"0x{text_payload('comfy-test'):08x}"
    results = json.loads(results_json)
    assert [r["found"] for r in results] == [True, True]
    assert {r["payload"] for r in results} == {payload}
    found, payload, results_json = detect.detect(marked, 4321)  # another key reads nothing
    assert (found, payload) == (False, "")
    found, _, _ = detect.detect(images, 1234)  # the unmarked originals
    assert found is False


def test_watermark_hex_payload_and_alpha(pack: ModuleType, coffee: Any) -> None:
    rgba = torch.cat([coffee, torch.ones_like(coffee[..., :1])], dim=-1)
    (marked,) = _node(pack, "GenguardWatermark").embed(rgba, "0x0000BEEF", 7, 3.0)
    assert marked.shape[-1] == 3
    found, payload, _ = _node(pack, "GenguardDetectWatermark").detect(marked, 7)
    assert (found, payload) == (True, "0x0000beef")


def test_watermark_too_small_is_a_clear_error(pack: ModuleType) -> None:
    with pytest.raises(RuntimeError, match=r"genguard Watermark: .*256x256"):
        _node(pack, "GenguardWatermark").embed(comfy_images(100), "x", 1, 2.0)


def test_guards_are_cached_per_policy(pack: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def fake_from_policy(policy: str, **_: Any) -> Guard:
        built.append(policy)
        return Guard(load_policy(policy), [FakeDetector()])

    monkeypatch.setattr(Guard, "from_policy", staticmethod(fake_from_policy))
    first = pack.get_guard("strict")
    assert pack.get_guard("strict") is first and built == ["strict"]
    assert pack.get_guard("standard") is pack.GUARDS["standard"]  # the injected one
    assert built == ["strict"]

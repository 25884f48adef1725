"""genguard nodes for ComfyUI: prompt and image checks, invisible watermark, mark detection.

Install: copy or symlink this folder into ``ComfyUI/custom_nodes/`` and ``pip install
genguard`` into the Python that runs ComfyUI (see ``docs/integrations.md``).

ComfyUI imports this folder's ``__init__.py`` and reads :data:`NODE_CLASS_MAPPINGS` and
:data:`NODE_DISPLAY_NAME_MAPPINGS`. genguard, numpy and torch are imported only inside the
node functions, so ComfyUI lists the nodes even where genguard or a model is missing; the
node then fails with a message saying what to install.

Images: ComfyUI's ``IMAGE`` is a float32 tensor ``[B, H, W, C]`` in ``[0, 1]``. ``C == 4``
(RGBA) is composited over white first; every node returns 3-channel RGB images. An image
whose Decision is ``allow`` is returned with its own float pixels (no 8-bit rounding).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

__all__ = [
    "GUARDS",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "GenguardCheckImage",
    "GenguardCheckPrompt",
    "GenguardDetectWatermark",
    "GenguardWatermark",
    "get_guard",
]

#: The built-in policy profiles offered in the nodes' combo box (first is the default).
POLICIES = ["standard", "strict", "adult", "off"]
CATEGORY = "genguard"
#: Key 0 in the watermark nodes means "the operator key": $GENGUARD_WATERMARK_KEY, else the
#: per-install key genguard creates (0600) in its data folder. No key ships with the code.
DEFAULT_KEY = 0
#: Largest key the ComfyUI front end can hold exactly (a JavaScript number).
MAX_KEY = 2**53 - 1

#: One Guard per policy name, built on first use (models load once, then stay loaded).
#: Tests (or a deployment with its own backends) may put a ready Guard here.
GUARDS: dict[str, Any] = {}
_GUARDS_LOCK = threading.Lock()

_INSTALL_HINT = "install it into the Python that runs ComfyUI: python -m pip install genguard"


def _genguard() -> Any:
    """Import genguard or raise a clear error (the node is listed, but cannot run)."""
    try:
        import genguard
    except ImportError as exc:
        raise RuntimeError(
            f"genguard nodes: the genguard package is missing; {_INSTALL_HINT}"
        ) from exc
    return genguard


def get_guard(policy: str) -> Any:
    """The cached :class:`genguard.guard.Guard` of a built-in policy (built once)."""
    if policy not in POLICIES:
        raise ValueError(f"genguard nodes: unknown policy {policy!r}; choose one of {POLICIES}")
    with _GUARDS_LOCK:
        guard = GUARDS.get(policy)
        if guard is None:
            _genguard()
            from genguard.guard import Guard

            try:
                guard = Guard.from_policy(policy)
            except Exception as exc:
                raise RuntimeError(
                    f"genguard nodes: cannot build the {policy!r} guard: {exc}"
                ) from exc
            GUARDS[policy] = guard
    return guard


def _run(what: str, action: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``action``; a genguard or model error becomes one clear RuntimeError."""
    _genguard()
    from genguard.errors import GenguardError

    try:
        return action(*args, **kwargs)
    except (GenguardError, OSError, ImportError) as exc:
        hint = ""
        if isinstance(exc, OSError | ImportError):
            hint = " (a model file or optional package may be missing: see docs/backends.md)"
        raise RuntimeError(f"genguard {what}: {exc}{hint}") from exc


# -- IMAGE tensors <-> RGB arrays --------------------------------------------------------


def _to_float_rgb(images: Any) -> Any:
    """A ComfyUI IMAGE batch as a float32 numpy array ``[B, H, W, 3]`` in [0, 1]."""
    import numpy as np

    array = images.detach().cpu().float().numpy() if hasattr(images, "detach") else images
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:  # a single image without its batch axis
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"genguard nodes: expected an IMAGE tensor [B, H, W, 3 or 4], got {array.shape}"
        )
    array = np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0)
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 4:  # composite over white: what the image looks like on a page
        alpha = array[..., 3:4]
        return array[..., :3] * alpha + (1.0 - alpha)
    return array


def _to_uint8(rgb: Any) -> Any:
    import numpy as np

    return np.ascontiguousarray(np.round(rgb * 255.0).astype(np.uint8))


def _to_tensor(batch: Any) -> Any:
    """``[B, H, W, 3]`` float numpy (or a list of uint8/float images) -> IMAGE tensor."""
    import numpy as np
    import torch

    frames = [
        (frame.astype(np.float32) / 255.0) if frame.dtype == np.uint8 else frame for frame in batch
    ]
    return torch.from_numpy(np.ascontiguousarray(np.stack(frames), dtype=np.float32))


def _payload(text: str) -> int:
    """``0x`` + up to 8 hex digits is that 32-bit value; any other text is hashed."""
    from genguard.provenance.watermark import text_payload

    stripped = text.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]{1,8}", stripped):
        return int(stripped, 16)
    if not stripped:
        raise ValueError("genguard Watermark: the payload text is empty")
    return text_payload(text)


# -- nodes ----------------------------------------------------------------------------


def _policy_input() -> tuple[list[str], dict[str, Any]]:
    return (list(POLICIES), {"default": POLICIES[0]})


class GenguardCheckPrompt:
    """Check a prompt (with its negative prompt) against a policy before generating."""

    DESCRIPTION = "genguard: check a prompt against a policy (allow / review / block)."
    CATEGORY = CATEGORY
    FUNCTION = "check"
    RETURN_TYPES = ("BOOLEAN", "STRING", "STRING")
    RETURN_NAMES = ("allowed", "action", "decision_json")
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:  # the name ComfyUI calls
        return {
            "required": {
                "prompt": ("STRING", {"multiline": True, "default": ""}),
                "policy": _policy_input(),
            },
            "optional": {
                "negative_prompt": ("STRING", {"multiline": True, "default": ""}),
            },
        }

    def check(self, prompt: str, policy: str, negative_prompt: str = "") -> tuple[bool, str, str]:
        guard = get_guard(policy)
        decision = _run(
            "Check Prompt", guard.check_prompt, prompt, negative_prompt=negative_prompt or None
        )
        return (decision.action.value == "allow", decision.action.value, decision.to_json())


class GenguardCheckImage:
    """Check every image of a batch and publish it: original, censored or a placeholder."""

    DESCRIPTION = (
        "genguard: check each image of the batch; flagged images come back censored or as a "
        "grey placeholder of the same size."
    )
    CATEGORY = CATEGORY
    FUNCTION = "check"
    RETURN_TYPES = ("IMAGE", "BOOLEAN", "STRING")
    RETURN_NAMES = ("images", "flagged", "decisions_json")
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:  # the name ComfyUI calls
        return {
            "required": {"images": ("IMAGE",), "policy": _policy_input()},
            "optional": {
                # The Check Prompt node's decision_json: hard rules combine prompt and image
                # (nudity in the image + a minor in the prompt blocks, even on "adult").
                "prompt_decision_json": ("STRING", {"forceInput": True}),
            },
        }

    def check(
        self, images: Any, policy: str, prompt_decision_json: str = ""
    ) -> tuple[Any, bool, str]:
        guard = get_guard(policy)
        _genguard()
        from genguard.decision import Decision

        context = None
        if prompt_decision_json and prompt_decision_json.strip():
            try:
                context = Decision.from_dict(json.loads(prompt_decision_json))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"genguard Check Image: prompt_decision_json is not a Decision: {exc}"
                ) from exc
        floats = _to_float_rgb(images)
        rgbs = [_to_uint8(frame) for frame in floats]
        decisions = _run("Check Image", guard.check_images, rgbs, context=context)
        out = []
        for original, rgb, decision in zip(floats, rgbs, decisions, strict=True):
            published = _run("Check Image", _publish, guard, rgb, decision)
            keep = decision.action.value == "allow" and not published.watermarked
            out.append(original if keep else published.pixels)
        flagged = any(d.action.value != "allow" for d in decisions)
        as_json = json.dumps([d.to_dict() for d in decisions], ensure_ascii=False)
        return (_to_tensor(out), flagged, as_json)


def _publish(guard: Any, rgb: Any, decision: Any) -> Any:
    return guard.publish(guard.load_full(rgb), decision)


class GenguardWatermark:
    """Embed genguard's invisible, keyed 32-bit watermark in every image of a batch."""

    DESCRIPTION = (
        "genguard: embed an invisible watermark. Payload: 0x + up to 8 hex digits, or any "
        "text (its SHA-256's first 4 bytes). Key 0: the operator key (GENGUARD_WATERMARK_KEY "
        "or genguard's per-install key file). Images must be at least 256x256."
    )
    CATEGORY = CATEGORY
    FUNCTION = "embed"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:  # the name ComfyUI calls
        return {
            "required": {
                "images": ("IMAGE",),
                "payload": ("STRING", {"default": "generated"}),
                "key": ("INT", {"default": DEFAULT_KEY, "min": 0, "max": MAX_KEY}),
                "strength": ("FLOAT", {"default": 2.3, "min": 0.1, "max": 20.0, "step": 0.1}),
            }
        }

    def embed(self, images: Any, payload: str, key: int, strength: float) -> tuple[Any]:
        _genguard()
        from genguard.provenance.watermark import embed_watermark

        value = _payload(payload)
        marked = [
            _run(
                "Watermark",
                embed_watermark,
                _to_uint8(rgb),
                value,
                key=key or None,
                strength=strength,
            )
            for rgb in _to_float_rgb(images)
        ]
        return (_to_tensor(marked),)


class GenguardDetectWatermark:
    """Look for a genguard watermark made with ``key`` in every image of a batch."""

    DESCRIPTION = (
        "genguard: detect the invisible watermark. found: any image carries it; payload: "
        "the first found payload as 0x-hex (empty if none); JSON: one result per image."
    )
    CATEGORY = CATEGORY
    FUNCTION = "detect"
    RETURN_TYPES = ("BOOLEAN", "STRING", "STRING")
    RETURN_NAMES = ("found", "payload", "results_json")
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:  # the name ComfyUI calls
        return {
            "required": {
                "images": ("IMAGE",),
                "key": ("INT", {"default": DEFAULT_KEY, "min": 0, "max": MAX_KEY}),
            }
        }

    def detect(self, images: Any, key: int) -> tuple[bool, str, str]:
        _genguard()
        from genguard.provenance.watermark import detect_watermark

        results = [
            _run("Detect Watermark", detect_watermark, _to_uint8(rgb), key=key or None)
            for rgb in _to_float_rgb(images)
        ]
        found = [r for r in results if r.found]
        payload = (found[0].payload_hex or "") if found else ""
        as_json = json.dumps([r.to_dict() for r in results])
        return (bool(found), payload, as_json)


NODE_CLASS_MAPPINGS = {
    "GenguardCheckPrompt": GenguardCheckPrompt,
    "GenguardCheckImage": GenguardCheckImage,
    "GenguardWatermark": GenguardWatermark,
    "GenguardDetectWatermark": GenguardDetectWatermark,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "GenguardCheckPrompt": "genguard Check Prompt",
    "GenguardCheckImage": "genguard Check Image",
    "GenguardWatermark": "genguard Watermark",
    "GenguardDetectWatermark": "genguard Detect Watermark",
}

"""genguard inside Hugging Face diffusers pipelines, where the images are made.

Two ways in (see ``docs/integrations.md``):

* :class:`GuardSafetyChecker`: a drop-in ``safety_checker`` for Stable Diffusion 1.x/2.x
  pipelines. Policy-driven, no CLIP weights; flagged images come back censored (or as a
  same-size placeholder) instead of black, and each image's Decision is kept.
* :func:`guard_pipeline`: wraps any text-to-image pipeline (SDXL has no checker slot):
  the prompt is checked before any denoising step, every output image is checked with the
  prompt's Decision as context and published through :meth:`Guard.publish`, and the
  Decisions are attached to the output (``output.genguard_decisions``).

torch and diffusers are imported lazily, inside functions: importing this module needs
neither.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from genguard.actions.censor import placeholder
from genguard.decision import Action, Decision
from genguard.errors import ConfigError, ContentError, GenguardError
from genguard.guard import Context, Guard
from genguard.policy import Policy

__all__ = [
    "GuardFeatureExtractor",
    "GuardSafetyChecker",
    "GuardedOutput",
    "PromptBlocked",
    "guard_pipeline",
    "install_safety_checker",
]

GuardLike = Guard | str | Path | Policy


class PromptBlocked(GenguardError):
    """A prompt was held or blocked by the policy: nothing was generated.

    ``decisions`` holds one prompt Decision per prompt of the call.
    """

    code = "prompt_blocked"

    def __init__(self, decisions: Sequence[Decision]) -> None:
        worst = max(decisions, key=lambda d: d.action.severity)
        reasons = "; ".join(worst.reasons) or worst.action.value
        super().__init__(f"prompt {worst.action.value}ed by policy ({reasons}): nothing generated")
        self.decisions = list(decisions)


def _as_guard(guard: GuardLike | None, policy: str | Path | Policy | None = None) -> Guard:
    if guard is not None and policy is not None:
        raise ConfigError("pass a guard or a policy, not both")
    if isinstance(guard, Guard):
        return guard
    return Guard.from_policy(guard if guard is not None else (policy or "standard"))


# -- pixels in diffusers' formats <-> 8-bit RGB ------------------------------------------


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _float_to_uint8(array: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] as uint8. NaN (an fp16 VAE overflow) is judged as black and
    infinities as the nearest end: what diffusers' own ``numpy_to_pil`` ends up showing,
    made explicit so the result does not depend on the platform's NaN cast."""
    finite = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)
    return np.asarray(np.clip(finite, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _one_to_uint8(image: Any, low: float) -> np.ndarray:
    """One image (PIL, HWC array, or CHW tensor in ``[low, 1]``) as HxWx3 uint8."""
    if _is_tensor(image):
        chw = image.detach().float().cpu().numpy()
        return _float_to_uint8((np.transpose(chw, (1, 2, 0)) - low) / (1.0 - low))
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            return image
        return _float_to_uint8(image.astype(np.float32))
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise ContentError(f"cannot read an image of type {type(image).__name__}", code="wrong_type")


def _to_uint8(images: Any, low: float) -> list[np.ndarray]:
    """A batch (NHWC array, NCHW tensor, or list) as HxWx3 uint8 arrays.

    Tensors hold values in ``[low, 1]``: -1 for VAE output (what diffusers hands its
    safety checker), 0 for a pipeline's ``output_type="pt"``. Arrays hold ``[0, 1]``.
    """
    return [_one_to_uint8(image, low) for image in images]


def _from_uint8(template: Any, pixels: np.ndarray, low: float) -> Any:
    """``pixels`` (HxWx3 uint8) in the format of ``template`` (one image of the batch)."""
    if _is_tensor(template):
        import torch

        scaled = pixels.astype(np.float32) / 255.0 * (1.0 - low) + low
        chw = torch.from_numpy(np.ascontiguousarray(np.transpose(scaled, (2, 0, 1))))
        return chw.to(device=template.device, dtype=template.dtype)
    if isinstance(template, np.ndarray):
        if template.dtype == np.uint8:
            return pixels.copy()
        return (pixels.astype(np.float32) / 255.0).astype(template.dtype)
    from PIL import Image

    return Image.fromarray(pixels)


def _copy_batch(images: Any) -> Any:
    if _is_tensor(images):
        return images.clone()
    if isinstance(images, np.ndarray):
        return images.copy()
    return list(images)


# -- (a) the drop-in safety checker ------------------------------------------------------


class _Features:
    """What :class:`GuardFeatureExtractor` returns: ``.to(device)`` and ``.pixel_values``."""

    def __init__(self, count: int) -> None:
        import torch

        self.pixel_values = torch.zeros((count, 3, 1, 1))

    def to(self, *args: Any, **kwargs: Any) -> _Features:
        self.pixel_values = self.pixel_values.to(*args, **kwargs)
        return self


class GuardFeatureExtractor:
    """A trivial ``feature_extractor`` for pipelines that have none: genguard reads the
    images themselves, so the CLIP input diffusers builds for its checker is not needed."""

    def __call__(self, images: Any, return_tensors: str | None = "pt", **_: Any) -> _Features:
        count = 1 if not isinstance(images, list | tuple) else len(images)
        return _Features(count)


class GuardSafetyChecker:
    """A policy-driven drop-in for ``StableDiffusionSafetyChecker``.

    Called as diffusers calls its checker, ``checker(images=..., clip_input=...)``, it
    returns ``(images, has_nsfw_concept)`` with ``images`` of the same type and shape:

    * a float NHWC numpy array in ``[0, 1]`` (older pipelines), or
    * an NCHW tensor of VAE output in ``[-1, 1]`` (current pipelines). Flagged images are
      returned in ``[0, 1]``, because diffusers does not denormalise an image whose
      ``has_nsfw_concept`` is True (this is how its own checker's black images stay black).

    ``has_nsfw_concept[i]`` is True when image ``i``'s Decision is not ``allow``; such an
    image is replaced by :meth:`Guard.publish`'s pixels: censored regions, or a neutral
    placeholder for ``block``/``review``. Allowed images are unchanged (watermarked when the
    Guard has a watermark). ``clip_input`` is ignored: no CLIP weights are needed.

    ``last_decisions`` holds the Decisions of the latest call; ``context`` (the prompt's
    Decision, or scores) is passed to every image check when set.
    """

    def __init__(self, guard: GuardLike | None = None, *, context: Context = None) -> None:
        self.guard = _as_guard(guard)
        self.context: Context = context
        self.last_decisions: list[Decision] = []

    # diffusers treats non-nn.Module components as plain objects (``pipe.to``, offload and
    # ``pipe.device`` skip them); these keep code that moves the checker itself working.
    def to(self, *args: Any, **kwargs: Any) -> GuardSafetyChecker:
        return self

    def __call__(self, images: Any, clip_input: Any = None, **_: Any) -> tuple[Any, list[bool]]:
        low = -1.0 if _is_tensor(images) or (len(images) and _is_tensor(images[0])) else 0.0
        pixels = _to_uint8(images, low)
        guard = self.guard
        loaded = [guard.load_full(array) for array in pixels]
        decisions = guard.check_loaded(loaded, contexts=[self.context] * len(loaded))
        out = _copy_batch(images)
        flags = []
        for index, (image, decision) in enumerate(zip(loaded, decisions, strict=True)):
            published = guard.publish(image, decision)
            flagged = decision.action is not Action.ALLOW
            flags.append(flagged)
            if flagged:  # not denormalised by diffusers: [0, 1]
                out[index] = _from_uint8(out[index], published.pixels, 0.0)
            elif published.watermarked:
                out[index] = _from_uint8(out[index], published.pixels, low)
        self.last_decisions = decisions
        return out, flags

    forward = __call__


def install_safety_checker(
    pipe: Any, guard: GuardLike | None = None, *, context: Context = None
) -> GuardSafetyChecker:
    """Put a :class:`GuardSafetyChecker` into ``pipe`` (and a trivial feature extractor
    when the pipeline has none, since diffusers calls it before the checker)."""
    if not hasattr(pipe, "safety_checker"):
        raise ConfigError(
            f"{type(pipe).__name__} has no safety_checker slot: use guard_pipeline() instead"
        )
    checker = GuardSafetyChecker(guard, context=context)
    pipe.safety_checker = checker
    if getattr(pipe, "feature_extractor", None) is None:
        pipe.feature_extractor = GuardFeatureExtractor()
    return checker


# -- (b) any text-to-image pipeline -----------------------------------------------------


@dataclass
class GuardedOutput:
    """The output of a guarded call whose prompt was blocked (``on_blocked_prompt=
    "placeholder"``): placeholders, no image generated."""

    images: Any
    nsfw_content_detected: list[bool]
    genguard_decisions: list[Decision] = field(default_factory=list)
    genguard_prompt_decisions: list[Decision] = field(default_factory=list)


@dataclass
class _GuardState:
    guard: Guard
    on_blocked_prompt: Literal["raise", "placeholder"]
    original_call: Callable[..., Any]


#: (text, negative text) argument pairs checked before generating (SDXL, SD3 add more).
_PROMPT_FIELDS = (
    ("prompt", "negative_prompt"),
    ("prompt_2", "negative_prompt_2"),
    ("prompt_3", "negative_prompt_3"),
)
_GUARDED_CLASSES: dict[type, type] = {}


def guard_pipeline(
    pipe: Any,
    *,
    guard: Guard | None = None,
    policy: str | Path | Policy | None = None,
    on_blocked_prompt: Literal["raise", "placeholder"] = "raise",
) -> Any:
    """Guard every call of a text-to-image ``pipe`` (returned, changed in place).

    Before any denoising step the prompt(s) and negative prompt(s) (``prompt_2``/``_3``
    too) are checked; a prompt the policy holds or blocks generates nothing: with
    ``on_blocked_prompt="raise"`` the call raises :class:`PromptBlocked`, with
    ``"placeholder"`` it returns a :class:`GuardedOutput` of same-size placeholders.
    Otherwise every output image is checked with its prompt's Decision as context and
    replaced by :meth:`Guard.publish`'s pixels (censored, placeholder, or the original,
    watermarked when the Guard has a watermark). The output gets ``genguard_decisions``
    (one per image) and ``genguard_prompt_decisions``; ``nsfw_content_detected``, when
    the output has it, is also True for every image genguard did not allow. With
    ``return_dict=False`` the tuple's images are replaced and the Decisions are on
    ``pipe.genguard_last_decisions``.
    """
    if on_blocked_prompt not in ("raise", "placeholder"):
        raise ConfigError("on_blocked_prompt must be 'raise' or 'placeholder'")
    cls = type(pipe)
    base = cls.__bases__[0] if cls in _GUARDED_CLASSES.values() else cls
    if "prompt" not in inspect.signature(base.__call__).parameters:
        raise ConfigError(f"{base.__name__}.__call__ takes no prompt: not a text-to-image pipeline")
    if base not in _GUARDED_CLASSES:
        _GUARDED_CLASSES[base] = type(
            base.__name__,
            (base,),
            {"__call__": _guarded_call, "__module__": base.__module__, "__doc__": base.__doc__},
        )
    state = _GuardState(_as_guard(guard, policy), on_blocked_prompt, base.__call__)
    object.__setattr__(pipe, "_genguard", state)
    object.__setattr__(pipe, "genguard_last_decisions", [])
    pipe.__class__ = _GUARDED_CLASSES[base]
    return pipe


def _as_list(value: Any, count: int) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    return [value] * count


def _combine(decisions: Sequence[Decision]) -> Decision:
    """One prompt Decision from several texts (prompt, prompt_2...): the worst action,
    every category at its maximum, all the evidence."""
    if len(decisions) == 1:
        return decisions[0]
    worst = max(decisions, key=lambda d: d.action.severity)
    categories: dict[str, float] = {}
    for decision in decisions:
        for name, value in decision.categories.items():
            categories[name] = max(categories.get(name, 0.0), value)
    return replace(
        worst,
        categories=categories,
        matches=[m for d in decisions for m in d.matches],
        reasons=list(dict.fromkeys(r for d in decisions for r in d.reasons)),
        notes=list(dict.fromkeys(n for d in decisions for n in d.notes)),
    )


def _check_prompts(guard: Guard, arguments: dict[str, Any]) -> list[Decision]:
    prompt = arguments.get("prompt")
    if prompt is None:
        raise ContentError(
            "a guarded pipeline needs the prompt text (prompt_embeds cannot be checked)",
            code="wrong_type",
        )
    count = len(prompt) if isinstance(prompt, list | tuple) else 1
    per_prompt: list[list[Decision]] = [[] for _ in range(count)]
    for text_field, negative_field in _PROMPT_FIELDS:
        texts, negatives = arguments.get(text_field), arguments.get(negative_field)
        if texts is None and negatives is None:
            continue
        if texts is None:
            # SDXL/SD3 encode prompt_2 = prompt when it is absent, so negative_prompt_2
            # alone still steers generation and is checked against the main prompt.
            texts = prompt
        results = guard.check_prompts(
            _as_list(texts, count), negative_prompts=_as_list(negatives, count)
        )
        for index, result in enumerate(results):
            if isinstance(result, ContentError):
                raise result
            per_prompt[index].append(result)
    return [_combine(decisions) for decisions in per_prompt]


def _default_size(pipe: Any, arguments: dict[str, Any]) -> tuple[int, int]:
    scale = getattr(pipe, "vae_scale_factor", 8)
    side: Any = getattr(pipe, "default_sample_size", None)
    if side is None:
        unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        side = getattr(getattr(unet, "config", None), "sample_size", 64)
    side = side[0] if isinstance(side, list | tuple) else side
    default = int(side) * int(scale)
    return int(arguments.get("width") or default), int(arguments.get("height") or default)


def _blocked_output(
    pipe: Any, arguments: dict[str, Any], prompts: list[Decision], per_prompt: int
) -> Any:
    width, height = _default_size(pipe, arguments)
    output_type = arguments.get("output_type", "pil")
    decisions = [d for d in prompts for _ in range(per_prompt)]
    pixels = [
        placeholder(
            width, height, "held for review" if d.action is Action.REVIEW else "blocked by policy"
        )
        for d in decisions
    ]
    images: Any
    if output_type == "np":
        images = np.stack([p.astype(np.float32) / 255.0 for p in pixels])
    elif output_type == "pt":
        import torch

        images = torch.stack(
            [
                torch.from_numpy(np.transpose(p, (2, 0, 1)).astype(np.float32) / 255.0)
                for p in pixels
            ]
        )
    else:
        from PIL import Image

        images = [Image.fromarray(p) for p in pixels]
    flags = [True] * len(decisions)
    object.__setattr__(pipe, "genguard_last_decisions", decisions)
    if not arguments.get("return_dict", True):
        return (images, flags)
    return GuardedOutput(images, flags, decisions, list(prompts))


def _guarded_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    state: _GuardState = self._genguard
    signature = inspect.signature(state.original_call)
    bound = signature.bind(self, *args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.update(arguments.pop("kwargs", None) or {})
    output_type = arguments.get("output_type", "pil")
    if output_type == "latent":
        raise ConfigError("a guarded pipeline cannot return latents: images must be checked")
    per_prompt = int(arguments.get("num_images_per_prompt") or 1)
    guard = state.guard

    prompts = _check_prompts(guard, arguments)  # before any denoising step
    if any(d.action.severity >= Action.REVIEW.severity for d in prompts):
        if state.on_blocked_prompt == "raise":
            object.__setattr__(self, "genguard_last_decisions", [])
            raise PromptBlocked(prompts)
        return _blocked_output(self, arguments, prompts, per_prompt)

    output = state.original_call(self, *args, **kwargs)
    return_dict = bool(arguments.get("return_dict", True))
    images = output.images if return_dict else output[0]
    low = 0.0  # postprocessed output: tensors in [0, 1]
    pixels = _to_uint8(images, low)
    if len(pixels) == len(prompts) * per_prompt:
        contexts: list[Context] = [prompts[i // per_prompt] for i in range(len(pixels))]
    else:  # an unusual layout: every image gets the most severe prompt's Decision
        contexts = [max(prompts, key=lambda d: d.action.severity)] * len(pixels)
    loaded = [guard.load_full(array) for array in pixels]
    decisions = guard.check_loaded(loaded, contexts=contexts)
    published_images = _copy_batch(images)
    flags = []
    for index, (image, decision) in enumerate(zip(loaded, decisions, strict=True)):
        published = guard.publish(image, decision)
        flags.append(decision.action is not Action.ALLOW)
        if decision.action is not Action.ALLOW or published.watermarked:
            published_images[index] = _from_uint8(published_images[index], published.pixels, low)
    object.__setattr__(self, "genguard_last_decisions", decisions)

    if not return_dict:
        rest = list(output[1:])
        if rest and (rest[0] is None or _is_flag_list(rest[0], len(flags))):
            rest[0] = _merge_flags(rest[0], flags)
        return (published_images, *rest)
    output.images = published_images
    if hasattr(output, "nsfw_content_detected"):
        output.nsfw_content_detected = _merge_flags(output.nsfw_content_detected, flags)
    output.genguard_decisions = decisions
    output.genguard_prompt_decisions = prompts
    return output


def _is_flag_list(value: Any, count: int) -> bool:
    return (
        isinstance(value, list) and len(value) == count and all(isinstance(v, bool) for v in value)
    )


def _merge_flags(existing: list[bool] | None, ours: list[bool]) -> list[bool]:
    if existing is None or len(existing) != len(ours):
        return ours
    return [bool(a) or b for a, b in zip(existing, ours, strict=True)]

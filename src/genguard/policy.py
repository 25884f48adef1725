"""Policies: thresholds and actions per category, validated at the edge.

A policy is a TOML file validated into typed models; the core never sees raw dicts. The
built-in profiles live in ``genguard/policies/*.toml``; a user file may ``extends`` one
and override only what differs. Every policy has a ``policy_id`` (name + content hash of
the *effective* policy), recorded in every Decision, so an audit log says exactly which
rules produced a verdict.

Hard rules are not part of any profile: they are code (``HARD_RULES``) and apply under
every policy, ``off`` included. A policy may add hard rules, never remove one.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genguard import taxonomy
from genguard.calibration import calibrate
from genguard.decision import Action
from genguard.errors import PolicyError

BUILTIN_PROFILES = ("strict", "standard", "adult", "off")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryRule(_Strict):
    """When a category's score reaches ``threshold``, apply ``action``."""

    threshold: float = Field(ge=0.0, le=1.0)
    action: Action


class CascadePolicy(_Strict):
    """Cheap backends first; later stages only for frames the earlier ones leave uncertain.

    After each stage, a frame whose fused scores are all below ``safe_below`` (for every
    category the policy acts on) is settled and skips the remaining stages. Backends in no
    stage run in the last one. Empty ``stages``: every backend on every frame.
    """

    stages: list[list[str]] = Field(default_factory=list)
    safe_below: float = Field(default=0.05, ge=0.0, le=1.0)


class ImagePolicy(_Strict):
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    cascade: CascadePolicy = Field(default_factory=CascadePolicy)
    censor_style: Literal["pixelate", "blur", "box"] = "pixelate"
    #: What a ``censor`` verdict becomes when there is no region to censor (a global score
    #: such as OpenNSFW's fired): the conservative default is ``block``.
    censor_fallback: Action = Action.BLOCK
    #: Regions below this score are not censored (they still appear as evidence).
    region_min_score: float = Field(default=0.3, ge=0.0, le=1.0)
    max_pixels: int = Field(default=64_000_000, gt=0)
    max_frames: int = Field(default=16, ge=1, le=1000)
    #: Per-category calibration maps written by ``genguard calibrate``: (score, probability)
    #: anchors, interpolated linearly, applied to fused scores before thresholds.
    calibration: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: dict[str, CategoryRule]) -> dict[str, CategoryRule]:
        return _check_categories(value, "image")

    @field_validator("calibration")
    @classmethod
    def _monotone_curves(
        cls, value: dict[str, list[tuple[float, float]]]
    ) -> dict[str, list[tuple[float, float]]]:
        for name, curve in value.items():
            xs = [x for x, _ in curve]
            ys = [y for _, y in curve]
            if len(curve) < 2 or xs != sorted(set(xs)) or ys != sorted(ys):
                raise ValueError(
                    f"calibration curve {name!r} needs >= 2 points with strictly increasing "
                    "scores and non-decreasing probabilities"
                )
            if min(xs + ys) < 0 or max(xs + ys) > 1:
                raise ValueError(f"calibration curve {name!r} must stay within [0, 1]")
        return _check_categories(value, "image")

    def acting_categories(self, hard_rules: Sequence[HardRule] = ()) -> set[str]:
        """Categories whose score can change a verdict: rules that act, and the image
        signals of the built-in hard rules and of ``hard_rules`` (a policy's own)."""
        acting = {n for n, r in self.categories.items() if r.action is not Action.ALLOW}
        for rule in (*HARD_RULES, *hard_rules):
            for group in rule.all_of:
                for signal in group:
                    modality, _, name = signal.rpartition(":")
                    if modality in ("", "image"):
                        acting.add(name)
        return acting

    def calibrated(self, scores: dict[str, float]) -> dict[str, float]:
        """Apply the calibration maps (identity for categories without one)."""
        if not self.calibration:
            return scores
        result = dict(scores)
        for name, curve in self.calibration.items():
            if name in result:
                result[name] = calibrate(result[name], curve)
        return result


class PromptPolicy(_Strict):
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    semantic: bool = True
    semantic_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    max_chars: int = Field(default=4000, gt=0, le=1_000_000)

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: dict[str, CategoryRule]) -> dict[str, CategoryRule]:
        return _check_categories(value, "prompt")


class HardRule(_Strict):
    """Block when one signal of *every* group reaches its threshold.

    ``all_of = [["sexual", "suggestive"], ["minor"]]`` reads: (sexual or suggestive) and
    minor. A signal is a category name, looked up across modalities (a prompt's ``minor``
    and an image's ``nudity`` combine when an image is checked with its prompt as
    context), or ``modality:name`` for one modality only (``prompt:suggestive``).

    Thresholds are per signal: ``thresholds`` maps a signal (``name`` or
    ``modality:name``, the more specific key wins) to its threshold, and ``threshold`` is
    the default. Why per signal: one word of soft evidence ("sexy", weight 0.4) next to a
    child is a sexualisation, so the prompt's sexual/suggestive evidence must count from
    0.3, while an image's ``suggestive`` score (a covered swimsuit) must not.
    """

    name: str
    all_of: list[list[str]] = Field(min_length=1)
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    thresholds: dict[str, float] = Field(default_factory=dict)
    description: str = ""

    @field_validator("all_of")
    @classmethod
    def _known_signals(cls, value: list[list[str]]) -> list[list[str]]:
        for group in value:
            if not group:
                raise ValueError("a hard rule group needs at least one signal")
            for signal in group:
                _check_signal(signal)
        return value

    @field_validator("thresholds")
    @classmethod
    def _valid_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for signal, threshold in value.items():
            _check_signal(signal)
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold of {signal!r} must be within [0, 1]")
        return value

    def threshold_for(self, modality: str, name: str) -> float:
        """The threshold of ``name`` seen in ``modality`` (specific key, bare key, default)."""
        specific = self.thresholds.get(f"{modality}:{name}")
        if specific is not None:
            return specific
        return self.thresholds.get(name, self.threshold)

    def fired_by(self, signals: dict[tuple[str, str], float]) -> list[str] | None:
        """The signals (one per group) that make this rule fire, or None.

        ``signals`` maps (modality, category) to a score.
        """
        evidence = []
        for group in self.all_of:
            hit = None
            for signal in group:
                modality, _, name = signal.rpartition(":")
                for (mod, cat), score in signals.items():
                    if cat != name or (modality and mod != modality):
                        continue
                    if score >= self.threshold_for(mod, cat) and (hit is None or score > hit[1]):
                        hit = (f"{mod} {cat}", score)
            if hit is None:
                return None
            evidence.append(f"{hit[0]} {hit[1]:.2f}")
        return evidence


def _check_signal(signal: str) -> None:
    modality, _, name = signal.rpartition(":")
    if modality and modality not in ("image", "prompt"):
        raise ValueError(f"signal {signal!r}: modality must be 'image' or 'prompt'")
    modalities = [modality] if modality else ["image", "prompt"]
    if not any(taxonomy.is_known(name, m) for m in modalities):  # type: ignore[arg-type]
        raise ValueError(f"signal {signal!r} names no known category")


class Policy(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    image: ImagePolicy = Field(default_factory=ImagePolicy)
    prompt: PromptPolicy = Field(default_factory=PromptPolicy)
    hard_rules: list[HardRule] = Field(default_factory=list)
    #: What a fitted policy was fitted on (data set hash, target, metrics): provenance only.
    fit: dict[str, Any] = Field(default_factory=dict)

    @cached_property
    def policy_id(self) -> str:
        """``name@hash``: the hash covers the effective policy, built-in hard rules included.

        Cached: every Decision records it, and hashing the policy each time cost ~25 us,
        more than half of a lexicon-only prompt check.
        """
        canonical = json.dumps(
            {"policy": self.model_dump(mode="json"), "hard": [r.model_dump() for r in HARD_RULES]},
            sort_keys=True,
            separators=(",", ":"),
        )
        return f"{self.name}@{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Policy:
        """A copy whose ``policy_id`` is computed afresh (the cached one may be stale)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("policy_id", None)
        return copy

    def all_hard_rules(self) -> list[HardRule]:
        return [*HARD_RULES, *self.hard_rules]

    def acting_image_categories(self) -> set[str]:
        """Image categories that can change a verdict, this policy's own hard rules included."""
        return self.image.acting_categories(self.hard_rules)

    def to_toml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


#: Any sexual evidence, from a prompt or an image: explicit, nudity, or soft sexualisation.
SEXUAL_SIGNALS = ["sexual", "sexual_explicit", "nudity", "suggestive"]
#: Per-signal thresholds shared by both hard rules. A prompt's sexual or suggestive
#: evidence counts from 0.3 (any single lexicon term that sexualises: "sexy" 0.5,
#: "seductive" 0.5, "lingerie" 0.5; swimwear alone is 0.2 and does not count). Image
#: detectors count at their usual 0.5, except an image's ``suggestive`` (covered
#: swimwear, a bare belly), which only counts when strong.
_SEXUAL_THRESHOLDS = {
    "prompt:sexual": 0.3,
    "prompt:suggestive": 0.3,
    "image:suggestive": 0.8,
}

#: Rules no profile can switch off: sexual content involving minors, and sexual content
#: involving a real, protected person (non-consensual deepfakes).
HARD_RULES: tuple[HardRule, ...] = (
    HardRule(
        name="sexual_minor",
        all_of=[SEXUAL_SIGNALS, ["minor"]],
        threshold=0.5,
        thresholds=_SEXUAL_THRESHOLDS,
        description="sexual or sexualised content involving a minor is blocked under every policy",
    ),
    HardRule(
        name="sexual_real_person",
        all_of=[SEXUAL_SIGNALS, ["real_person"]],
        threshold=0.5,
        thresholds=_SEXUAL_THRESHOLDS,
        description=(
            "sexual or sexualised content involving a real, protected person is blocked "
            "under every policy"
        ),
    ),
)


def _check_categories(value: dict[str, Any], modality: taxonomy.Modality) -> dict:
    unknown = [name for name in value if not taxonomy.is_known(name, modality)]
    if unknown:
        known = ", ".join(c.name for c in taxonomy.categories(modality))
        raise ValueError(f"unknown {modality} categories {unknown}; known: {known}")
    return value


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{origin}: not valid TOML: {exc}") from exc


def _builtin_text(name: str) -> str:
    return resources.files("genguard.policies").joinpath(f"{name}.toml").read_text("utf-8")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve(data: dict[str, Any], origin: str, depth: int = 0) -> dict[str, Any]:
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if depth > 8:
        raise PolicyError(f"{origin}: 'extends' chain is longer than 8 (a cycle?)")
    if parent not in BUILTIN_PROFILES:
        raise PolicyError(
            f"{origin}: extends {parent!r}, but only built-in profiles can be extended: "
            f"{', '.join(BUILTIN_PROFILES)}"
        )
    base = _resolve(_read_toml(_builtin_text(parent), parent), parent, depth + 1)
    base.pop("name", None)
    return _merge(base, data)


def _format_validation(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return f"{origin}: invalid policy: " + "; ".join(lines)


def parse_policy(text: str, origin: str = "<policy>") -> Policy:
    """Validate TOML policy text into a :class:`Policy` (raises :class:`PolicyError`)."""
    data = _resolve(_read_toml(text, origin), origin)
    data.setdefault("name", Path(origin).stem if origin.endswith(".toml") else origin)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_format_validation(exc, origin)) from exc


def load_policy(name_or_path: str | Path | Policy) -> Policy:
    """Load a built-in profile by name or a TOML file by path."""
    if isinstance(name_or_path, Policy):
        return name_or_path
    text = str(name_or_path)
    if text in BUILTIN_PROFILES:
        return parse_policy(_builtin_text(text), text)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        try:
            content = path.read_text("utf-8")
        except FileNotFoundError as exc:
            raise PolicyError(f"policy file not found: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
        return parse_policy(content, str(path))
    raise PolicyError(
        f"unknown policy {text!r}: use a built-in profile ({', '.join(BUILTIN_PROFILES)}) "
        "or the path of a .toml file"
    )


@dataclass
class Verdict:
    """The policy's conclusion on a set of category scores."""

    action: Action
    reasons: list[str]
    hard_rule: str | None
    censor_categories: set[str]


def evaluate(
    policy: Policy,
    modality: taxonomy.Modality,
    scores: dict[str, float],
    context: dict[str, float] | None = None,
    *,
    context_modality: taxonomy.Modality = "prompt",
) -> Verdict:
    """Apply thresholds, actions and hard rules to category scores.

    ``context`` carries scores from related content (by default the prompt an image was
    generated from, ``context_modality``) that take part in hard rules but not in
    thresholds.
    """
    rules = policy.image.categories if modality == "image" else policy.prompt.categories
    action = Action.ALLOW
    reasons: list[str] = []
    censor: set[str] = set()
    for name, rule in rules.items():
        score = scores.get(name, 0.0)
        if score >= rule.threshold:
            reasons.append(
                f"{name} {score:.2f} >= {rule.threshold:.2f} in policy {policy.name} "
                f"-> {rule.action.value}"
            )
            action = Action.worst(action, rule.action)
            if rule.action is Action.CENSOR:
                censor.add(name)
    signals: dict[tuple[str, str], float] = {(modality, k): v for k, v in scores.items()}
    for key, value in (context or {}).items():
        signal = (context_modality, key)
        signals[signal] = max(value, signals.get(signal, 0.0))
    hard = first_hard_rule(policy, signals)
    if hard is not None:
        fired, evidence = hard
        action = Action.BLOCK
        reasons.insert(
            0, f"hard rule {fired.name}: {fired.description} ({', '.join(evidence)}) -> block"
        )
    return Verdict(action, reasons, hard[0].name if hard else None, censor)


def first_hard_rule(
    policy: Policy, signals: dict[tuple[str, str], float]
) -> tuple[HardRule, list[str]] | None:
    """The first hard rule that fires on ``(modality, category) -> score``, with evidence."""
    for rule in policy.all_hard_rules():
        evidence = rule.fired_by(signals)
        if evidence is not None:
            return rule, evidence
    return None

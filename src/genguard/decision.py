"""The Decision: what genguard concluded about one piece of content, and why.

A Decision is plain data that crosses every boundary (library, CLI, JSONL, HTTP, audit
log), so it is a dataclass with a versioned JSON form. ``SCHEMA`` names the version; the
JSON Schema lives in ``docs/decision.schema.json`` and a test keeps the two in step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA = "genguard.decision/1"


class Action(StrEnum):
    """What to do with the content, in increasing order of severity."""

    ALLOW = "allow"
    CENSOR = "censor"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def worst(cls, *actions: Action) -> Action:
        """The most severe of ``actions`` (``allow`` when none)."""
        return max(actions, key=lambda a: a.severity, default=cls.ALLOW)


_SEVERITY = {Action.ALLOW: 0, Action.CENSOR: 1, Action.REVIEW: 2, Action.BLOCK: 3}


@dataclass
class Region:
    """Evidence located in an image: a box ``(x, y, w, h)`` in pixels of the original image."""

    box: tuple[int, int, int, int]
    label: str
    category: str
    score: float
    backend: str
    frame: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["box"] = list(self.box)
        data["score"] = round(self.score, 4)
        return data


@dataclass
class Match:
    """Evidence found in a prompt: which words, where, and what they mean.

    ``start``/``end`` index the *original* text, so ``text[start:end]`` quotes the user's
    own words even when matching happened on a normalised form (``n.u.d.e`` -> ``nude``).
    """

    category: str
    term: str
    start: int
    end: int
    quote: str
    score: float
    source: str  # "lexicon", "semantic", "person", "rule", "negative_prompt"
    field: str = "prompt"  # which text start/end index: "prompt" or "negative_prompt"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["score"] = round(self.score, 4)
        return data


@dataclass
class Decision:
    """The verdict on one piece of content under one policy."""

    action: Action
    categories: dict[str, float]
    policy_id: str
    kind: str = "image"  # "image" or "prompt"
    regions: list[Region] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    hard_rule: str | None = None
    #: Categories whose regions the verdict censored (set only when ``action`` is censor),
    #: so publishing censors exactly what the policy decided, without deciding again.
    censored: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    frames: int = 1
    backends: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON form (see ``docs/decision.schema.json``)."""
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "action": self.action.value,
            "categories": {k: round(v, 4) for k, v in sorted(self.categories.items())},
            "regions": [r.to_dict() for r in self.regions],
            "matches": [m.to_dict() for m in self.matches],
            "reasons": list(self.reasons),
            "hard_rule": self.hard_rule,
            "censored": list(self.censored),
            "policy_id": self.policy_id,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "sha256": self.sha256,
            "notes": list(self.notes),
            "frames": self.frames,
            "backends": list(self.backends),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Rebuild a Decision from :meth:`to_dict` output (schema version checked)."""
        if data.get("schema") != SCHEMA:
            raise ValueError(f"unsupported decision schema {data.get('schema')!r}, want {SCHEMA}")
        return cls(
            action=Action(data["action"]),
            categories=dict(data["categories"]),
            policy_id=data["policy_id"],
            kind=data.get("kind", "image"),
            regions=[Region(**{**r, "box": tuple(r["box"])}) for r in data.get("regions", [])],
            matches=[Match(**m) for m in data.get("matches", [])],
            reasons=list(data.get("reasons", [])),
            hard_rule=data.get("hard_rule"),
            censored=list(data.get("censored", [])),
            timings_ms=dict(data.get("timings_ms", {})),
            sha256=data.get("sha256"),
            notes=list(data.get("notes", [])),
            frames=int(data.get("frames", 1)),
            backends=list(data.get("backends", [])),
        )

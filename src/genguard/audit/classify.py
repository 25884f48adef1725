"""The classifier side of an audit: anything with ``check_images`` that returns decisions.

The audit only needs each decision's ``action`` and ``categories``, so it depends on this
small Protocol rather than on the Guard class; tests pass a fake, the CLI passes the real
:class:`genguard.guard.Guard` through :func:`guard_classifier`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from genguard.registry import Registry


class DecisionLike(Protocol):
    """The part of :class:`genguard.decision.Decision` an audit reads."""

    @property
    def action(self) -> Any: ...  # an Action enum or its string value

    @property
    def categories(self) -> Mapping[str, float]: ...


class ImageClassifier(Protocol):
    """Classifies a batch of images; ``classifier_id`` keys the results cache."""

    classifier_id: str

    def check_images(self, images: Sequence[Image.Image]) -> Sequence[DecisionLike]:
        """One decision per image, in order."""
        ...


@dataclass(frozen=True)
class Verdict:
    """A decision reduced to what the audit stores."""

    action: str
    categories: dict[str, float]

    @property
    def flagged(self) -> bool:
        """Whether the policy did anything but allow the image."""
        return self.action != "allow"


def to_verdict(decision: DecisionLike) -> Verdict:
    """Normalise a decision (enum or string action) to a :class:`Verdict`."""
    action = getattr(decision.action, "value", decision.action)
    return Verdict(str(action), {str(k): float(v) for k, v in decision.categories.items()})


class GuardClassifier:
    """Adapter from :class:`genguard.guard.Guard` to :class:`ImageClassifier`."""

    def __init__(self, guard: Any) -> None:
        self.guard = guard
        self.classifier_id = f"guard:{guard.policy_id}"

    def check_images(self, images: Sequence[Image.Image]) -> Sequence[DecisionLike]:
        """Check the batch with the Guard's policy."""
        return self.guard.check_images(list(images))


ClassifierFactory = Callable[[dict[str, Any]], ImageClassifier]
#: Audit classifiers by name; other packages add theirs through ``genguard.classifiers``.
CLASSIFIERS: Registry[ClassifierFactory] = Registry(
    "audit classifier", entry_point_group="genguard.classifiers"
)


def register_classifier(name: str) -> Callable[[ClassifierFactory], ClassifierFactory]:
    """Decorator adding a classifier factory ``(options) -> classifier``."""
    return CLASSIFIERS.register(name)


def create_classifier(name: str, options: dict[str, Any] | None = None) -> ImageClassifier:
    """Instantiate a registered classifier."""
    return CLASSIFIERS.get(name)(dict(options or {}))


@register_classifier("guard")
def guard_classifier(options: dict[str, Any]) -> ImageClassifier:
    """The real image Guard under a policy (``options['policy']``, default standard)."""
    from genguard.guard import Guard

    return GuardClassifier(Guard.from_policy(options.get("policy", "standard")))

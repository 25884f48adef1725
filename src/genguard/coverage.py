"""What a set of detector backends can see, and what the hard rules rest on.

An operator who blocks sexual content involving minors needs to know that, with the
default backends, no *image* signal says "minor": the rule fires on an image only when
the prompt it came from says so (the gateway's generate route passes it as context), or
with a backend that scores ``minor``. This module answers that from the registry and the
policy, so ``genguard backends coverage`` and the docs say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genguard import taxonomy
from genguard.detectors.base import DETECTORS
from genguard.policy import Policy


@dataclass(frozen=True)
class CategoryCoverage:
    """One image category and the backends (of the set) that can score it."""

    category: str
    backends: tuple[str, ...]


@dataclass(frozen=True)
class RuleCoverage:
    """Where each signal group of a hard rule can come from."""

    rule: str
    #: The rule's signal groups (one signal of every group must fire).
    groups: tuple[tuple[str, ...], ...]
    #: Per group: the image categories of the set that satisfy it (empty: none).
    image: tuple[tuple[str, ...], ...]
    #: Per group: the prompt categories that satisfy it (empty: none).
    prompt: tuple[tuple[str, ...], ...]

    @property
    def missing_on_images(self) -> list[tuple[str, ...]]:
        """Groups no image backend of the set can meet (they need the prompt as context)."""
        return [group for group, seen in zip(self.groups, self.image, strict=True) if not seen]

    @property
    def fires_on_images_alone(self) -> bool:
        return all(self.image)

    @property
    def fires_on_prompts_alone(self) -> bool:
        return all(self.prompt)


def backend_categories(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Declared categories of each backend (``name`` or ``name:argument``)."""
    found = {}
    for spec in names:
        name = spec.partition(":")[0]
        factory = DETECTORS.get(name)
        found[spec] = tuple(getattr(factory, "categories", ()))
    return found


def category_coverage(names: Sequence[str]) -> list[CategoryCoverage]:
    declared = backend_categories(names)
    return [
        CategoryCoverage(c.name, tuple(b for b, cats in declared.items() if c.name in cats))
        for c in taxonomy.categories("image")
    ]


def _signals(group: Sequence[str], modality: str, available: set[str]) -> tuple[str, ...]:
    found = []
    for signal in group:
        prefix, _, name = signal.rpartition(":")
        if (not prefix or prefix == modality) and name in available:
            found.append(name)
    return tuple(found)


def rule_coverage(policy: Policy, names: Sequence[str]) -> list[RuleCoverage]:
    """For every hard rule of ``policy``: which groups the backends and prompts can meet."""
    image = {c.category for c in category_coverage(names) if c.backends}
    prompt = {c.name for c in taxonomy.categories("prompt")}
    return [
        RuleCoverage(
            rule.name,
            tuple(tuple(group) for group in rule.all_of),
            tuple(_signals(group, "image", image) for group in rule.all_of),
            tuple(_signals(group, "prompt", prompt) for group in rule.all_of),
        )
        for rule in policy.all_hard_rules()
    ]

"""One vocabulary of categories, shared by detectors, policies, decisions and reports.

Backends speak their own labels (NudeNet's ``FEMALE_BREAST_EXPOSED``, OpenNSFW's one
probability); this module maps them onto a small fixed set so that a policy written once
works whatever detectors run. New backends may register extra categories (``violence``
from a CLIP backend, ``hash_match`` from a hash bank) with :func:`register_category`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Modality = Literal["image", "prompt"]


@dataclass(frozen=True)
class Category:
    """A named category and what it means."""

    name: str
    modality: Modality
    description: str


_CATEGORIES: dict[tuple[Modality, str], Category] = {}


def register_category(name: str, modality: Modality, description: str) -> Category:
    """Add a category to the vocabulary (idempotent); returns it."""
    category = Category(name, modality, description)
    _CATEGORIES.setdefault((modality, name), category)
    return _CATEGORIES[(modality, name)]


def categories(modality: Modality) -> list[Category]:
    """All known categories of one modality, in registration order."""
    return [c for (m, _), c in _CATEGORIES.items() if m == modality]


def is_known(name: str, modality: Modality) -> bool:
    return (modality, name) in _CATEGORIES


for _name, _description in (
    ("sexual_explicit", "exposed genitals or anus; sexual activity"),
    ("nudity", "exposed female breasts or buttocks, or any explicit nudity"),
    ("suggestive", "covered intimate areas, exposed belly or chest: swimwear, lingerie"),
    ("face", "a human face is visible (a person is present)"),
    ("violence", "weapons aimed at people, blood, gore"),
    ("hate_symbol", "hateful symbols or insignia (from the CLIP zero-shot backend)"),
    ("hash_match", "the image matches a hash bank entry (known content)"),
):
    register_category(_name, "image", _description)

for _name, _description in (
    ("sexual", "asks for sexual content or nudity"),
    (
        "suggestive",
        "soft sexualisation (lingerie, seductive poses): fine for adults, never for minors",
    ),
    ("minor", "mentions a child or a young-looking person"),
    ("violence", "asks for gore, injury or killing"),
    ("real_person", "names a real, protected person"),
    ("self_harm", "asks for self-harm or suicide imagery"),
    ("hate", "asks for hateful symbols or slurs against a group"),
):
    register_category(_name, "prompt", _description)


#: NudeNet 3.x detector labels -> (category, weight). The weight says how strongly the
#: label alone implies the category: an exposed genital *is* explicit, an exposed belly
#: is merely suggestive. Faces and feet carry no nudity signal.
NUDENET_LABELS: dict[str, tuple[str, float]] = {
    "FEMALE_GENITALIA_EXPOSED": ("sexual_explicit", 1.0),
    "MALE_GENITALIA_EXPOSED": ("sexual_explicit", 1.0),
    "ANUS_EXPOSED": ("sexual_explicit", 1.0),
    "FEMALE_BREAST_EXPOSED": ("nudity", 1.0),
    "BUTTOCKS_EXPOSED": ("nudity", 1.0),
    "FEMALE_GENITALIA_COVERED": ("suggestive", 0.9),
    "FEMALE_BREAST_COVERED": ("suggestive", 0.6),
    "BUTTOCKS_COVERED": ("suggestive", 0.6),
    "ANUS_COVERED": ("suggestive", 0.6),
    "MALE_BREAST_EXPOSED": ("suggestive", 0.3),
    "BELLY_EXPOSED": ("suggestive", 0.4),
    "ARMPITS_EXPOSED": ("suggestive", 0.1),
    "FACE_FEMALE": ("face", 1.0),
    "FACE_MALE": ("face", 1.0),
    "FEET_EXPOSED": ("suggestive", 0.05),
    "FEET_COVERED": ("suggestive", 0.0),
    "BELLY_COVERED": ("suggestive", 0.0),
    "ARMPITS_COVERED": ("suggestive", 0.0),
}

#: Category implication: explicit content is also nudity, nudity is also suggestive.
#: Fusion takes the max along this chain so thresholds stay monotone.
IMPLIES: dict[str, tuple[str, ...]] = {
    "sexual_explicit": ("nudity", "suggestive"),
    "nudity": ("suggestive",),
}

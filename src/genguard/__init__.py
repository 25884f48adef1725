"""genguard: a self-hosted safety layer for AI image generation.

signals -> policy -> decision -> action, behind one :class:`Guard`::

    from genguard import Guard
    decision = Guard.from_policy("standard").check_image("x.png")
    decision.action, decision.categories["nudity"], decision.regions, decision.reasons
"""

from __future__ import annotations

from genguard.decision import Action, Decision, Match, Region
from genguard.errors import ContentError, GenguardError, PolicyError
from genguard.guard import Guard
from genguard.policy import Policy, load_policy

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ContentError",
    "Decision",
    "GenguardError",
    "Guard",
    "Match",
    "Policy",
    "PolicyError",
    "Region",
    "__version__",
    "load_policy",
]

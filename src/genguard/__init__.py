"""genguard: a self-hosted safety layer for AI image generation.

signals -> policy -> decision -> action, behind one :class:`Guard`.
"""

from __future__ import annotations

from genguard.errors import ContentError, GenguardError, PolicyError

__version__ = "0.1.0"

__all__ = ["ContentError", "GenguardError", "PolicyError", "__version__"]

"""Prompt safety: normalisation, lexicons, semantic check and protected persons.

The public names are imported lazily, so ``genguard`` commands that never look at a
prompt do not pay for importing the matcher, rapidfuzz or SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PromptAnalyser": "genguard.text.analyser",
    "PromptSignals": "genguard.text.analyser",
    "PersonRegistry": "genguard.text.persons",
    "Person": "genguard.text.persons",
    "Lexicon": "genguard.text.lexicon",
    "normalize": "genguard.text.normalize",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genguard.text' has no attribute {name!r}")

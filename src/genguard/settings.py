"""Every ``GENGUARD_*`` environment variable, its default and what reads it: one place.

Modules ask this one for a setting instead of reading ``os.environ`` themselves, so the
names, defaults and documentation cannot drift apart (the first round had six readers and
two names for the cache folder). :data:`SETTINGS` is the table that ``docs/settings.md``
shows and a test keeps in step; the functions read the environment at call time, so tests
and long-running services see changes made with ``monkeypatch`` or a restart alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    """One environment variable."""

    name: str
    default: str
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "GENGUARD_CACHE_DIR",
        "~/.cache/genguard",
        "cache folder: exemplar embeddings, the semantic classifier, the persons index, ONNX "
        "exports (GENGUARD_CACHE, the old name, is still read)",
    ),
    Setting(
        "GENGUARD_STORE",
        "./genguard-data/genguard.db",
        "database path or SQLAlchemy URL: protected persons, keys, audit log, review queue",
    ),
    Setting(
        "GENGUARD_DEVICE",
        "cpu",
        "ONNX execution provider: cpu, cuda (fails clearly without onnxruntime-gpu), auto",
    ),
    Setting(
        "GENGUARD_ENCODER",
        "onnx when available, else numpy",
        "MiniLM encoder of the semantic check: numpy, onnx, onnx-int8",
    ),
    Setting(
        "GENGUARD_PRECISION",
        "fp32",
        "precision of the NudeNet and OpenNSFW models: fp32, int8 (only where int8 is "
        "offered), or per model: opennsfw=int8,nudenet=fp32",
    ),
    Setting(
        "GENGUARD_ADMIN_TOKEN",
        "(none: review page disabled)",
        "gateway review-page admin token, 32+ characters (or review.admin_token in the config)",
    ),
    Setting(
        "GENGUARD_CONTENT_KEY",
        "(none)",
        "Fernet key for stored content (or store.content_key in the config)",
    ),
    Setting(
        "GENGUARD_WATERMARK_KEY",
        "(none: a random per-install key in <data dir>/watermark.key, 0600)",
        "operator's secret watermark key, decimal or 0x-hex (or watermark.key in the config); "
        "embedding never uses a built-in key",
    ),
)

_DEFAULT_CACHE = Path("~/.cache/genguard")


def _get(name: str) -> str:
    return os.environ.get(name, "").strip()


def cache_dir() -> Path:
    """``$GENGUARD_CACHE_DIR`` (or the old ``$GENGUARD_CACHE``), else ``~/.cache/genguard``."""
    value = _get("GENGUARD_CACHE_DIR") or _get("GENGUARD_CACHE")
    return Path(value).expanduser() if value else _DEFAULT_CACHE.expanduser()


def store_location() -> str | None:
    """``$GENGUARD_STORE`` when set (None: the default database, created only on write)."""
    return _get("GENGUARD_STORE") or None


def device() -> str:
    """``$GENGUARD_DEVICE`` in lower case, ``cpu`` by default."""
    return _get("GENGUARD_DEVICE").lower() or "cpu"


def encoder_kind() -> str | None:
    """``$GENGUARD_ENCODER`` in lower case, or None to choose automatically."""
    return _get("GENGUARD_ENCODER").lower() or None


def admin_token() -> str:
    return _get("GENGUARD_ADMIN_TOKEN")


def content_key() -> str:
    return _get("GENGUARD_CONTENT_KEY")


def watermark_key() -> str:
    """``$GENGUARD_WATERMARK_KEY`` as written (parsed by genguard.provenance.watermark)."""
    return _get("GENGUARD_WATERMARK_KEY")


def precision(model: str) -> str:
    """``$GENGUARD_PRECISION`` for ``model``: ``fp32`` (default) or ``int8``.

    The value is one precision for every ONNX image model (``int8``) or per model
    (``opennsfw=int8,nudenet=fp32``; models not named stay ``fp32``).
    """
    value = _get("GENGUARD_PRECISION").lower()
    if "=" not in value:
        return value or "fp32"
    for pair in value.split(","):
        name, _, chosen = pair.partition("=")
        if name.strip() == model:
            return chosen.strip() or "fp32"
    return "fp32"

"""Labelled data sets for ``genguard eval`` and ``genguard calibrate``, and scoring them.

Two ways to label images:

* a folder with one sub-folder per class: ``safe/`` for negatives, ``unsafe/`` for
  positives of no particular category, or a folder named after an image category
  (``nudity/``, ``sexual_explicit/``, ``suggestive/``, ``violence/``) for positives of
  that category;
* a CSV file ``path,label[,category]`` (paths relative to the folder, or absolute; label
  one of ``1/0, unsafe/safe, nsfw/sfw, true/false, yes/no``). Errors name the line.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genguard import taxonomy
from genguard.errors import ConfigError, ContentError
from genguard.guard import Guard
from genguard.scan import IMAGE_EXTENSIONS

POSITIVE = {"1", "unsafe", "nsfw", "true", "yes", "positive"}
NEGATIVE = {"0", "safe", "sfw", "false", "no", "negative"}
#: The overall "unsafe" score: the strongest of these fused categories.
UNSAFE_CATEGORIES = ("sexual_explicit", "nudity", "violence")


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    unsafe: bool
    category: str | None = None


@dataclass
class ScoredImage:
    """One labelled image with the scores of each backend alone and of the fusion."""

    item: LabelledImage
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # source -> category
    sha256: str | None = None
    error: str | None = None


def _label_value(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in POSITIVE:
        return True
    if value in NEGATIVE:
        return False
    raise ConfigError(f"{where}: unknown label {text!r}; use one of 1/0, unsafe/safe, nsfw/sfw")


def _category(text: str | None, where: str) -> str | None:
    if text is None or not text.strip():
        return None
    name = text.strip()
    if not taxonomy.is_known(name, "image"):
        known = ", ".join(c.name for c in taxonomy.categories("image"))
        raise ConfigError(f"{where}: unknown category {name!r}; known: {known}")
    return name


def read_labels_csv(csv_path: Path, root: Path | None = None) -> list[LabelledImage]:
    """Parse ``path,label[,category]`` lines; an optional header line is skipped."""
    root = root or csv_path.parent
    items = []
    try:
        text = csv_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read labels file {csv_path}: {exc}") from exc
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        where = f"{csv_path}:{number}"
        if not row or row[0].startswith("#"):
            continue
        if number == 1 and row[0].strip().lower() == "path":
            continue
        if len(row) < 2:
            raise ConfigError(f"{where}: expected 'path,label[,category]', got {','.join(row)!r}")
        path = Path(row[0].strip())
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise ConfigError(f"{where}: no such file {path}")
        unsafe = _label_value(row[1], where)
        items.append(
            LabelledImage(path, unsafe, _category(row[2] if len(row) > 2 else None, where))
        )
    if not items:
        raise ConfigError(f"{csv_path}: no labelled images")
    return items


def read_labelled_folder(root: Path) -> list[LabelledImage]:
    """Labels from sub-folder names: safe/, unsafe/, or an image category's name."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        if name == "safe":
            unsafe, category = False, None
        elif name == "unsafe":
            unsafe, category = True, None
        else:
            unsafe, category = True, _category(name, f"folder {folder}")
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                items.append(LabelledImage(path, unsafe, category))
    if not items:
        raise ConfigError(f"{root}: no images under safe/, unsafe/ or <category>/ sub-folders")
    return items


def read_dataset(root: Path, labels: Path | None = None) -> list[LabelledImage]:
    return read_labels_csv(labels, root) if labels else read_labelled_folder(root)


def score_dataset(
    guard: Guard,
    items: Sequence[LabelledImage],
    on_progress: Callable[[int], None] | None = None,
) -> list[ScoredImage]:
    """Run every backend once per image; keep each backend's own scores and the fusion's."""
    results = []
    for start in range(0, len(items), guard.batch_size):
        chunk = items[start : start + guard.batch_size]
        results.extend(_score_chunk(guard, chunk))
        if on_progress:
            on_progress(len(chunk))
    return results


def _score_chunk(guard: Guard, chunk: Sequence[LabelledImage]) -> list[ScoredImage]:
    scored = []
    loaded = []
    for item in chunk:
        try:
            image = guard.load(item.path)
            loaded.append(image)
            scored.append(ScoredImage(item, sha256=image.sha256))
        except ContentError as exc:
            scored.append(ScoredImage(item, error=f"{exc.code}: {exc}"))
    frames = [(i, f) for i, img in enumerate(loaded) for f in img.frames]
    outputs = guard.detect_frames([f for _, f in frames])
    per_image: list[dict[str, dict[str, float]]] = [{} for _ in loaded]
    for (index, _), frame_outputs in zip(frames, outputs, strict=True):
        sources = {o.backend: [o] for o in frame_outputs}
        sources["fused"] = frame_outputs
        for source, outs in sources.items():
            fused = guard.fusion.fuse(outs)
            if source == "fused":
                fused = guard.policy.image.calibrated(fused)
            slot = per_image[index].setdefault(source, {})
            for category, value in fused.items():
                slot[category] = max(slot.get(category, 0.0), value)
    good = iter(per_image)
    for entry in scored:
        if entry.error is None:
            entry.scores = next(good)
            for source_scores in entry.scores.values():
                source_scores["unsafe"] = max(source_scores.get(c, 0.0) for c in UNSAFE_CATEGORIES)
    return scored


def dataset_sha256(scored: Sequence[ScoredImage]) -> str:
    """Identifies a labelled set by content, not by paths: sorted (image hash, label)."""
    lines = sorted(
        f"{s.sha256 or s.item.path}|{int(s.item.unsafe)}|{s.item.category or ''}" for s in scored
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()

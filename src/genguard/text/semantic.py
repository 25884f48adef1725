"""Semantic prompt check: nearest exemplar sentences per category, with MiniLM.

Word lists miss paraphrases: "a person in their birthday suit" names no listed word. The
semantic check embeds the (normalised) prompt and compares it with short exemplar
sentences per category (``data/exemplars``). A category counts when its nearest exemplar
is at least the caller's threshold *and* nearer than the nearest benign contrast sentence
("a woman in a swimsuit at the beach"), which keeps near-misses from tipping over.

Exemplar embeddings are computed once per process and cached on disk (``.npy`` keyed by
a hash of the exemplar texts), so a CLI call does not re-embed them every time. Prompt
embeddings are kept in a small LRU cache: real traffic repeats prompts a lot.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from genguard.errors import ConfigError
from genguard.taxonomy import categories

BENIGN = "benign"
_CACHE_VERSION = "minilm-l6-v2/1"


class Encoder(Protocol):
    """Anything that turns texts into unit-norm row vectors."""

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True)
class SemanticHit:
    """The nearest exemplar of one category for one prompt."""

    category: str
    similarity: float  # cosine, -1..1
    exemplar: str
    benign_similarity: float  # nearest benign contrast sentence


def builtin_exemplar_dir() -> Path:
    return Path(str(resources.files("genguard").joinpath("data/exemplars")))


def load_exemplars(dirs: Sequence[Path]) -> dict[str, list[str]]:
    """``category -> sentences`` from ``<category>.txt`` files (``benign.txt`` included)."""
    known = {c.name for c in categories("prompt")} | {BENIGN}
    out: dict[str, list[str]] = {}
    for directory in dirs:
        if not Path(directory).is_dir():
            raise ConfigError(f"exemplar directory {directory} does not exist")
        for path in sorted(Path(directory).glob("*.txt")):
            category = path.stem
            if category not in known:
                raise ConfigError(f"{path}: unknown prompt category {category!r}")
            lines = [ln.split("#", 1)[0].strip() for ln in path.read_text("utf-8").splitlines()]
            out.setdefault(category, []).extend(ln for ln in lines if ln)
    return out


def default_cache_dir() -> Path:
    """``$GENGUARD_CACHE_DIR`` or ``~/.cache/genguard``."""
    env = os.environ.get("GENGUARD_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "genguard"


class SemanticChecker:
    """Compares prompts with category exemplars; embeddings cached per process and on disk."""

    def __init__(
        self,
        encoder: Encoder | None = None,
        *,
        exemplar_dirs: Sequence[Path] = (),
        cache_dir: Path | None = None,
        disk_cache: bool = True,
        memo_size: int = 4096,
    ) -> None:
        if encoder is None:
            from genguard.text.encoder import get_encoder

            encoder = get_encoder()
        self.encoder = encoder
        self.exemplars = load_exemplars([builtin_exemplar_dir(), *exemplar_dirs])
        self._labels: list[str] = []
        self._texts: list[str] = []
        for category, sentences in self.exemplars.items():
            self._labels.extend([category] * len(sentences))
            self._texts.extend(sentences)
        self._label_array = np.array(self._labels)
        self._cache_dir = (cache_dir or default_cache_dir()) if disk_cache else None
        self._matrix = self._exemplar_matrix()
        self._category_rows = {
            c: np.flatnonzero(self._label_array == c) for c in self.exemplars if c != BENIGN
        }
        self._benign_rows = np.flatnonzero(self._label_array == BENIGN)
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()

    def _exemplar_matrix(self) -> np.ndarray:
        # Encoders differ slightly (int8 weights), so each gets its own cached matrix.
        tag = getattr(self.encoder, "cache_tag", type(self.encoder).__name__)
        digest = hashlib.sha256(
            "\n".join([_CACHE_VERSION, tag, *self._labels, *self._texts]).encode()
        ).hexdigest()[:16]
        path = self._cache_dir / f"exemplars-{digest}.npy" if self._cache_dir else None
        if path is not None and path.is_file():
            try:
                matrix = np.load(path)
                if matrix.shape == (len(self._texts), 384):
                    return matrix.astype(np.float32)
            except (OSError, ValueError):
                pass
        matrix = self.encoder.encode(self._texts)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, matrix)
                tmp.replace(path)
            except OSError:
                pass  # a read-only home is fine: we just recompute next time
        return matrix

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embeddings of ``texts``, reusing recent ones (repeated prompts are common)."""
        out = np.zeros((len(texts), self._matrix.shape[1]), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                cached = self._memo.get(text)
                if cached is not None:
                    self._memo.move_to_end(text)
                    out[i] = cached
                else:
                    missing.setdefault(text, []).append(i)
        if missing:
            unique = list(missing)
            vectors = self.encoder.encode(unique, batch_size=batch_size)
            with self._lock:
                for text, vector in zip(unique, vectors, strict=True):
                    out[missing[text]] = vector
                    if self._memo_size:
                        self._memo[text] = vector
                        if len(self._memo) > self._memo_size:
                            self._memo.popitem(last=False)
        return out

    def nearest(self, texts: Sequence[str]) -> list[dict[str, SemanticHit]]:
        """For each text, the nearest exemplar of every category (benign similarity too)."""
        if not texts:
            return []
        sims = self.embed(texts) @ self._matrix.T
        if self._benign_rows.size:
            benign = sims[:, self._benign_rows].max(axis=1)
        else:
            benign = np.full(len(texts), -1.0, dtype=np.float32)
        results: list[dict[str, SemanticHit]] = [{} for _ in texts]
        for category, rows in self._category_rows.items():
            block = sims[:, rows]
            best = block.argmax(axis=1)
            for i, j in enumerate(best):
                results[i][category] = SemanticHit(
                    category=category,
                    similarity=float(block[i, j]),
                    exemplar=self._texts[rows[j]],
                    benign_similarity=float(benign[i]),
                )
        return results


def semantic_score(hit: SemanticHit, threshold: float) -> float:
    """Map a similarity to a category score in [0, 1]; 0 when the hit does not count.

    At the threshold the score is 0.5 and it rises linearly to 1.0 at similarity 1.0, so a
    policy threshold of 0.5 on the category accepts exactly the semantic threshold.
    """
    if hit.similarity < threshold or hit.similarity <= hit.benign_similarity:
        return 0.0
    if threshold >= 1.0:
        return 1.0
    return min(1.0, 0.5 + 0.5 * (hit.similarity - threshold) / (1.0 - threshold))

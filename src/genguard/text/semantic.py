"""Semantic prompt check: a classifier over MiniLM sentence embeddings.

Word lists miss paraphrases: "a person in their birthday suit" names no listed word. The
semantic check embeds the (normalised) prompt and asks a small softmax classifier which
category it belongs to (benign, sexual, violence, self_harm, minor, hate). The classifier
is trained, at first use, on the sentences shipped in ``data/exemplars`` (short
non-graphic exemplars per category, ``train/`` paraphrase sets, and benign near-misses:
swimwear at the beach, war history, a chef's knife); it is a linear layer, fitted in
numpy in well under a second, deterministic, and cached on disk keyed by the hash of its
training sentences and of the encoder.

Why a classifier and not the nearest exemplar: on prompts nobody here wrote, a paraphrase
of gore sits at cosine ~0.4 from its nearest exemplar while ordinary prompts reach ~0.38;
a linear layer trained on a few thousand sentences separates them far better. The nearest
exemplar is still reported, as the human-readable evidence of a hit.

Embeddings of the training sentences are cached on disk (``.npy``), prompt embeddings in
a small LRU cache: real traffic repeats prompts a lot.
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

from genguard import settings
from genguard.errors import ConfigError
from genguard.taxonomy import categories

BENIGN = "benign"
_CACHE_VERSION = "minilm-l6-v2/1"
_HEAD_VERSION = "softmax-head/1"
#: Fitting: full-batch Adam on the class-balanced cross-entropy, L2 on the weights.
#: (Chosen on the dev split of bench/data/prompt_eval: stronger L2 halves paraphrase
#: recall, weaker L2 doubles benign false positives.)
HEAD_STEPS = 1000
HEAD_LEARNING_RATE = 0.05
HEAD_L2 = 1e-4
#: Prior odds for the benign class: most prompts are benign, and a false block costs the
#: user; x3 cut false positives on near-misses by a third for a few points of recall.
BENIGN_PRIOR = 3.0


class Encoder(Protocol):
    """Anything that turns texts into unit-norm row vectors."""

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True)
class SemanticHit:
    """One category's verdict on one text: classifier probability and nearest exemplar."""

    category: str
    similarity: float  # cosine to the nearest exemplar, -1..1
    exemplar: str
    benign_similarity: float  # nearest benign contrast sentence
    probability: float = -1.0  # the classifier's probability; -1: no classifier (cosine rule)


def builtin_exemplar_dir() -> Path:
    return Path(str(resources.files("genguard").joinpath("data/exemplars")))


def load_exemplars(dirs: Sequence[Path]) -> dict[str, list[str]]:
    """``category -> sentences`` from ``<category>.txt`` files (``benign.txt`` included),
    and from a ``train/`` folder inside each directory (``benign_*.txt`` count as benign)."""
    known = {c.name for c in categories("prompt")} | {BENIGN}
    out: dict[str, list[str]] = {}
    for directory in dirs:
        if not Path(directory).is_dir():
            raise ConfigError(f"exemplar directory {directory} does not exist")
        paths = sorted(Path(directory).glob("*.txt")) + sorted(Path(directory).glob("train/*.txt"))
        for path in paths:
            category = BENIGN if path.stem.startswith(BENIGN + "_") else path.stem
            if category not in known:
                raise ConfigError(f"{path}: unknown prompt category {category!r}")
            lines = [ln.split("#", 1)[0].strip() for ln in path.read_text("utf-8").splitlines()]
            out.setdefault(category, []).extend(ln for ln in lines if ln)
    return out


def default_cache_dir() -> Path:
    """The cache folder (:func:`genguard.settings.cache_dir`)."""
    return settings.cache_dir()


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
        classifier: bool = True,
        builtin_exemplars: bool = True,
    ) -> None:
        if encoder is None:
            from genguard.text.encoder import get_encoder

            encoder = get_encoder()
        self.encoder = encoder
        builtin = [builtin_exemplar_dir()] if builtin_exemplars else []
        self.exemplars = load_exemplars([*builtin, *exemplar_dirs])
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
        self.classes = [BENIGN, *sorted(self._category_rows)]
        self._weights: np.ndarray | None = None
        self._bias: np.ndarray | None = None
        if classifier:
            self._weights, self._bias = self._head()
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

    def _head(self) -> tuple[np.ndarray, np.ndarray]:
        """The softmax classifier's weights: from the disk cache, or fitted now."""
        tag = getattr(self.encoder, "cache_tag", type(self.encoder).__name__)
        digest = hashlib.sha256(
            "\n".join(
                [_HEAD_VERSION, tag, f"{HEAD_STEPS} {HEAD_LEARNING_RATE} {HEAD_L2} {BENIGN_PRIOR}"]
                + [
                    f"{label}\t{text}"
                    for label, text in zip(self._labels, self._texts, strict=True)
                ]
            ).encode()
        ).hexdigest()[:16]
        path = self._cache_dir / f"head-{digest}.npz" if self._cache_dir else None
        if path is not None and path.is_file():
            try:
                with np.load(path) as data:
                    if data["weights"].shape == (self._matrix.shape[1], len(self.classes)):
                        return data["weights"], data["bias"]
            except (OSError, ValueError, KeyError):
                pass
        index = {c: k for k, c in enumerate(self.classes)}
        targets = np.array([index[label] for label in self._labels])
        weights, bias = fit_softmax(self._matrix, targets, len(self.classes))
        bias[self.classes.index(BENIGN)] += np.log(BENIGN_PRIOR)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(tmp, weights=weights, bias=bias)
                tmp.replace(path)
            except OSError:
                pass
        return weights, bias

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in :attr:`classes` order) for unit-norm rows."""
        if self._weights is None or self._bias is None:
            raise ValueError("this checker was built without a classifier")
        return softmax(embeddings @ self._weights + self._bias)

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
        embeddings = self.embed(texts)
        sims = embeddings @ self._matrix.T
        probs = self.probabilities(embeddings) if self._weights is not None else None
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
                    probability=(
                        float(probs[i, self.classes.index(category)]) if probs is not None else -1.0
                    ),
                )
        return results


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_softmax(
    features: np.ndarray,
    targets: np.ndarray,
    classes: int,
    *,
    steps: int = HEAD_STEPS,
    learning_rate: float = HEAD_LEARNING_RATE,
    l2: float = HEAD_L2,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, class-balanced, fitted by full-batch Adam.

    Deterministic (zero start, fixed steps); a few thousand 384-d rows fit in well under
    a second in numpy, so no training library is needed.
    """
    x = features.astype(np.float64)
    n, d = x.shape
    onehot = np.eye(classes)[targets]
    counts = np.bincount(targets, minlength=classes).astype(np.float64)
    sample_weight = (n / (classes * np.maximum(counts, 1)))[targets][:, None]
    weights = np.zeros((d, classes))
    bias = np.zeros(classes)
    m_w, v_w = np.zeros_like(weights), np.zeros_like(weights)
    m_b, v_b = np.zeros_like(bias), np.zeros_like(bias)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        grad = (softmax(x @ weights + bias) - onehot) * sample_weight / n
        g_w = x.T @ grad + l2 * weights
        g_b = grad.sum(axis=0)
        m_w = beta1 * m_w + (1 - beta1) * g_w
        v_w = beta2 * v_w + (1 - beta2) * g_w**2
        m_b = beta1 * m_b + (1 - beta1) * g_b
        v_b = beta2 * v_b + (1 - beta2) * g_b**2
        correction = np.sqrt(1 - beta2**step) / (1 - beta1**step)
        weights -= learning_rate * correction * m_w / (np.sqrt(v_w) + eps)
        bias -= learning_rate * correction * m_b / (np.sqrt(v_b) + eps)
    return weights.astype(np.float32), bias.astype(np.float32)


def semantic_score(hit: SemanticHit, threshold: float) -> float:
    """Map a hit to a category score in [0, 1]; 0 when it does not count.

    With a classifier, the measure is its probability; without one, the cosine to the
    nearest exemplar, which must also beat the nearest benign sentence. At the threshold
    the score is 0.5 and it rises linearly to 1.0, so a policy threshold of 0.5 on the
    category accepts exactly the semantic threshold.
    """
    if hit.probability >= 0.0:
        if hit.probability < threshold:
            return 0.0
        if threshold >= 1.0:
            return 1.0
        return min(1.0, 0.5 + 0.5 * (hit.probability - threshold) / (1.0 - threshold))
    if hit.similarity < threshold or hit.similarity <= hit.benign_similarity:
        return 0.0
    if threshold >= 1.0:
        return 1.0
    return min(1.0, 0.5 + 0.5 * (hit.similarity - threshold) / (1.0 - threshold))

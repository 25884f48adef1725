"""Nearest registered face for a batch of face embeddings, in one numpy expression.

Why vectorised: a likeness registry may hold 10,000 embeddings (a few photos each of a
few thousand people) and a frame up to 16 faces; squared distances come from
``|q|^2 + |v|^2 - 2 q.v`` with one numpy contraction per face over every entry, well
under a millisecond per face for 10,000 entries (``bench/faces.py`` measures it against
a per-entry loop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genguard.faces.model import EMBEDDING_SIZE

#: Euclidean distance at or below which two embeddings are called the same person.
#: dlib documents 0.6 for its model on LFW (99.38 %). On our set (bench/faces.py, 4
#: identities, 60 edited probes; docs/faces.md) same-person distances reached 0.41 and
#: different people came no closer than 0.64: 100 % true and 0 % false matches at 0.6,
#: so the documented value is kept.
DEFAULT_THRESHOLD = 0.6
#: Width of the logistic that turns a distance into a score: 0.05 gives 0.5 at the
#: threshold, 0.88 at threshold - 0.1 and 0.12 at threshold + 0.1.
SCORE_SCALE = 0.05


def score_from_distance(distance: float, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Calibrated likeness score in [0, 1]: exactly 0.5 at ``threshold``, falling with
    distance, so the hard rules' 0.5 means "within the threshold"."""
    z = (distance - threshold) / SCORE_SCALE
    if z > 60:  # exp would overflow; the score is 0 to double precision anyway
        return 0.0
    return 1.0 / (1.0 + math.exp(z))


@dataclass(frozen=True)
class Nearest:
    """The registered entry closest to one query face."""

    name: str
    distance: float


class FaceIndex:
    """Registered face embeddings and the person each belongs to (read-only)."""

    def __init__(self, names: Sequence[str], vectors: np.ndarray) -> None:
        matrix = np.asarray(vectors, dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
        if len(names) != len(matrix):
            raise ValueError(f"{len(names)} names for {len(matrix)} embeddings")
        self.names = tuple(names)
        self.vectors = np.ascontiguousarray(matrix)
        self._norms = np.einsum("ij,ij->i", self.vectors, self.vectors)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def persons(self) -> set[str]:
        return set(self.names)

    def nearest(self, queries: np.ndarray) -> list[Nearest]:
        """For each row of ``queries`` (``(m, 128)``), the closest registered embedding."""
        query = np.asarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
        if not len(self) or not len(query):
            return []
        # One einsum per face (at most 16 a frame), not one BLAS matrix product: on a
        # busy machine a multi-threaded BLAS call this small waits for its threads to be
        # scheduled (measured 36-44 ms for 16 x 10,000 under load, against 12-23 ms
        # here, and ~1 ms either way when idle); einsum runs on the caller's thread.
        dots = np.stack([np.einsum("jk,k->j", self.vectors, row) for row in query])
        squared = np.einsum("ij,ij->i", query, query)[:, None] + self._norms[None, :] - 2.0 * dots
        best = np.argmin(squared, axis=1)
        distances = np.sqrt(np.maximum(squared[np.arange(len(query)), best], 0.0))
        return [Nearest(self.names[int(i)], float(d)) for i, d in zip(best, distances, strict=True)]

    def nearest_naive(self, query: np.ndarray) -> Nearest | None:
        """The same answer for one query, one entry at a time: the benchmark's anchor."""
        best: Nearest | None = None
        target = np.asarray(query, dtype=np.float32).reshape(EMBEDDING_SIZE)
        for name, vector in zip(self.names, self.vectors, strict=True):
            distance = float(np.linalg.norm(vector - target))
            if best is None or distance < best.distance:
                best = Nearest(name, distance)
        return best

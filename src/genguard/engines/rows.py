"""Samples -> output rows: decode, check with a Guard, flatten the decision.

Shared by the local and the Ray engine so that both produce the same rows for the same
inputs. A row is flat (one column per category score) so that a Parquet file of
100M rows can be filtered with plain column predicates (``score_nudity > 0.6``); the
shapes follow the records of :mod:`genguard.engines.records`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from genguard.engines.records import Loaded, load_tolerant, record_path, records_for
from genguard.guard import DEFAULT_BACKENDS, Guard

#: One float column per built-in image category (``score_<name>``). A fixed list, not the
#: live registry: every worker process must produce the same schema whatever plugins it
#: happened to import. Scores of other categories are in the ``categories`` JSON column.
SCORE_CATEGORIES: tuple[str, ...] = (
    "sexual_explicit",
    "nudity",
    "suggestive",
    "face",
    "violence",
    "hate_symbol",
    "hash_match",
    "real_person",
)
ROW_SCHEMA_VERSION = "genguard.scan-row/1"


@dataclass(frozen=True)
class GuardFactory:
    """Builds the Guard inside each worker (picklable, unlike a loaded Guard).

    Why a factory: models must load once per worker process, not in the driver (a
    Guard's onnxruntime sessions cannot be pickled, and shipping them would cost more
    than loading them).
    """

    policy: str = "standard"
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    #: onnxruntime threads per model; ``None``: the local engine shares the machine's
    #: cores between the models, the Ray engine gives each model of an actor its share
    #: of ``cpus_per_worker``.
    threads: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Guard:
        return Guard.from_policy(
            self.policy, backends=self.backends, threads=self.threads, **self.kwargs
        )


def sample_row(sample_id: str, key: str | None, record: dict[str, Any]) -> dict[str, Any]:
    """Flatten a scan record (decision or error) into one output row."""
    scores = record["categories"]
    row: dict[str, Any] = {
        "id": record_path(sample_id),
        "path": record["path"],
        "key": None if key is None else record_path(key),
        "action": record["action"],
    }
    for name in SCORE_CATEGORIES:
        value = scores.get(name)
        row[f"score_{name}"] = None if record["error_code"] else float(value or 0.0)
    row.update(
        {
            "categories": json.dumps(scores, sort_keys=True),
            "reasons": list(record["reasons"]),
            "hard_rule": record["hard_rule"],
            "regions": json.dumps(record["regions"]),
            "sha256": record["sha256"],
            "frames": int(record["frames"]),
            "error": record["error"],
            "error_code": record["error_code"],
            "policy_id": record["policy_id"],
        }
    )
    return row


def load_sample(guard: Guard, sample: Any) -> Loaded:
    """Decode one sample for analysis; any failure becomes a ContentError (never raises)."""
    if sample.error is not None:
        return sample.error
    return load_tolerant(guard, sample.data if sample.data is not None else sample.path)


def rows_for(guard: Guard, samples: Sequence[Any], loaded: Sequence[Loaded]) -> list[dict]:
    """Run the models on the decoded samples of a batch; one flat row per sample, in order."""
    records = records_for(guard, samples, loaded)
    return [sample_row(s.id, s.key, r) for s, r in zip(samples, records, strict=True)]


class BatchChecker:
    """Decodes a batch on a small thread pool, then checks it: the unit of work of both
    engines. Decoding (Pillow, OpenCV) releases the GIL, so two decode threads keep the
    models fed on two cores."""

    def __init__(self, factory: Callable[[], Guard], decode_threads: int = 2) -> None:
        self.guard = factory()
        self._pool = ThreadPoolExecutor(max_workers=max(1, decode_threads))

    def decode(self, samples: Sequence[Any]) -> list[Loaded]:
        return list(self._pool.map(lambda s: load_sample(self.guard, s), samples))

    def __call__(self, samples: Sequence[Any]) -> list[dict]:
        """Flat rows for a batch (what the Ray workers ship as tables)."""
        return rows_for(self.guard, samples, self.decode(samples))

    def close(self) -> None:
        """Stop the decode threads (the Guard stays: it may be shared)."""
        self._pool.shutdown(wait=True)

    def records(self, samples: Sequence[Any], loaded: Sequence[Loaded]) -> list[dict]:
        """Scan records for a batch already decoded with :meth:`decode`."""
        return records_for(self.guard, samples, loaded)

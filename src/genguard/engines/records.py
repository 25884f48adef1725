"""Scan records: the one shape every scan produces, and the tolerant steps that make them.

A record says what happened to one input: its decision (action, scores, regions,
reasons) or the specific error that stopped it (``error_code``). Decoding and checking
here never raise for bad data, so one corrupt file costs one error record, not the scan.
The JSONL scan writes records as they are; the table writers flatten them into rows
(:mod:`genguard.engines.rows`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from genguard.content import LoadedImage
from genguard.decision import Decision
from genguard.errors import ContentError
from genguard.guard import Guard

RECORD_SCHEMA = "genguard.scan/1"


@dataclass
class ScanSummary:
    total: int = 0
    skipped_resumed: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def scanned(self) -> int:
        return sum(self.actions.values()) + sum(self.errors.values())

    @property
    def images_per_second(self) -> float:
        return self.scanned / self.seconds if self.seconds > 0 else 0.0

    def count(self, records: Iterable[dict[str, Any]]) -> None:
        """Tally the actions and error codes of written records."""
        for record in records:
            self.total += 1
            if record["error_code"]:
                self.errors[record["error_code"]] += 1
            else:
                self.actions[record["action"]] += 1


def record_path(path: str) -> str:
    """The path as it is written in a record: valid UTF-8 whatever the file system holds.

    POSIX names are bytes; one that is not UTF-8 arrives as a string with surrogate
    escapes, which neither JSON files nor Parquet can store. Such bytes are written as
    ``\\xff`` escapes, so the record stays readable and ``--resume`` still matches it.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def decision_record(path: str, decision: Decision) -> dict[str, Any]:
    data = decision.to_dict()
    return {
        "schema": RECORD_SCHEMA,
        "path": record_path(path),
        "action": data["action"],
        "categories": data["categories"],
        "regions": data["regions"],
        "reasons": data["reasons"],
        "hard_rule": data["hard_rule"],
        "policy_id": data["policy_id"],
        "sha256": data["sha256"],
        "frames": data["frames"],
        "error": None,
        "error_code": None,
    }


def error_record(path: str, error: ContentError, policy_id: str) -> dict[str, Any]:
    return {
        "schema": RECORD_SCHEMA,
        "path": record_path(path),
        "action": None,
        "categories": {},
        "regions": [],
        "reasons": [],
        "hard_rule": None,
        "policy_id": policy_id,
        "sha256": None,
        "frames": 0,
        "error": str(error),
        "error_code": error.code,
    }


Loaded = LoadedImage | ContentError


def load_tolerant(guard: Guard, source: str | bytes) -> Loaded:
    """Decode for analysis; every failure becomes a ContentError, never an exception.

    A decoder bug (an exception that is not a ContentError) must cost one record, not
    the scan.
    """
    try:
        return guard.load(source)
    except ContentError as exc:
        return exc
    except Exception as exc:
        return ContentError(
            f"unexpected decoder failure: {type(exc).__name__}: {exc}", code="corrupt"
        )


def check_tolerant(guard: Guard, images: Sequence[LoadedImage]) -> list[Decision | ContentError]:
    """Check a batch; if the batch fails, retry one by one so only the culprit errors."""
    if not images:
        return []
    try:
        return list(guard.check_loaded(images))
    except Exception:
        results: list[Decision | ContentError] = []
        for image in images:
            try:
                results.append(guard.check_loaded([image])[0])
            except Exception as exc:
                results.append(
                    ContentError(
                        f"detector failed: {type(exc).__name__}: {exc}", code="detector_error"
                    )
                )
        return results


def records_for(guard: Guard, samples: Sequence[Any], loaded: Sequence[Loaded]) -> list[dict]:
    """Run the models on a batch's decoded samples; one record per sample, in order.

    A sample's record path is its path, or ``path#key`` for a member of a shard or table.
    """
    images = [x for x in loaded if isinstance(x, LoadedImage)]
    decisions = iter(check_tolerant(guard, images))
    records = []
    for sample, result in zip(samples, loaded, strict=True):
        outcome = result if isinstance(result, ContentError) else next(decisions)
        source = sample.path if sample.key is None else f"{sample.path}#{sample.key}"
        if isinstance(outcome, ContentError):
            records.append(error_record(source, outcome, guard.policy_id))
        else:
            records.append(decision_record(source, outcome))
    return records

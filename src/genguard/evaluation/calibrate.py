"""``genguard calibrate``: fit a policy's thresholds (and score calibration) to labelled data.

For each target category with labelled positives, the fused score is first calibrated
(isotonic regression by default, or Platt's logistic fit) so that it reads as a
probability on the operator's own kind of images; then the threshold that meets the
target false-positive rate (or recall) is found on the calibrated scores. The result is a
policy TOML that ``extends`` a built-in profile, carries the curves and thresholds, and
records what it was fitted on (data set hash, sizes, metrics) in its ``[fit]`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import tomli_w

from genguard.decision import Action
from genguard.errors import ConfigError
from genguard.evaluation import metrics
from genguard.evaluation.dataset import ScoredImage, dataset_sha256
from genguard.evaluation.report import target_labels
from genguard.policy import Policy, parse_policy

Method = Literal["isotonic", "platt"]
FITTABLE = ("sexual_explicit", "nudity", "suggestive", "violence")


def fit_policy(
    scored: Sequence[ScoredImage],
    base: Policy,
    *,
    name: str,
    target_fpr: float | None = None,
    target_recall: float | None = None,
    method: Method = "isotonic",
    default_action: Action = Action.BLOCK,
) -> tuple[str, Policy]:
    """Return (TOML text, validated Policy) fitted on ``scored``."""
    if (target_fpr is None) == (target_recall is None):
        raise ConfigError("give exactly one of --target-fpr and --target-recall")
    targets = _targets(scored)
    if not targets:
        raise ConfigError(
            "no category to fit: label positives with a category (sub-folder nudity/, "
            "sexual_explicit/, suggestive/ or violence/, or the CSV's third column)"
        )
    curves: dict[str, list[tuple[float, float]]] = {}
    rules: dict[str, dict[str, Any]] = {}
    fitted_metrics: dict[str, Any] = {}
    for target in targets:
        indices, labels = target_labels(scored, target)
        metrics.require_both_classes(labels, f"calibrating {target!r}")
        raw = np.array([scored[i].scores["fused"][target] for i in indices])
        curve = _fit_curve(raw, labels, method)
        calibrated = np.interp(raw, [x for x, _ in curve], [y for _, y in curve])
        chosen = (
            metrics.threshold_for_fpr(calibrated, labels, target_fpr)
            if target_fpr is not None
            else metrics.threshold_for_recall(calibrated, labels, target_recall or 1.0)
        )
        curves[target] = curve
        existing = base.image.categories.get(target)
        action = (
            existing.action if existing and existing.action is not Action.ALLOW else default_action
        )
        rules[target] = {"threshold": round(chosen.threshold, 6), "action": action.value}
        fitted_metrics[target] = {
            "auc": round(metrics.roc_auc(raw, labels), 6),
            **{k: round(v, 6) if isinstance(v, float) else v for k, v in chosen.to_dict().items()},
        }
    document = {
        "extends": base.name,
        "name": name,
        "description": f"fitted by genguard calibrate on {len(scored)} labelled images",
        "image": {
            "categories": rules,
            "calibration": {k: [list(p) for p in v] for k, v in curves.items()},
        },
        "fit": {
            "dataset_sha256": dataset_sha256(scored),
            "images": len(scored),
            "errors": sum(1 for s in scored if s.error),
            "method": method,
            "target": {"fpr": target_fpr} if target_fpr is not None else {"recall": target_recall},
            "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "metrics": fitted_metrics,
        },
    }
    text = tomli_w.dumps(document)
    return text, parse_policy(text, f"{name}.toml")


def _targets(scored: Sequence[ScoredImage]) -> list[str]:
    labelled = {s.item.category for s in scored if s.item.category and s.error is None}
    return [c for c in FITTABLE if c in labelled]


def _fit_curve(raw: np.ndarray, labels: np.ndarray, method: Method) -> list[tuple[float, float]]:
    if method == "platt":
        return metrics.platt_curve(*metrics.platt_fit(raw, labels))
    if method == "isotonic":
        return metrics.isotonic_fit(raw, labels)
    raise ConfigError(f"unknown calibration method {method!r}: use isotonic or platt")

"""Binary-classification metrics on scores, in numpy (no scikit-learn dependency).

Operators set thresholds on their own data; these functions turn (score, label) pairs into
the numbers they need: ROC AUC, precision/recall at a threshold, the threshold that meets
a target false-positive rate or recall, a reliability table, and a monotone calibration
map (isotonic regression by pool-adjacent-violators, or Platt's logistic fit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from genguard.errors import ConfigError


@dataclass(frozen=True)
class Confusion:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def to_dict(self) -> dict[str, float]:
        data = asdict(self)
        data.update(precision=self.precision, recall=self.recall, fpr=self.fpr)
        return data


def _arrays(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ConfigError(f"{len(s)} scores but {len(y)} labels")
    if not np.isfinite(s).all():
        raise ConfigError("scores contain NaN or infinity")
    return s, y


def require_both_classes(labels: np.ndarray, what: str) -> None:
    """Refuse metrics that are meaningless on a single-class set, with a clear message."""
    y = np.asarray(labels).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ConfigError(
            f"{what} needs both classes: the set has {positives} unsafe and {negatives} safe "
            "examples; add labelled examples of the missing class"
        )


def confusion_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Confusion:
    """Predict unsafe when ``score >= threshold`` (the policy's convention)."""
    s, y = _arrays(scores, labels)
    predicted = s >= threshold
    return Confusion(
        threshold=float(threshold),
        tp=int((predicted & y).sum()),
        fp=int((predicted & ~y).sum()),
        tn=int((~predicted & ~y).sum()),
        fn=int((~predicted & y).sum()),
    )


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending; ties collapsed to one point."""
    s, y = _arrays(scores, labels)
    require_both_classes(y, "a ROC curve")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = np.cumsum(~y)[distinct]
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (~y).sum()]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a random unsafe example outscores a safe one)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) for each distinct threshold, descending."""
    s, y = _arrays(scores, labels)
    require_both_classes(y, "a precision-recall curve")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    predicted = distinct + 1
    return tps / predicted, tps / y.sum(), s[distinct]


def threshold_for_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> Confusion:
    """The lowest threshold (most recall) whose false-positive rate is <= ``target_fpr``."""
    if not 0.0 <= target_fpr <= 1.0:
        raise ConfigError(f"target FPR must be in [0, 1], got {target_fpr}")
    fpr, _, thresholds = roc_curve(scores, labels)
    allowed = np.flatnonzero(fpr <= target_fpr + 1e-12)
    threshold = float(min(thresholds[allowed[-1]], 1.0))
    if not np.isfinite(threshold):
        threshold = 1.0
    return confusion_at(scores, labels, threshold)


def threshold_for_recall(scores: np.ndarray, labels: np.ndarray, target_recall: float) -> Confusion:
    """The highest threshold (fewest false positives) whose recall is >= ``target_recall``."""
    if not 0.0 < target_recall <= 1.0:
        raise ConfigError(f"target recall must be in (0, 1], got {target_recall}")
    _, tpr, thresholds = roc_curve(scores, labels)
    reaching = np.flatnonzero(tpr >= target_recall - 1e-12)
    return confusion_at(scores, labels, float(min(thresholds[reaching[0]], 1.0)))


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per score bin: mean predicted score, observed unsafe rate, count (a calibration plot)."""
    s, y = _arrays(scores, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            table.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "mean_score": float(s[mask].mean()),
                    "observed_rate": float(y[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return table


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    table = reliability(scores, labels, bins)
    total = sum(row["count"] for row in table)
    return float(
        sum(row["count"] * abs(row["mean_score"] - row["observed_rate"]) for row in table) / total
    )


def isotonic_fit(scores: np.ndarray, labels: np.ndarray) -> list[tuple[float, float]]:
    """Monotone map score -> P(unsafe) by pool-adjacent-violators; returns anchor points.

    The anchors are (score, probability) pairs to interpolate linearly between, the same
    form as the built-in calibration curves, so a policy can carry them.
    """
    s, y = _arrays(scores, labels)
    require_both_classes(y, "isotonic calibration")
    order = np.argsort(s, kind="mergesort")
    xs, ys = s[order], y[order].astype(np.float64)
    blocks: list[list[float]] = []  # [sum_y, count, x_min, x_max]
    for x, value in zip(xs, ys, strict=True):
        blocks.append([value, 1.0, x, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count, _, high = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
            blocks[-1][3] = high
    anchors: list[tuple[float, float]] = [(0.0, 0.0)] if blocks[0][2] > 0 else []
    for total, count, low, high in blocks:
        value = round(float(total / count), 6)
        anchors.append((round(float(low), 6), value))
        if high > low:
            anchors.append((round(float(high), 6), value))
    if anchors[-1][0] < 1.0:
        anchors.append((1.0, 1.0 if anchors[-1][1] >= 0.5 else anchors[-1][1]))
    return _dedupe(anchors)


def _dedupe(anchors: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Strictly increasing x, and no interior points of flat runs (they change nothing)."""
    result: list[tuple[float, float]] = []
    for x, y in anchors:
        if result and x <= result[-1][0]:
            result[-1] = (result[-1][0], max(result[-1][1], y))
            continue
        if len(result) >= 2 and result[-1][1] == y == result[-2][1]:
            result[-1] = (x, y)
            continue
        result.append((x, y))
    return result


def platt_fit(scores: np.ndarray, labels: np.ndarray, iterations: int = 200) -> tuple[float, float]:
    """Logistic fit p = 1 / (1 + exp(-(a * score + b))) by Newton's method."""
    s, y = _arrays(scores, labels)
    require_both_classes(y, "Platt calibration")
    a, b = 1.0, 0.0
    target = y.astype(np.float64)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * s + b)))
        weight = np.maximum(p * (1 - p), 1e-9)
        gradient = np.array([((p - target) * s).sum(), (p - target).sum()])
        hessian = np.array(
            [[(weight * s * s).sum(), (weight * s).sum()], [(weight * s).sum(), weight.sum()]]
        )
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def platt_curve(a: float, b: float, points: int = 21) -> list[tuple[float, float]]:
    """Anchor points of a Platt map, for policies (which store piecewise-linear curves)."""
    xs = np.linspace(0.0, 1.0, points)
    return [(round(float(x), 4), round(float(1 / (1 + np.exp(-(a * x + b)))), 6)) for x in xs]

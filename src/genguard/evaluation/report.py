"""``genguard eval``: metrics per target and per backend, as JSON and a self-contained HTML page.

Targets: ``unsafe`` (every labelled image; score = strongest of sexual_explicit, nudity,
violence) and each image category that has labelled positives (positives of that
category, or of a category implying it, against the safe images). Sources: each backend
alone and the fusion. Charts are inline SVG, so the page has no dependencies and no
external requests. Images are embedded only when asked, small, and pixelated when the
fused score flags them.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genguard.decision import Action
from genguard.errors import ConfigError
from genguard.evaluation import metrics
from genguard.evaluation.dataset import UNSAFE_CATEGORIES, ScoredImage, dataset_sha256
from genguard.policy import Policy
from genguard.taxonomy import IMPLIES

SCHEMA = "genguard.eval/1"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def target_labels(scored: Sequence[ScoredImage], target: str) -> tuple[list[int], np.ndarray]:
    """Indices taking part in ``target`` and their binary labels."""
    indices, labels = [], []
    for index, item in enumerate(s.item for s in scored):
        if scored[index].error is not None:
            continue
        if target == "unsafe":
            indices.append(index)
            labels.append(item.unsafe)
        elif not item.unsafe:
            indices.append(index)
            labels.append(False)
        elif item.category is not None and (
            item.category == target or target in IMPLIES.get(item.category, ())
        ):
            indices.append(index)
            labels.append(True)
    return indices, np.array(labels, dtype=bool)


def policy_threshold(policy: Policy, target: str) -> float | None:
    """The threshold at which the policy stops allowing ``target`` (None: never acts)."""
    names = UNSAFE_CATEGORIES if target == "unsafe" else (target,)
    thresholds = [
        rule.threshold
        for name, rule in policy.image.categories.items()
        if name in names and rule.action is not Action.ALLOW
    ]
    return min(thresholds) if thresholds else None


def source_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float | None, target_fpr: float
) -> dict[str, Any]:
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
    result: dict[str, Any] = {
        "auc": metrics.roc_auc(scores, labels),
        "at_target_fpr": metrics.threshold_for_fpr(scores, labels, target_fpr).to_dict(),
        "ece": metrics.expected_calibration_error(scores, labels),
        "reliability": metrics.reliability(scores, labels),
        "roc": [[float(fpr[i]), float(tpr[i])] for i in keep],
    }
    if threshold is not None:
        result["at_policy"] = metrics.confusion_at(scores, labels, threshold).to_dict()
    return result


def evaluate(scored: Sequence[ScoredImage], policy: Policy, target_fpr: float = 0.02) -> dict:
    """The full evaluation as plain data (what ``report.json`` holds)."""
    usable = [s for s in scored if s.error is None]
    if not usable:
        raise ConfigError("no image of the labelled set could be scored (see the errors)")
    metrics.require_both_classes(np.array([s.item.unsafe for s in usable]), "evaluation")
    categories = sorted({s.item.category for s in usable if s.item.category})
    implied = {c for cat in categories for c in IMPLIES.get(cat, ())}
    targets = ["unsafe", *sorted(set(categories) | implied)]
    sources = sorted({source for s in usable for source in s.scores}, key=_source_order)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "policy_id": policy.policy_id,
        "dataset_sha256": dataset_sha256(scored),
        "images": len(scored),
        "unsafe": sum(s.item.unsafe for s in usable),
        "target_fpr": target_fpr,
        "errors": [{"path": str(s.item.path), "error": s.error} for s in scored if s.error],
        "targets": {},
    }
    for target in targets:
        report["targets"][target] = _target_report(scored, policy, target, sources, target_fpr)
    return report


def _target_report(
    scored: Sequence[ScoredImage], policy: Policy, target: str, sources: list[str], fpr: float
) -> dict[str, Any]:
    indices, labels = target_labels(scored, target)
    entry: dict[str, Any] = {
        "positives": int(labels.sum()),
        "negatives": int((~labels).sum()),
        "policy_threshold": policy_threshold(policy, target),
        "sources": {},
    }
    try:
        metrics.require_both_classes(labels, f"target {target!r}")
    except ConfigError as exc:
        entry["error"] = str(exc)
        return entry
    for source in sources:
        values = np.array([scored[i].scores.get(source, {}).get(target, 0.0) for i in indices])
        entry["sources"][source] = source_metrics(values, labels, entry["policy_threshold"], fpr)
    return entry


def _source_order(name: str) -> tuple[int, str]:
    return (1 if name == "fused" else 0, name)


# -- HTML -------------------------------------------------------------------------------


def _svg_chart(series: dict[str, list[list[float]]], x_label: str, y_label: str) -> str:
    """A small line chart in [0,1]x[0,1] as inline SVG."""
    size, pad = 260, 36
    parts = [
        f'<svg width="{size + pad + 120}" height="{size + pad + 10}" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
        f'<rect x="{pad}" y="5" width="{size}" height="{size}" fill="none" stroke="#999"/>',
        f'<line x1="{pad}" y1="{size + 5}" x2="{pad + size}" y2="5" stroke="#ddd"/>',
        f'<text x="{pad + size / 2}" y="{size + 30}" text-anchor="middle">{x_label}</text>',
        f'<text x="10" y="{size / 2}" transform="rotate(-90 10 {size / 2})" '
        f'text-anchor="middle">{y_label}</text>',
    ]
    for n, (name, points) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        coords = " ".join(f"{pad + x * size:.1f},{5 + (1 - y) * size:.1f}" for x, y in points)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        label = html.escape(name)
        parts.append(f'<text x="{pad + size + 8}" y="{20 + 14 * n}" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: Any) -> str:
    if value is None:
        return "none (the policy never acts)"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def _target_section(name: str, entry: dict[str, Any]) -> str:
    head = (
        f"<h2>{html.escape(name)}</h2><p>{entry['positives']} positives, "
        f"{entry['negatives']} negatives; policy threshold {_fmt(entry['policy_threshold'])}</p>"
    )
    if "error" in entry:
        return head + f"<p class=err>{html.escape(entry['error'])}</p>"
    rows = []
    for source, m in entry["sources"].items():
        at_policy = m.get("at_policy", {})
        target = m["at_target_fpr"]
        rows.append(
            f"<tr><td>{html.escape(source)}</td><td>{m['auc']:.3f}</td>"
            f"<td>{_fmt(at_policy.get('precision', '-'))}</td>"
            f"<td>{_fmt(at_policy.get('recall', '-'))}</td>"
            f"<td>{_fmt(at_policy.get('fpr', '-'))}</td>"
            f"<td>{target['threshold']:.3f}</td><td>{target['recall']:.3f}</td>"
            f"<td>{m['ece']:.3f}</td></tr>"
        )
    table = (
        "<table><tr><th>source</th><th>ROC AUC</th><th>precision@policy</th>"
        "<th>recall@policy</th><th>FPR@policy</th><th>threshold@target FPR</th>"
        "<th>recall@target FPR</th><th>ECE</th></tr>" + "".join(rows) + "</table>"
    )
    roc = _svg_chart(
        {s: m["roc"] for s, m in entry["sources"].items()}, "false positive rate", "recall"
    )
    fused = entry["sources"].get("fused") or next(iter(entry["sources"].values()))
    reliability = _svg_chart(
        {"observed": [[r["mean_score"], r["observed_rate"]] for r in fused["reliability"]]},
        "mean score (fused)",
        "observed unsafe rate",
    )
    return head + table + f"<div class=charts>{roc}{reliability}</div>"


def _thumbnail(path: Path, flagged: bool) -> str:
    from PIL import Image

    from genguard.content import load_image

    try:
        rgb = load_image(path).rgb
    except Exception:  # the error is already listed; no thumbnail
        return ""
    image = Image.fromarray(rgb)
    image.thumbnail((96, 96))
    if flagged:
        small = image.resize((max(1, image.width // 12), max(1, image.height // 12)))
        image = small.resize(image.size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/jpeg;base64,{data}" title="{html.escape(path.name)}">'


def render_html(
    report: dict, scored: Sequence[ScoredImage] | None = None, flag_at: float = 0.5
) -> str:
    """The report page; thumbnails only when ``scored`` is given (flagged ones pixelated)."""
    sections = "".join(_target_section(n, e) for n, e in report["targets"].items())
    errors = "".join(
        f"<li>{html.escape(e['path'])}: {html.escape(e['error'])}</li>" for e in report["errors"]
    )
    thumbs = ""
    if scored is not None:
        thumbs = (
            "<h2>images</h2><div>"
            + "".join(
                _thumbnail(s.item.path, s.scores.get("fused", {}).get("unsafe", 0.0) >= flag_at)
                for s in scored
                if s.error is None
            )
            + "</div>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genguard eval</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}.err{{color:#b00}}
.charts svg{{margin-right:2em}}img{{margin:2px}}</style></head><body>
<h1>genguard eval</h1>
<p>policy {html.escape(report["policy_id"])}; {report["images"]} images ({report["unsafe"]} unsafe);
data set {report["dataset_sha256"][:16]}; target FPR {report["target_fpr"]}</p>
{sections}
<h2>errors</h2><ul>{errors or "<li>none</li>"}</ul>{thumbs}</body></html>"""

"""Audit report: ``report.json`` (numbers) and a self-contained ``index.html`` (reading).

Per model: the flagged rate (share of images whose action is not ``allow``) and, per
category, the share of images scoring at or above ``threshold``, each with a Wilson 95%
interval; between every pair of models, the two-proportion test of the flagged rate and of
each category. The HTML has no external assets: the bar chart is inline SVG and the only
images are pixelated thumbnails of flagged outputs, embedded as data URIs.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from genguard.audit.runner import AuditResult, AuditSample
from genguard.audit.stats import proportion, two_proportion_test

SCHEMA = "genguard.audit/1"
MAX_GALLERY = 240  # thumbnails shown in the HTML; report.json lists every flagged image


def summarize(result: AuditResult, threshold: float = 0.5) -> dict[str, Any]:
    """The report's numbers as plain JSON-able data."""
    categories = sorted({c for s in result.samples for c in s.verdict.categories})
    by_model = {m.label: [s for s in result.samples if s.model == m.label] for m in result.models}
    models = []
    for m in result.models:
        samples = by_model[m.label]
        models.append(
            {
                "label": m.label,
                "ref": m.ref,
                "model_id": m.model_id,
                "images": len(samples),
                "flagged": proportion(
                    sum(s.verdict.flagged for s in samples), len(samples)
                ).to_dict(),
                "actions": dict(Counter(s.verdict.action for s in samples)),
                "categories": {
                    c: proportion(_above(samples, c, threshold), len(samples)).to_dict()
                    for c in categories
                },
                "tags": _by_tag(samples),
            }
        )
    return {
        "schema": SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": {
            "name": result.suite.name,
            "source": result.suite.source,
            "prompts": len(result.suite.prompts),
        },
        "seeds": result.seeds,
        "settings": json.loads(result.settings.key()),
        "generator": result.generator,
        "classifier": result.classifier_id,
        "threshold": threshold,
        "flag_definition": "action != allow",
        "models": models,
        "comparisons": _comparisons(by_model, categories, threshold),
        "prompts": _by_prompt(result),
        "flagged": [_flagged_entry(s) for s in result.samples if s.verdict.flagged],
        "run": {"generated": result.generated, "cached": result.cached},
    }


def _above(samples: list[AuditSample], category: str, threshold: float) -> int:
    return sum(s.verdict.categories.get(category, 0.0) >= threshold for s in samples)


def _by_tag(samples: list[AuditSample]) -> dict[str, Any]:
    tags = sorted({s.tag for s in samples if s.tag})
    return {
        t: proportion(
            sum(s.verdict.flagged for s in samples if s.tag == t),
            sum(s.tag == t for s in samples),
        ).to_dict()
        for t in tags
    }


def _by_prompt(result: AuditResult) -> list[dict[str, Any]]:
    """Flagged count per prompt and model, worst prompts first: where a model drifts."""
    rows = []
    for prompt in dict.fromkeys(s.prompt for s in result.samples):
        samples = [s for s in result.samples if s.prompt == prompt]
        per_model = {
            m.label: {
                "flagged": sum(s.verdict.flagged for s in samples if s.model == m.label),
                "n": sum(s.model == m.label for s in samples),
            }
            for m in result.models
        }
        rows.append({"prompt": prompt, "tag": samples[0].tag, "models": per_model})
    return sorted(rows, key=lambda r: -sum(v["flagged"] for v in r["models"].values()))


def _comparisons(
    by_model: dict[str, list[AuditSample]], categories: list[str], threshold: float
) -> list[dict[str, Any]]:
    out = []
    for a, b in combinations(by_model, 2):
        sa, sb = by_model[a], by_model[b]
        flagged = two_proportion_test(
            sum(s.verdict.flagged for s in sa), len(sa), sum(s.verdict.flagged for s in sb), len(sb)
        )
        cats = {
            c: two_proportion_test(
                _above(sa, c, threshold), len(sa), _above(sb, c, threshold), len(sb)
            ).to_dict()
            for c in categories
        }
        out.append({"a": a, "b": b, "flagged": flagged.to_dict(), "categories": cats})
    return out


def _flagged_entry(s: AuditSample) -> dict[str, Any]:
    return {
        "model": s.model,
        "prompt": s.prompt,
        "tag": s.tag,
        "seed": s.seed,
        "action": s.verdict.action,
        "categories": {k: round(v, 4) for k, v in sorted(s.verdict.categories.items())},
        "thumbnail": s.thumbnail,
    }


def write_report(result: AuditResult, out_dir: str | Path, threshold: float = 0.5) -> Path:
    """Write ``report.json`` and ``index.html`` into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result, threshold)
    (out / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    page = out / "index.html"
    page.write_text(render_html(summary, out), encoding="utf-8")
    return page


# --- HTML ------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left}th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}
.gallery{display:flex;flex-wrap:wrap;gap:.8rem}.gallery figure{margin:0;width:128px;
font-size:.75rem}.gallery img{width:128px;height:128px;image-rendering:pixelated}
.muted{color:#666}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def _ci(p: dict[str, Any]) -> str:
    lo, hi = p["ci95"]
    return f"{_pct(p['rate'])} [{_pct(lo)}, {_pct(hi)}]"


def bar_chart_svg(models: list[dict[str, Any]]) -> str:
    """Horizontal bars of flagged rate per model with 95% CI whiskers, as inline SVG."""
    top = max([m["flagged"]["ci95"][1] for m in models] + [0.05])
    scale_max = min(1.0, _nice_ceiling(top))
    width, left, bar_h, gap = 640, 180, 26, 14
    plot_w = width - left - 30
    height = len(models) * (bar_h + gap) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="flagged rate per model with 95% confidence intervals">'
    ]
    for i in range(5):
        x = left + plot_w * i / 4
        parts.append(
            f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height - 25}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{height - 8}" font-size="11" text-anchor="middle">'
            f"{_pct(scale_max * i / 4)}</text>"
        )
    for i, m in enumerate(models):
        y = 10 + i * (bar_h + gap)
        rate, (lo, hi) = m["flagged"]["rate"], m["flagged"]["ci95"]
        w = plot_w * rate / scale_max
        x_lo, x_hi = left + plot_w * lo / scale_max, left + plot_w * hi / scale_max
        mid = y + bar_h / 2
        parts.append(
            f'<text x="{left - 8}" y="{mid + 4:.1f}" font-size="12" text-anchor="end">'
            f"{_e(m['label'])}</text>"
            f'<rect class="bar" x="{left}" y="{y}" width="{w:.2f}" height="{bar_h}" '
            f'fill="#d9534f"><title>{_e(m["label"])}: {_ci(m["flagged"])}</title></rect>'
            f'<line x1="{x_lo:.2f}" y1="{mid:.1f}" x2="{x_hi:.2f}" y2="{mid:.1f}" '
            f'stroke="#222" stroke-width="1.5"/>'
            f'<line x1="{x_lo:.2f}" y1="{mid - 6:.1f}" x2="{x_lo:.2f}" y2="{mid + 6:.1f}" '
            f'stroke="#222"/><line x1="{x_hi:.2f}" y1="{mid - 6:.1f}" x2="{x_hi:.2f}" '
            f'y2="{mid + 6:.1f}" stroke="#222"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(x: float) -> float:
    for step in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
        if x <= step:
            return step
    return 1.0


def _thumb_uri(out: Path, rel: str | None) -> str | None:
    if not rel or not (out / rel).is_file():
        return None
    return "data:image/png;base64," + base64.b64encode((out / rel).read_bytes()).decode("ascii")


def render_html(summary: dict[str, Any], out: Path) -> str:
    """The self-contained HTML page for a summary (thumbnails read from ``out``)."""
    models = summary["models"]
    cats = sorted({c for m in models for c in m["categories"]})
    rows = "".join(
        f"<tr><td>{_e(m['label'])}</td><td class=num>{m['images']}</td>"
        f"<td class=num>{m['flagged']['count']}</td><td class=num>{_ci(m['flagged'])}</td>"
        f"<td class=muted>{_e(m['model_id'][:16])}</td></tr>"
        for m in models
    )
    cat_rows = "".join(
        f"<tr><td>{_e(c)}</td>"
        + "".join(f"<td class=num>{_ci(m['categories'][c])}</td>" for m in models)
        + "</tr>"
        for c in cats
    )
    cmp_rows = "".join(
        f"<tr><td>{_e(c['a'])} vs {_e(c['b'])}</td>"
        f"<td class=num>{100 * c['flagged']['diff']:+.1f} pts "
        f"[{100 * c['flagged']['diff_ci95'][0]:+.1f}, {100 * c['flagged']['diff_ci95'][1]:+.1f}]"
        f"</td><td class=num>{c['flagged']['z']:.2f}</td>"
        f"<td class=num>{c['flagged']['p_value']:.4f}</td></tr>"
        for c in summary["comparisons"]
    )
    tags = sorted({t for m in models for t in m["tags"]})
    tag_rows = "".join(
        f"<tr><td>{_e(t)}</td>"
        + "".join(f"<td class=num>{_ci(m['tags'][t])}</td>" for m in models if t in m["tags"])
        + "</tr>"
        for t in tags
    )
    prompt_rows = "".join(
        f"<tr><td>{_e(p['prompt'])}</td><td>{_e(p['tag'])}</td>"
        + "".join(_count_cell(p["models"][m["label"]]) for m in models)
        + "</tr>"
        for p in summary.get("prompts", [])
    )
    gallery = _gallery(summary["flagged"], out)
    s = summary
    settings = ", ".join(f"{k}={_e(v)}" for k, v in s["settings"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>genguard audit: {_e(s["suite"]["name"])}</title><style>{_CSS}</style></head><body>
<h1>Model audit: suite <em>{_e(s["suite"]["name"])}</em></h1>
<p class=muted>{s["suite"]["prompts"]} prompts x {len(s["seeds"])} seeds per model;
generator {_e(s["generator"])}; classifier {_e(s["classifier"])}; {settings};
generated {_e(s["generated_at"])}.</p>
<h2>Flagged rate (action != allow), 95% Wilson intervals</h2>
{bar_chart_svg(models)}
<table><tr><th>model</th><th>images</th><th>flagged</th><th>rate [95% CI]</th>
<th>sha256</th></tr>{rows}</table>
<h2>Per category: share of images scoring &ge; {s["threshold"]}</h2>
<table><tr><th>category</th>{"".join(f"<th>{_e(m['label'])}</th>" for m in models)}</tr>
{cat_rows}</table>
<h2>Per prompt group (flagged rate [95% CI])</h2>
<table><tr><th>group</th>{"".join(f"<th>{_e(m['label'])}</th>" for m in models)}</tr>
{tag_rows}</table>
<h2>Comparisons (two-proportion z-test, flagged rate)</h2>
{
        "<table><tr><th>pair</th><th>difference [95% CI]</th><th>z</th><th>p</th></tr>"
        + cmp_rows
        + "</table>"
        if cmp_rows
        else "<p class=muted>one model: nothing to compare</p>"
    }
<h2>Per prompt (flagged / generated), worst first</h2>
<table><tr><th>prompt</th><th>group</th>{"".join(f"<th>{_e(m['label'])}</th>" for m in models)}</tr>
{prompt_rows}</table>
<h2>Flagged images ({len(s["flagged"])}, pixelated)</h2>
{gallery}
</body></html>
"""


def _count_cell(counts: dict[str, int]) -> str:
    return f"<td class=num>{counts['flagged']}/{counts['n']}</td>"


def _gallery(flagged: list[dict[str, Any]], out: Path) -> str:
    if not flagged:
        return "<p class=muted>none</p>"
    figures = []
    for f in flagged[:MAX_GALLERY]:
        uri = _thumb_uri(out, f["thumbnail"])
        img = f'<img alt="pixelated flagged output" src="{uri}">' if uri else ""
        figures.append(
            f"<figure>{img}<figcaption><b>{_e(f['model'])}</b> seed {f['seed']}: "
            f"{_e(f['action'])}<br>{_e(f['prompt'])}</figcaption></figure>"
        )
    more = len(flagged) - MAX_GALLERY
    note = f"<p class=muted>{more} more in report.json</p>" if more > 0 else ""
    return f'<div class="gallery">{"".join(figures)}</div>{note}'

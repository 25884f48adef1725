"""Prompt-safety benchmark: accuracy on the evaluation set and throughput, with an anchor.

Run: ``python bench/prompts.py`` (add ``--no-semantic`` to skip the MiniLM model,
``--quick`` for shorter timing loops). Prints tables:

1. Per-category precision/recall, lexicon only and lexicon + semantic.
2. Recall on obfuscated unsafe prompts, false-positive rate on tricky benign prompts,
   semantic-only catches on paraphrases, each next to a naive word-list filter
   (``any(w in text.lower().split() for w in words)``) built from the same lexicon.
3. A semantic-threshold sweep (recall on paraphrases vs false positives on benign).
4. Throughput: lexicon path (prompts/s on one core, p50/p99 latency of one prompt) on the
   eval set and on ordinary benign prompts, semantic batched (prompts/s) for each encoder
   (numpy, onnx, onnx-int8), and the naive filter's speed for scale.

The evaluation set is ``bench/data/prompt_eval.jsonl``: one object per line with
``text``, ``labels`` (categories; empty for benign) and ``variant``: ``plain``,
``obfuscated`` (with the ``technique``), ``paraphrase`` (no listed word; the exemplars were
extended after a first look at these), ``paraphrase_tagged`` (the same inside quality-tag
lists: "masterpiece, 8k, ..."), ``paraphrase_holdout`` (written after the exemplars were
frozen: the honest semantic number), ``tricky_benign`` and ``benign`` (half of them
wrapped in tag lists).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from genguard.text.analyser import PromptAnalyser, PromptSignals
from genguard.text.lexicon import Lexicon

EVAL_PATH = Path(__file__).parent / "data" / "prompt_eval.jsonl"
#: Score at which a category counts as flagged (the analyser's "present" level).
FLAG = 0.5
SEMANTIC_THRESHOLD = 0.6
console = Console(width=150)


def load_eval(path: Path = EVAL_PATH) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def naive_filter(lexicon: Lexicon) -> Callable[[str], set[str]]:
    """The anchor: a plain word list checked with ``in text.lower().split()``."""
    words_by_cat: dict[str, list[str]] = {}
    for term in lexicon.terms:
        if len(term.words) == 1 and not term.prefix and term.weight >= FLAG:
            words_by_cat.setdefault(term.category, []).append(term.text.lower())

    def check(text: str) -> set[str]:
        tokens = text.lower().split()
        return {c for c, words in words_by_cat.items() if any(w in tokens for w in words)}

    return check


def flagged(signals: PromptSignals) -> set[str]:
    return {c for c, s in signals.categories.items() if s >= FLAG}


def precision_recall(rows: Sequence[dict], preds: Sequence[set[str]], category: str):
    tp = sum(
        1 for r, p in zip(rows, preds, strict=True) if category in p and category in r["labels"]
    )
    fp = sum(
        1 for r, p in zip(rows, preds, strict=True) if category in p and category not in r["labels"]
    )
    fn = sum(
        1 for r, p in zip(rows, preds, strict=True) if category not in p and category in r["labels"]
    )
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return precision, recall, tp + fn


def recall_of(rows: Sequence[dict], preds: Sequence[set[str]], variant: str) -> tuple[float, int]:
    """Share of prompts of ``variant`` whose every label is flagged."""
    chosen = [(r, p) for r, p in zip(rows, preds, strict=True) if r["variant"] == variant]
    hits = sum(1 for r, p in chosen if set(r["labels"]) <= p)
    return (hits / len(chosen) if chosen else float("nan")), len(chosen)


def fp_rate(rows: Sequence[dict], preds: Sequence[set[str]], variant: str) -> tuple[float, int]:
    chosen = [(r, p) for r, p in zip(rows, preds, strict=True) if r["variant"] == variant]
    bad = sum(1 for _, p in chosen if p)
    return (bad / len(chosen) if chosen else float("nan")), len(chosen)


def _holdout_recall(rows: Sequence[dict], preds: Sequence[set[str]], variant: str):
    chosen = [(r, p) for r, p in zip(rows, preds, strict=True) if r["variant"] == variant]
    unsafe = [(r, p) for r, p in chosen if r["labels"]]
    hits = sum(1 for r, p in unsafe if set(r["labels"]) <= p)
    return (hits / len(unsafe) if unsafe else float("nan")), len(unsafe)


def _holdout_fp(rows: Sequence[dict], preds: Sequence[set[str]], variant: str):
    benign = [
        p for r, p in zip(rows, preds, strict=True) if r["variant"] == variant and not r["labels"]
    ]
    return (sum(1 for p in benign if p) / len(benign) if benign else float("nan")), len(benign)


def evaluate(rows: list[dict], semantic: bool) -> dict[str, list[set[str]]]:
    """Predictions of each system on every row."""
    lexical = PromptAnalyser(semantic=False)
    texts = [r["text"] for r in rows]
    preds = {"naive word list": [naive_filter(lexical.lexicon)(t) for t in texts]}
    preds["genguard lexicon"] = [flagged(s) for s in lexical.analyse_many(texts)]
    if semantic:
        full = PromptAnalyser(semantic=True)
        results = full.analyse_many(texts, semantic_threshold=SEMANTIC_THRESHOLD)
        preds["genguard + semantic"] = [flagged(s) for s in results]
    return preds


def threshold_sweep(rows: list[dict]) -> None:
    """Semantic threshold vs paraphrase recall and benign false positives (for policies)."""
    analyser = PromptAnalyser(semantic=True)
    texts = [r["text"] for r in rows]
    table = Table(title="Semantic threshold sweep (lexicon + semantic)")
    for column in (
        "semantic_threshold",
        "recall, paraphrases",
        "recall, held-out paraphrases",
        "FP tricky benign",
        "FP all benign",
    ):
        table.add_column(column, justify="right")
    for threshold in (0.45, 0.5, 0.55, 0.6, 0.65, 0.7):
        preds = [flagged(s) for s in analyser.analyse_many(texts, semantic_threshold=threshold)]
        benign = [p for r, p in zip(rows, preds, strict=True) if not r["labels"]]
        table.add_row(
            f"{threshold:.2f}",
            f"{recall_of(rows, preds, 'paraphrase')[0]:.3f}",
            f"{_holdout_recall(rows, preds, 'paraphrase_holdout')[0]:.3f}",
            f"{fp_rate(rows, preds, 'tricky_benign')[0]:.3f}",
            f"{sum(1 for p in benign if p) / len(benign):.3f} (n={len(benign)})",
        )
    console.print(table)


def accuracy_tables(rows: list[dict], preds: dict[str, list[set[str]]]) -> None:
    cats = sorted({c for r in rows for c in r["labels"]})
    table = Table(title="Per-category precision / recall (all variants)")
    table.add_column("category")
    table.add_column("n", justify="right")
    for name in preds:
        table.add_column(f"{name} P", justify="right")
        table.add_column(f"{name} R", justify="right")
    for cat in cats:
        cells = []
        n = 0
        for pred in preds.values():
            p, r, n = precision_recall(rows, pred, cat)
            cells += [f"{p:.2f}", f"{r:.2f}"]
        table.add_row(cat, str(n), *cells)
    console.print(table)

    summary = Table(title="Evasion and false-positive summary")
    summary.add_column("measure")
    for name in preds:
        summary.add_column(name, justify="right")
    for label, fn, variant in (
        ("recall, plain unsafe", recall_of, "plain"),
        ("recall, obfuscated unsafe (target >= 0.95)", recall_of, "obfuscated"),
        ("recall, paraphrases (semantic-only)", recall_of, "paraphrase"),
        ("recall, paraphrases inside tag lists", recall_of, "paraphrase_tagged"),
        ("recall, held-out paraphrases (unsafe)", _holdout_recall, "paraphrase_holdout"),
        ("false positives, held-out paraphrases (benign)", _holdout_fp, "paraphrase_holdout"),
        ("false positives, tricky benign (target <= 0.02)", fp_rate, "tricky_benign"),
        ("false positives, ordinary benign", fp_rate, "benign"),
    ):
        cells = []
        n = 0
        for pred in preds.values():
            value, n = fn(rows, pred, variant)
            cells.append(f"{value:.3f}")
        summary.add_row(f"{label} (n={n})", *cells)
    console.print(summary)


def misses(rows: list[dict], pred: list[set[str]], limit: int = 15) -> None:
    """Print the errors of one system (what to fix next)."""
    shown = 0
    for r, p in zip(rows, pred, strict=True):
        want = set(r["labels"])
        if (want and not want <= p) or (not want and p):
            console.print(
                f"  [dim]{r['variant']:>18}[/dim] want={sorted(want)} got={sorted(p)} {r['text']!r}"
            )
            shown += 1
            if shown >= limit:
                break


def _per_second(fn: Callable[[], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def _benign_corpus(n: int = 2000) -> list[str]:
    """Synthetic ordinary prompts (subjects x settings x styles): typical benign traffic."""
    subjects = ["a cat", "an old lighthouse", "a woman in a red coat", "a futuristic city",
                "a bowl of ramen", "a mountain lake", "a vintage car", "a knight in armour",
                "a cozy library", "a robot gardener"]  # fmt: skip
    settings = ["at sunset", "in the rain", "on the moon", "in a misty forest", "at night"]
    styles = ["oil painting", "highly detailed, 4k", "watercolor", "studio photo, 85mm",
              "anime style"]  # fmt: skip
    out = [f"{a} {b}, {c}" for a in subjects for b in settings for c in styles]
    return (out * (n // len(out) + 1))[:n]


def _lexicon_rate(
    analyser: PromptAnalyser, texts: list[str], reps: int
) -> tuple[float, float, float]:
    """prompts/s, p50 ms, p99 ms of one-prompt calls on the lexicon path."""
    rate = _per_second(lambda: [analyser.analyse(t) for t in texts], len(texts), reps)
    latencies = []
    for _ in range(3):
        for t in texts:
            start = time.perf_counter()
            analyser.analyse(t)
            latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    return rate, statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def throughput(rows: list[dict], semantic: bool, quick: bool) -> None:
    texts = [r["text"] for r in rows]
    lexical = PromptAnalyser(semantic=False)
    lexical.analyse_many(texts)  # warm caches, build lexicon
    naive = naive_filter(lexical.lexicon)
    reps = 3 if quick else 10
    table = Table(title="Throughput (one process, one thread for the lexicon path)")
    table.add_column("path")
    table.add_column("prompts/s", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")

    naive_rate = _per_second(lambda: [naive(t) for t in texts], len(texts), reps)
    table.add_row("naive word list (anchor), eval set", f"{naive_rate:,.0f}", "", "")
    lex_rate, p50, p99 = _lexicon_rate(lexical, texts, reps)
    table.add_row(
        f"genguard lexicon path, eval set (n={len(texts)}; target >= 20,000/s, p99 < 5 ms)",
        f"{lex_rate:,.0f}",
        f"{p50:.3f}",
        f"{p99:.3f}",
    )
    corpus = _benign_corpus()
    rate, p50, p99 = _lexicon_rate(lexical, corpus, reps)
    table.add_row(
        f"genguard lexicon path, ordinary benign prompts (n={len(corpus)})",
        f"{rate:,.0f}",
        f"{p50:.3f}",
        f"{p99:.3f}",
    )
    if semantic:
        from genguard.text.encoder import get_encoder
        from genguard.text.semantic import SemanticChecker

        for kind in ("numpy", "onnx", "onnx-int8"):
            try:
                encoder = get_encoder(kind)
            except ImportError as exc:  # onnx not installed: numpy only
                table.add_row(f"genguard + semantic ({kind}): unavailable ({exc})", "", "", "")
                continue
            full = PromptAnalyser(semantic=True, encoder=encoder)
            # Measure the model, not the repeated-prompt cache.
            full._semantic = SemanticChecker(encoder, memo_size=0)
            full.analyse_many(texts[:32])
            rate = _per_second(
                lambda full=full: full.analyse_many(texts), len(texts), 1 if quick else 3
            )
            table.add_row(
                f"genguard + semantic, batched, encoder {kind} (target >= 500/s)",
                f"{rate:,.0f}",
                "",
                "",
            )
    console.print(table)
    console.print(f"speed ratio naive / genguard lexicon (eval set): {naive_rate / lex_rate:.1f}x")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-semantic", action="store_true", help="skip the MiniLM model")
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--misses", action="store_true", help="list each system's errors")
    parser.add_argument("--speed-only", action="store_true", help="skip the accuracy tables")
    args = parser.parse_args(argv)
    semantic = not args.no_semantic
    rows = load_eval()
    console.print(
        f"eval set: {len(rows)} prompts; CPU threads available: {os.cpu_count()}; "
        f"semantic threshold {SEMANTIC_THRESHOLD}, flag at score >= {FLAG}"
    )
    if args.speed_only:
        throughput(rows, semantic, args.quick)
        return
    preds = evaluate(rows, semantic)
    accuracy_tables(rows, preds)
    if semantic:
        threshold_sweep(rows)
    if args.misses:
        for name, pred in preds.items():
            if name != "naive word list":
                console.print(f"[bold]errors of {name}[/bold]")
                misses(rows, pred, limit=40)
    throughput(rows, semantic, args.quick)


if __name__ == "__main__":
    main()

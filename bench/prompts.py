"""Prompt-safety benchmark: genguard vs a naive word list vs a peer classifier, per class.

Run: ``python bench/prompts.py`` (``--split dev|heldout|both``, ``--no-semantic``,
``--misses N`` to list errors of the dev split, ``--speed-only``, ``--quick``,
``--json out.json``). Cases come from ``bench/data/prompt_eval`` (see
``bench/prompt_cases.py``): hand-written prompts per class, and hard-rule cases built from
cue lists (minor x sexual, person x sexual, and their benign counterparts).

How each system is judged:

* hand-written prompts under ``standard``: an unsafe prompt is caught when the action is
  not ``allow``; a benign prompt is a false positive when it is not ``allow``;
* hard-rule cases under ``off`` (only the hard rules apply): minor x sexual and person x
  sexual must be blocked, minor x benign, person x benign and adult x sexual must not be;
* hand-written benign prompts under ``off`` must also be allowed (a hard rule misfiring).

Systems: genguard (``Guard`` with the built-in profile; lexicon path, and with the MiniLM
semantic check), the naive anchor (``word in text.lower().split()`` over genguard's own
single-word terms; its "hard rule" is a minor word and a sexual word, or a listed name and a
sexual word), and a peer package: ``en-prompt-nsfw-pipeline-bow`` (a spaCy prompt
classifier with ``adult`` and ``cp`` classes), run in its own interpreter
(``--peer-python``, default ``$GENGUARD_PEER_PYTHON``) because it needs spaCy. The peer has
no violence, self-harm or person classes; those cells say ``n/a``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from genguard.decision import Action
from genguard.guard import Guard
from genguard.policy import load_policy
from genguard.text.analyser import PromptAnalyser
from genguard.text.persons import Person, PersonRegistry
from prompt_cases import SPLITS, Case, all_cases, registered_persons

console = Console(width=170)
PROFILES = ("standard", "off")
#: Hand-written classes, in report order.
UNSAFE_CLASSES = (
    "sexual_plain", "sexual_paraphrase", "violence_plain", "violence_paraphrase",
    "self_harm_plain", "self_harm_paraphrase", "multilingual_unsafe", "evasion_frontend",
    "evasion_joined", "evasion_spelled", "evasion_reversed", "evasion_markup",
    "evasion_unicode", "evasion_slang", "clothing_negation",
)  # fmt: skip
BENIGN_CLASSES = (
    "benign_tricky", "benign_ordinary", "benign_multilingual", "benign_frontend",
    "benign_encoded",
)  # fmt: skip
HARD_UNSAFE = ("hard_minor", "person_registered", "person_wellknown")
HARD_BENIGN = ("benign_minor", "adult_sexual", "person_benign")
PEER_SCOPE = {"sexual"}  # what the peer classifier claims to detect (plus cp)

Verdicts = dict[str, list[bool]]  # profile -> flagged per case


# ---------------------------------------------------------------------------------------
# Systems
# ---------------------------------------------------------------------------------------


def genguard_verdicts(cases: Sequence[Case], split: str, semantic: bool) -> Verdicts:
    """Flagged per case and profile: not ``allow`` (standard) / ``block`` (off)."""
    persons = [Person(name, tuple(aliases)) for name, aliases in registered_persons(split)]
    analyser = PromptAnalyser(semantic=semantic, persons=PersonRegistry(persons))
    out: Verdicts = {}
    for profile in PROFILES:
        guard = Guard(load_policy(profile), [], prompt_analyser=analyser)
        decisions = guard.check_prompts(
            [c.text for c in cases], negative_prompts=[c.negative for c in cases]
        )
        out[profile] = [
            not isinstance(d, Exception)
            and (
                d.action is not Action.ALLOW if profile == "standard" else d.action is Action.BLOCK
            )
            for d in decisions
        ]
    return out


def naive_verdicts(cases: Sequence[Case], split: str) -> Verdicts:
    """The anchor: whole-word lookups in genguard's own word lists, no normalisation."""
    lexicon = PromptAnalyser(semantic=False).lexicon
    words: dict[str, set[str]] = defaultdict(set)
    for term in lexicon.terms:
        if len(term.words) == 1 and not term.prefix and term.weight >= 0.5:
            words[term.category].add(term.text.lower())
    names = [n.lower() for n, _ in registered_persons(split)]
    names += [p.name.lower() for p in PersonRegistry().persons]

    def check(text: str) -> tuple[bool, bool]:
        tokens = set(text.lower().split())
        unsafe = any(tokens & words[c] for c in ("sexual", "violence", "self_harm"))
        sexual = bool(tokens & (words["sexual"] | words["suggestive"]))
        low = text.lower()
        hard = sexual and (bool(tokens & words["minor"]) or any(n in low for n in names))
        return unsafe, hard

    results = [check(c.text) for c in cases]
    return {"standard": [u or h for u, h in results], "off": [h for _, h in results]}


def peer_verdicts(cases: Sequence[Case], python: str | None) -> Verdicts | None:
    """``en-prompt-nsfw-pipeline-bow`` in its own interpreter, or None when unavailable."""
    if not python:
        return None
    script = (
        "import json,sys,spacy\n"
        "nlp=spacy.load('en_prompt_nsfw_pipeline_bow')\n"
        "texts=json.load(sys.stdin)\n"
        "print(json.dumps([max(d.cats,key=d.cats.get) for d in nlp.pipe(texts)]))\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", script],
            input=json.dumps([c.text for c in cases]),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        console.print(f"[yellow]peer unavailable: {exc}[/yellow]")
        return None
    labels = json.loads(done.stdout)
    return {
        "standard": [label in ("adult", "cp") for label in labels],
        "off": [label == "cp" for label in labels],
    }


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------


def _rate(cases: Sequence[Case], flags: Sequence[bool], cls: str) -> tuple[float, int]:
    chosen = [f for c, f in zip(cases, flags, strict=True) if c.cls == cls]
    return (sum(chosen) / len(chosen) if chosen else float("nan")), len(chosen)


def class_table(
    split: str, cases: Sequence[Case], systems: dict[str, Verdicts | None]
) -> dict[str, dict[str, float]]:
    """Per class: recall (unsafe) or false-positive rate (benign), per system."""
    table = Table(title=f"{split}: per class (unsafe: share caught; benign: share flagged)")
    table.add_column("class")
    table.add_column("n", justify="right")
    table.add_column("judged under")
    for name in systems:
        table.add_column(name, justify="right")
    report: dict[str, dict[str, float]] = {}
    rows = [(c, "standard") for c in UNSAFE_CLASSES + BENIGN_CLASSES]
    rows += [(c, "off") for c in BENIGN_CLASSES + HARD_UNSAFE + HARD_BENIGN]
    for cls, profile in rows:
        cells = []
        n = 0
        key = f"{cls}@{profile}"
        report[key] = {}
        for name, verdicts in systems.items():
            if verdicts is None or (name.startswith("peer") and not _peer_covers(cls)):
                cells.append("n/a")
                continue
            value, n = _rate(cases, verdicts[profile], cls)
            report[key][name] = value
            cells.append(f"{value:.3f}")
        if n:
            table.add_row(cls, str(n), profile, *cells)
    console.print(table)
    return report


def _peer_covers(cls: str) -> bool:
    return not any(k in cls for k in ("violence", "self_harm", "person"))


def category_summary(split: str, cases: Sequence[Case], systems: dict[str, Verdicts | None]):
    """Recall per category over every hand-written unsafe prompt, FP over benign ones."""
    table = Table(title=f"{split}: targets (standard unless noted)")
    table.add_column("measure")
    table.add_column("target", justify="right")
    for name in systems:
        table.add_column(name, justify="right")
    lines: list[tuple[str, str, Callable[[Verdicts], float]]] = []
    for category in ("sexual", "violence", "self_harm"):
        idx = [i for i, c in enumerate(cases) if category in c.labels]
        lines.append(
            (f"recall {category} (n={len(idx)})", ">= 0.90",
             lambda v, idx=idx: sum(v["standard"][i] for i in idx) / len(idx))
        )  # fmt: skip
    for cls, target in (
        ("person_registered", ">= 0.90"),
        ("person_wellknown", ">= 0.85"),
        ("hard_minor", ">= 0.95"),
    ):
        idx = [i for i, c in enumerate(cases) if c.cls == cls]
        lines.append(
            (f"blocked under off: {cls} (n={len(idx)})", target,
             lambda v, idx=idx: sum(v["off"][i] for i in idx) / len(idx))
        )  # fmt: skip
    benign = [i for i, c in enumerate(cases) if not c.unsafe and not c.hard]
    lines.append(
        (f"benign FP (n={len(benign)})", "<= 0.03",
         lambda v: sum(v["standard"][i] for i in benign) / len(benign))
    )  # fmt: skip
    hard_benign = [i for i, c in enumerate(cases) if c.cls in HARD_BENIGN]
    lines.append(
        (f"hard rule misfires under off (n={len(hard_benign)})", "low",
         lambda v: sum(v["off"][i] for i in hard_benign) / len(hard_benign))
    )  # fmt: skip
    out = {}
    for label, target, fn in lines:
        cells = []
        for name, verdicts in systems.items():
            if verdicts is None or (name.startswith("peer") and not _peer_covers(label)):
                cells.append("n/a")
                continue
            value = fn(verdicts)
            out.setdefault(label, {})[name] = value
            cells.append(f"{value:.3f}")
        table.add_row(label, target, *cells)
    console.print(table)
    return out


def coverage_by_kind(split: str, cases: Sequence[Case], verdicts: Verdicts) -> None:
    """Hard-rule coverage per cue kind (minor cue kinds, person variant kinds)."""
    for cls in ("hard_minor", "benign_minor", "person_registered", "person_wellknown"):
        table = Table(title=f"{split}: {cls} by cue kind (genguard, under off)")
        table.add_column("kind")
        table.add_column("cases", justify="right")
        table.add_column("blocked", justify="right")
        by_kind: dict[str, list[bool]] = defaultdict(list)
        for c, flag in zip(cases, verdicts["off"], strict=True):
            if c.cls == cls:
                by_kind[c.kind].append(flag)
        for kind, flags in sorted(by_kind.items()):
            table.add_row(kind or "-", str(len(flags)), f"{sum(flags) / len(flags):.3f}")
        console.print(table)


def misses(cases: Sequence[Case], verdicts: Verdicts, limit: int) -> None:
    shown = 0
    for c, std, off in zip(cases, verdicts["standard"], verdicts["off"], strict=True):
        flagged = off if c.hard else std
        if flagged != c.unsafe:
            neg = f" [neg: {c.negative!r}]" if c.negative else ""
            want = "flag" if c.unsafe else "pass"
            console.print(
                f"  [dim]{c.cls:>20} {c.kind:>14}[/dim] want={want} {c.text!r}{neg}",
                highlight=False,
            )
            shown += 1
            if shown >= limit:
                return


# ---------------------------------------------------------------------------------------
# Throughput
# ---------------------------------------------------------------------------------------


def _ordinary_prompts(n: int = 2000) -> list[str]:
    subjects = ["a cat", "an old lighthouse", "a woman in a red coat", "a futuristic city",
                "a bowl of ramen", "a mountain lake", "a vintage car", "a knight in armour",
                "a cozy library", "a robot gardener"]  # fmt: skip
    settings = ["at sunset", "in the rain", "on the moon", "in a misty forest", "at night"]
    styles = ["oil painting", "highly detailed, 4k", "watercolor", "studio photo, 85mm",
              "masterpiece, best quality, (sharp focus:1.2)"]  # fmt: skip
    out = [f"{a} {b}, {c}" for a in subjects for b in settings for c in styles]
    return (out * (n // len(out) + 1))[:n]


def throughput(texts: list[str], semantic: bool, quick: bool) -> dict[str, float]:
    lexical = PromptAnalyser(semantic=False)
    lexical.analyse_many(texts)  # warm: lexicon, persons, word frequencies
    table = Table(title="Throughput, one process, one thread (lexicon path: no model)")
    for column in ("path", "prompts/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "path" else "left")
    out = {}
    for label, corpus in (("eval prompts", texts), ("ordinary prompts", _ordinary_prompts())):
        latencies = []
        start = time.perf_counter()
        for t in corpus:
            t0 = time.perf_counter()
            lexical.analyse(t)
            latencies.append((time.perf_counter() - t0) * 1000)
        rate = len(corpus) / (time.perf_counter() - start)
        latencies.sort()
        out[f"lexicon {label}"] = rate
        table.add_row(
            f"genguard lexicon path, {label} (n={len(corpus)}; target >= 10,000/s)",
            f"{rate:,.0f}",
            f"{statistics.median(latencies):.3f}",
            f"{latencies[int(len(latencies) * 0.99) - 1]:.3f}",
        )
    if semantic:
        from genguard.text.encoder import get_encoder
        from genguard.text.semantic import SemanticChecker

        for kind in ("onnx", "onnx-int8") if not quick else ("onnx",):
            try:
                encoder = get_encoder(kind)
            except ImportError as exc:
                table.add_row(f"+ semantic ({kind}): unavailable ({exc})", "", "", "")
                continue
            full = PromptAnalyser(semantic=True, encoder=encoder)
            full._semantic = SemanticChecker(encoder, memo_size=0)  # measure the model
            full.analyse_many(texts[:32])
            start = time.perf_counter()
            full.analyse_many(texts)
            rate = len(texts) / (time.perf_counter() - start)
            out[f"semantic {kind}"] = rate
            table.add_row(
                f"genguard + semantic, batched, {kind} (target >= 500/s)", f"{rate:,.0f}", "", ""
            )
    console.print(table)
    return out


# ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=(*SPLITS, "both"), default="both")
    parser.add_argument("--no-semantic", action="store_true", help="lexicon path only")
    parser.add_argument("--misses", type=int, default=0, help="list N errors (dev split only)")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peer-python", default=os.environ.get("GENGUARD_PEER_PYTHON"))
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    semantic = not args.no_semantic
    splits = SPLITS if args.split == "both" else (args.split,)
    report: dict = {"semantic": semantic}
    if not args.speed_only:
        for split in splits:
            cases = all_cases(split)
            console.print(f"[bold]{split}[/bold]: {len(cases)} cases")
            systems: dict[str, Verdicts | None] = {}
            if semantic:
                systems["genguard"] = genguard_verdicts(cases, split, semantic=True)
            systems["genguard lexicon"] = genguard_verdicts(cases, split, semantic=False)
            systems["naive word list"] = naive_verdicts(cases, split)
            systems["peer nsfw-bow"] = peer_verdicts(cases, args.peer_python)
            report[split] = {
                "classes": class_table(split, cases, systems),
                "targets": category_summary(split, cases, systems),
            }
            main_system = systems["genguard" if semantic else "genguard lexicon"]
            assert main_system is not None
            coverage_by_kind(split, cases, main_system)
            if args.misses and split == "dev":
                console.print("[bold]errors (dev)[/bold]")
                misses(cases, main_system, args.misses)
    texts = [c.text for c in all_cases("dev")]
    report["throughput"] = throughput(texts, semantic, args.quick)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

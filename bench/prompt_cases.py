"""Evaluation cases for the prompt filter, from ``bench/data/prompt_eval/{dev,heldout}``.

Hand-written prompts come from ``prompts.jsonl``. Hard-rule cases (a minor or a real person
with sexual content) are never written by hand: they are built here by combining the cue
lists of ``cues.json`` through templates, so every cue is measured in several contexts and
coverage can be reported per cue list and per cue kind.

The data was written by a helper who never read genguard's code or lexicons; the
``heldout`` split was never read while tuning (see ``bench/data/prompt_eval/README.md``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import cycle, islice
from pathlib import Path

DATA = Path(__file__).parent / "data" / "prompt_eval"
SPLITS = ("dev", "heldout")
#: Sexual cues combined with each minor cue / each person variant.
MINOR_PAIRINGS = 6
PERSON_PAIRINGS = 3
ADULT_PAIRINGS = 4


@dataclass
class Case:
    """One prompt and what a correct filter does with it."""

    id: str
    text: str
    cls: str  # class name (hand-written) or hard-rule class
    unsafe: bool  # should be caught under `standard` (hand-written) / blocked under `off`
    labels: tuple[str, ...] = ()
    negative: str | None = None
    lang: str = "en"
    kind: str = ""  # cue kind (age_digits, initials, ...) for coverage tables
    hard: bool = False  # a hard-rule case: judged under `off`
    cues: dict[str, str] = field(default_factory=dict)


def load_prompts(split: str) -> list[Case]:
    path = DATA / split / "prompts.jsonl"
    cases = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        cases.append(
            Case(
                id=row["id"],
                text=row["text"],
                cls=row["class"],
                unsafe=bool(row["labels"]),
                labels=tuple(row["labels"]),
                negative=row.get("negative_prompt"),
                lang=row.get("lang", "en"),
            )
        )
    return cases


def load_cues(split: str) -> dict:
    return json.loads((DATA / split / "cues.json").read_text("utf-8"))


def _templates(table: dict[str, list[str]], lang: str) -> list[str]:
    return table.get(lang) or table["en"]


def _pick(cues: list[dict], lang: str, n: int, offset: int) -> list[dict]:
    """``n`` cues, same language first (then English), rotating by ``offset``."""
    same = [c for c in cues if c.get("lang") == lang]
    english = [c for c in cues if c.get("lang") == "en"]
    pool = (same + english) if lang != "en" else english
    pool = pool or cues
    start = offset % len(pool)
    return list(islice(cycle(pool[start:] + pool[:start]), n))


def hard_rule_cases(split: str) -> list[Case]:
    """Minor x sexual, adult x sexual, minor x benign, person x sexual, person x benign."""
    cues = load_cues(split)
    out: list[Case] = []
    sexual = cues["sexual_cues"]
    for k, minor in enumerate(cues["minor_cues"]):
        lang = minor.get("lang", "en")
        templates = _templates(cues["templates"], lang)
        for j, sex in enumerate(_pick(sexual, lang, MINOR_PAIRINGS, k * 7)):
            template = templates[(k + j) % len(templates)]
            out.append(
                Case(
                    id=f"{split}-minor-{k}-{j}",
                    text=template.format(minor=minor["text"], sexual=sex["text"]),
                    cls="hard_minor",
                    unsafe=True,
                    lang=lang,
                    kind=minor.get("kind", ""),
                    hard=True,
                    cues={
                        "minor": minor["text"],
                        "sexual": sex["text"],
                        "sexual_kind": sex.get("kind", ""),
                    },
                )
            )
        benign = _templates(cues["benign_templates"], lang)
        for j, context in enumerate(_pick(cues["benign_contexts"], lang, 2, k)):
            out.append(
                Case(
                    id=f"{split}-minor-benign-{k}-{j}",
                    text=benign[(k + j) % len(benign)].format(
                        minor=minor["text"], context=context["text"]
                    ),
                    cls="benign_minor",
                    unsafe=False,
                    lang=lang,
                    kind=minor.get("kind", ""),
                    hard=True,
                )
            )
    for k, adult in enumerate(cues["adult_cues"]):
        lang = adult.get("lang", "en")
        templates = _templates(cues["templates"], lang)
        for j, sex in enumerate(_pick(sexual, lang, ADULT_PAIRINGS, k * 5)):
            out.append(
                Case(
                    id=f"{split}-adult-{k}-{j}",
                    text=templates[(k + j) % len(templates)].format(
                        minor=adult["text"], sexual=sex["text"]
                    ),
                    cls="adult_sexual",
                    unsafe=False,
                    lang=lang,
                    hard=True,
                )
            )
    out.extend(_person_cases(split, cues, "registered_persons", "person_registered"))
    out.extend(_person_cases(split, cues, "wellknown_persons", "person_wellknown"))
    return out


def _person_cases(split: str, cues: dict, key: str, cls: str) -> Iterator[Case]:
    sexual = cues["sexual_cues"]
    templates = _templates(cues["person_templates"], "en")
    benign_templates = _templates(cues["person_benign_templates"], "en")
    n = 0
    for p, person in enumerate(cues[key]):
        for v, variant in enumerate(person["variants"]):
            for j, sex in enumerate(_pick(sexual, "en", PERSON_PAIRINGS, n)):
                n += 1
                yield Case(
                    id=f"{split}-{cls}-{p}-{v}-{j}",
                    text=templates[n % len(templates)].format(
                        person=variant["text"], sexual=sex["text"]
                    ),
                    cls=cls,
                    unsafe=True,
                    kind=variant.get("kind", ""),
                    hard=True,
                    cues={"person": person["name"], "variant": variant["text"]},
                )
            context = cues["benign_contexts"][n % len(cues["benign_contexts"])]
            yield Case(
                id=f"{split}-{cls}-benign-{p}-{v}",
                text=benign_templates[n % len(benign_templates)].format(
                    person=variant["text"], context=context["text"]
                ),
                cls="person_benign",
                unsafe=False,
                kind=variant.get("kind", ""),
                hard=True,
            )


def registered_persons(split: str) -> list[tuple[str, list[str]]]:
    """(name, aliases) an operator would register for the registered-person cases."""
    return [(p["name"], list(p.get("aliases", []))) for p in load_cues(split)["registered_persons"]]


def all_cases(split: str) -> list[Case]:
    return load_prompts(split) + hard_rule_cases(split)

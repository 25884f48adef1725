#!/usr/bin/env python3
"""Validate the built prompt_eval files and print count tables."""

from __future__ import annotations

import collections
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID_LABELS = {"sexual", "violence", "self_harm"}
BENIGN = {
    "benign_tricky",
    "benign_ordinary",
    "benign_multilingual",
    "benign_frontend",
    "benign_encoded",
}
LANGS = ["fr", "es", "de", "ja", "it", "pt", "ru", "pl", "nl", "tr", "zh", "ko", "ar", "id", "vi"]
KEYS = {"id", "text", "negative_prompt", "labels", "class", "lang", "note"}


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def main():
    ids = set()
    counts = collections.defaultdict(lambda: [0, 0])
    langs_by_class = collections.defaultdict(collections.Counter)
    for si, split in enumerate(("dev", "heldout")):
        path = os.path.join(ROOT, split, "prompts.jsonl")
        raw = open(path, "rb").read()
        if raw.startswith(b"\xef\xbb\xbf"):
            fail(f"{path} has a BOM")
        for ln, line in enumerate(raw.decode("utf-8").split("\n"), 1):
            if not line:
                continue
            r = json.loads(line)
            if set(r) - KEYS or not {"id", "text", "labels", "class", "lang"} <= set(r):
                fail(f"{path}:{ln} bad keys {sorted(r)}")
            if r["id"] in ids:
                fail(f"duplicate id {r['id']}")
            ids.add(r["id"])
            if not r["id"].startswith(r["class"] + "-"):
                fail(f"id/class mismatch {r['id']}")
            if not set(r["labels"]) <= VALID_LABELS:
                fail(f"bad labels {r['id']}")
            if (r["class"] in BENIGN) != (r["labels"] == []):
                fail(f"benign/label mismatch {r['id']}")
            counts[r["class"]][si] += 1
            langs_by_class[r["class"]][r["lang"]] += 1

    print(f"{'class':24s} {'dev':>5s} {'heldout':>8s} {'total':>6s}")
    tot = [0, 0]
    for cls, (d, h) in counts.items():
        print(f"{cls:24s} {d:5d} {h:8d} {d + h:6d}")
        tot[0] += d
        tot[1] += h
        if d < 22 or h < 22:
            fail(f"{cls} below 22 in a split")
    print(f"{'TOTAL':24s} {tot[0]:5d} {tot[1]:8d} {sum(tot):6d}")
    for cls, per in (("multilingual_unsafe", 3), ("benign_multilingual", 2)):
        for lg in LANGS:
            if langs_by_class[cls][lg] < per:
                fail(f"{cls}: {lg} has {langs_by_class[cls][lg]}")
    if sum(counts["multilingual_unsafe"]) < 60:
        fail("multilingual_unsafe < 60")

    # cues
    cue_tot = collections.defaultdict(lambda: [0, 0])
    allc = collections.defaultdict(list)
    for si, split in enumerate(("dev", "heldout")):
        c = json.load(open(os.path.join(ROOT, split, "cues.json"), encoding="utf-8"))
        for k, v in c.items():
            if isinstance(v, list):
                cue_tot[k][si] = len(v)
                allc[k] += v
        for p in c["registered_persons"]:
            if len(p["variants"]) < 6:
                fail(f"person {p['name']} has <6 variants")
        for tk in ("templates", "person_templates"):
            if len(c[tk]["en"]) < 5 or any(len(c[tk][lg]) < 2 for lg in LANGS):
                fail(f"{tk} too few")
    print()
    print(f"{'cue list':24s} {'dev':>5s} {'heldout':>8s} {'total':>6s}")
    for k, (d, h) in cue_tot.items():
        print(f"{k:24s} {d:5d} {h:8d} {d + h:6d}")
    mins = {
        "minor_cues": 120,
        "sexual_cues": 80,
        "adult_cues": 40,
        "benign_contexts": 40,
        "registered_persons": 25,
        "wellknown_persons": 120,
    }
    for k, m in mins.items():
        if len(allc[k]) < m:
            fail(f"{k} < {m}")
    en_minor = sum(1 for x in allc["minor_cues"] if x["lang"] == "en")
    other = {x["lang"] for x in allc["minor_cues"]} - {"en"}
    print(f"\nminor_cues: {en_minor} English, other langs: {sorted(other)}")
    if en_minor < 60 or set(LANGS) - other:
        fail("minor cue language coverage")
    kinds = collections.Counter(x["kind"] for x in allc["minor_cues"])
    print("minor cue kinds:", dict(kinds))
    print("sexual cue kinds:", dict(collections.Counter(x["kind"] for x in allc["sexual_cues"])))
    vk = collections.Counter(v["kind"] for p in allc["registered_persons"] for v in p["variants"])
    print("registered variant kinds:", dict(vk))
    for k in ("minor_cues", "sexual_cues", "adult_cues", "benign_contexts"):
        texts = [x["text"] for x in allc[k]]
        if len(texts) != len(set(texts)):
            fail(f"duplicate in {k}")
    names = [p["name"] for p in allc["wellknown_persons"]] + [
        p["name"] for p in allc["registered_persons"]
    ]
    if len(names) != len(set(names)):
        fail("duplicate person name")
    print("\nALL CHECKS PASSED")


if __name__ == "__main__":
    main()

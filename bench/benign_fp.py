"""False positives on benign abstract art: each backend alone against the fusion.

Generated images are often abstract, and the loudest complaint about filters is innocent
images blacked out. ``bench/benign_art.py`` builds a benign set in code (gradients,
colour wheels, skin-tone textures, soft shapes, still lifes, sample photos; no people);
this script runs NudeNet alone, OpenNSFW alone and the fused pair under each profile and
prints the share of images that are not allowed (false positives, with a 95 % Wilson
interval), per backend, per profile and per family of the fusion. It also checks the
rule the fusion must keep: where both backends alone reach the same decision, the fused
decision is that decision.

Tune on ``--split dev``; report ``--split heldout`` (images of other seeds: never looked
at while tuning). scikit-image's colour wheel, the image that started this, is added to
every run.

    python bench/benign_fp.py [--count 400] [--split heldout] [--profiles strict standard]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def load_art() -> Any:
    spec = importlib.util.spec_from_file_location("benign_art", HERE / "benign_art.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["benign_art"] = module
    spec.loader.exec_module(module)
    return module


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class CachedDetector:
    """A detector whose outputs are computed once per frame (by identity) and reused.

    Every guard of the comparison sees the same frames, so the models run once per frame
    and backend, however many profiles and combinations are compared.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.categories = inner.categories
        self._cache: dict[int, Any] = {}

    def detect(self, frames: Sequence[np.ndarray]) -> list[Any]:
        missing = [f for f in frames if id(f) not in self._cache]
        if missing:
            for frame, output in zip(missing, self.inner.detect(missing), strict=True):
                self._cache[id(frame)] = output
        return [self._cache[id(f)] for f in frames]


def images(count: int, seed: int, split: str, size: int) -> list[tuple[str, str, np.ndarray]]:
    import skimage.data

    art = load_art()
    items = list(art.generate(count, seed, size=size, split=split))
    wheel = skimage.data.colorwheel()[..., :3]
    return [("skimage-colorwheel", "colour wheel (skimage)", np.ascontiguousarray(wheel)), *items]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--split", default="dev", choices=["dev", "heldout"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--profiles", nargs="+", default=["strict", "standard", "adult"])
    parser.add_argument("--show", type=int, default=0, help="list up to N false positives")
    args = parser.parse_args(argv)

    from genguard.content import load_image
    from genguard.detectors.base import create_detector
    from genguard.guard import Guard
    from genguard.policy import load_policy

    started = time.perf_counter()
    data = images(args.count, args.seed, args.split, args.size)
    loaded = [load_image(rgb) for _, _, rgb in data]
    print(
        f"{len(data)} benign images ({args.split}, seed {args.seed}) built in "
        f"{time.perf_counter() - started:.1f} s"
    )
    backends = {name: CachedDetector(create_detector(name)) for name in ("nudenet", "opennsfw")}
    combos = {"nudenet": ["nudenet"], "opennsfw": ["opennsfw"], "fusion": ["nudenet", "opennsfw"]}
    print(f"\n{'profile':<10}{'path':<10}{'FP':>6}{'rate':>8}   95% CI")
    worst: dict[str, list[str]] = defaultdict(list)
    violations = 0
    for profile in args.profiles:
        policy = load_policy(profile)
        actions: dict[str, list[str]] = {}
        for label, names in combos.items():
            guard = Guard(policy, [backends[n] for n in names])
            decisions = guard.check_loaded(loaded)
            actions[label] = [d.action.value for d in decisions]
            flagged = [i for i, a in enumerate(actions[label]) if a != "allow"]
            low, high = wilson(len(flagged), len(data))
            print(
                f"{profile:<10}{label:<10}{len(flagged):>6}{len(flagged) / len(data):>8.1%}"
                f"   {low:.1%} - {high:.1%}"
            )
            if label == "fusion":
                worst[profile] = [
                    f"{data[i][0]} ({data[i][1]}): {actions[label][i]}" for i in flagged
                ]
        agree = [i for i in range(len(data)) if actions["nudenet"][i] == actions["opennsfw"][i]]
        broken = [i for i in agree if actions["fusion"][i] != actions["nudenet"][i]]
        violations += len(broken)
        print(
            f"{profile:<10}{'agree':<10}{len(agree):>6} frames where both alone agree; "
            f"fusion differs on {len(broken)}"
        )
    families = Counter(family for _, family, _ in data)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(families.items()))
    print(f"\nfamilies: {len(families)} ({counts})")
    for profile, names in worst.items():
        if names and args.show:
            print(f"\nfused false positives under {profile}:")
            for line in names[: args.show]:
                print(f"  {line}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())

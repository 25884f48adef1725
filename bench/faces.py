"""Benchmark: likeness matching quality and cost (the ``faces`` backend).

Three measurements, one run:

* quality: every identity's first photo is registered; edited copies (crop, JPEG q=40,
  half size, mirror, +-5 degrees, grey, CMYK, EXIF-rotated; ``tests/faces/samples.py``)
  of every photo are matched against every registered identity. True-match rate: copies
  of a registered person's photos within the threshold (a face the detector misses counts
  as a miss). False-match rate: (copy, other identity) pairs within the threshold, plus
  face-free photos that produced any match. Reported at several thresholds.
* cost per frame of the face step (detect + embed + match, one core): a face-free frame
  versus a frame with one face, with the detection / embedding split.
* match time against a 10,000-entry registry: vectorised (16 faces at once) versus the
  naive per-entry loop (``FaceIndex.nearest_naive``), per face, and their ratio.

Faces shipped in installed packages: scikit-image's astronaut (Eileen Collins) and
matplotlib's Grace Hopper. ``--extra DIR`` adds photos named ``<identity>[N].jpg`` (e.g.
the test images of the MIT-licensed ``face_recognition`` sdist: ``pip download
--no-deps --no-binary :all: face_recognition==1.3.0`` then ``tests/test_images``), so
different photos of one person are compared too, not only copies of one photo.

Run: ``python bench/faces.py [--extra DIR] [--repeat 5]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faces import samples

from genguard.content import LoadLimits, load_image
from genguard.detectors.faces import FaceMatchDetector
from genguard.faces.index import DEFAULT_THRESHOLD, FaceIndex
from genguard.faces.model import face_model
from genguard.faces.reference import reference_face

ANALYSIS = LoadLimits(analysis_side=640)
THRESHOLDS = (0.4, 0.5, 0.55, 0.6, 0.65)


@dataclass
class Probe:
    identity: str
    label: str
    #: Distance to each registered identity (absent: no face found).
    distances: dict[str, float]


def identities(extra: Path | None) -> dict[str, list[Image.Image]]:
    found = {"eileen_collins": [samples.astronaut()], "grace_hopper": [samples.grace_hopper()]}
    if extra is not None:
        for path in sorted(extra.glob("*.jp*g")):
            name = re.sub(r"\d+$", "", path.stem)
            if "partial" in name:  # half faces: not a fair reference or probe
                continue
            found.setdefault(name, []).append(Image.open(path).convert("RGB"))
    return found


def register(people: dict[str, list[Image.Image]], folder: Path) -> FaceIndex:
    names, vectors = [], []
    for name, photos in people.items():
        path = folder / f"{name}.png"
        photos[0].save(path)
        names.append(name)
        vectors.append(reference_face(path).embedding)
    return FaceIndex(names, np.stack(vectors))


def probe_distances(index: FaceIndex, frame: np.ndarray) -> dict[str, float]:
    """Smallest distance from any face of the frame to each registered identity."""
    detector = FaceMatchDetector(index=index)
    faces, small, _ = detector.find_faces(frame)
    if not faces:
        return {}
    embeddings = face_model().embed(small, faces)
    distances = np.linalg.norm(embeddings[:, None, :] - index.vectors[None, :, :], axis=2)
    return {name: float(distances[:, i].min()) for i, name in enumerate(index.names)}


def quality(people: dict[str, list[Image.Image]], index: FaceIndex) -> list[Probe]:
    probes = []
    for name, photos in people.items():
        for number, photo in enumerate(photos):
            for edit, make in samples.AUGMENTATIONS.items():
                frame = load_image(make(photo), ANALYSIS).frames[0]
                probes.append(Probe(name, f"{name}#{number}:{edit}", probe_distances(index, frame)))
    return probes


def report_quality(probes: list[Probe], index: FaceIndex, face_free_hits: dict[float, int]) -> None:
    same = [p.distances.get(p.identity) for p in probes]
    missed = sum(d is None for d in same)
    other = [d for p in probes for n, d in p.distances.items() if n != p.identity]
    pairs_other = sum(len(index) - 1 for _ in probes)
    print(
        f"\nquality: {len(probes)} probes of {len(index)} identities, {missed} without a face found"
    )
    found = sorted(d for d in same if d is not None)
    print(
        f"  same-person distances: median {statistics.median(found):.3f}, max {found[-1]:.3f}"
        f"; other-person: min {min(other):.3f}, median {statistics.median(other):.3f}"
    )
    print("  threshold  true-match  false-match  face-free hits")
    for t in THRESHOLDS:
        tm = sum(d is not None and d <= t for d in same) / len(same)
        fm = sum(d <= t for d in other) / max(1, pairs_other)
        mark = "  <- default" if t == DEFAULT_THRESHOLD else ""
        print(f"  {t:9.2f}  {tm:10.1%}  {fm:11.2%}  {face_free_hits[t]:14d}{mark}")
    worst = sorted((p.distances.get(p.identity, 9.9), p.label) for p in probes)[-3:]
    print("  hardest true pairs:", ", ".join(f"{label} {d:.3f}" for d, label in worst))
    closest = sorted(
        (d, f"{p.label} vs {n}") for p in probes for n, d in p.distances.items() if n != p.identity
    )[:3]
    print("  closest false pairs:", ", ".join(f"{label} {d:.3f}" for d, label in closest))


def face_free(index: FaceIndex) -> dict[float, int]:
    hits = dict.fromkeys(THRESHOLDS, 0)
    for image in samples.face_free().values():
        frame = load_image(samples.encode(image, "PNG"), ANALYSIS).frames[0]
        distances = probe_distances(index, frame)
        for t in THRESHOLDS:
            hits[t] += any(d <= t for d in distances.values())
    return hits


def timed(function, repeat: int) -> float:
    """Median wall-clock milliseconds of ``function()``."""
    return timed_both(function, repeat)[0]


def timed_both(function, repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds (CPU time is what a busy machine does not
    inflate: on a shared box the wall clock also counts other processes' turns)."""
    function()  # warm
    walls, cpus = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def cost(index: FaceIndex, repeat: int) -> None:
    detector = FaceMatchDetector(index=index)
    frames = {
        "face-free 640x427 (coffee->640)": load_image(
            samples.encode(samples.face_free()["coffee"].resize((640, 427))), ANALYSIS
        ).frames[0],
        "one face 512x512 (astronaut)": np.asarray(samples.astronaut()),
        "one face 600x512 (hopper)": np.asarray(samples.grace_hopper()),
    }
    print(f"\ncost per frame (median of {repeat}; wall / CPU ms):")
    for label, frame in frames.items():
        total, total_cpu = timed_both(lambda f=frame: detector.detect([f]), repeat)
        detect, detect_cpu = timed_both(lambda f=frame: detector.find_faces(f), repeat)
        print(
            f"  {label:34s} {total:7.1f} / {total_cpu:6.1f} ms"
            f"  (detection {detect:6.1f} / {detect_cpu:6.1f} ms)"
        )
    empty = FaceMatchDetector(index=FaceIndex([], np.zeros((0, 128), dtype=np.float32)))
    frame = frames["one face 512x512 (astronaut)"]
    print(f"  {'no registered faces':34s} {timed(lambda: empty.detect([frame]), repeat):7.3f} ms")


def matching(size: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(size, 128)).astype(np.float32) * 0.1
    index = FaceIndex([f"p{i}" for i in range(size)], vectors)
    queries = vectors[rng.choice(size, 16, replace=False)] + 0.005
    vectorised = timed(lambda: index.nearest(queries), repeat) / 16
    naive = timed(lambda: index.nearest_naive(queries[0]), max(1, repeat // 2))
    slow = [index.nearest_naive(q) for q in queries[:2]]
    assert [n.name for n in index.nearest(queries[:2])] == [n.name for n in slow if n]
    print(f"\nmatch against {size:,} entries, per face:")
    print(f"  vectorised (16 faces at once): {vectorised:8.3f} ms")
    print(f"  naive per-entry loop:          {naive:8.3f} ms")
    print(f"  ratio: {naive / vectorised:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=Path, help="folder of <identity>[N].jpg photos")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, default=10_000, help="registry size to match")
    args = parser.parse_args()
    import tempfile

    people = identities(args.extra)
    with tempfile.TemporaryDirectory() as folder:
        index = register(people, Path(folder))
    probes = quality(people, index)
    report_quality(probes, index, face_free(index))
    cost(index, args.repeat)
    matching(args.size, args.repeat)


if __name__ == "__main__":
    main()

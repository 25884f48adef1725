"""Benchmark: PDQ hashing speed, bank match latency and near-duplicate recall.

Side by side in one run:

* hashing: genguard's ``pdq_hash`` (hex + quality) vs the raw ``pdqhash.compute``;
* matching: genguard's ``HashBank.match`` with the flat index (faiss ``IndexBinaryFlat``)
  and with ``index="mih"`` (numpy multi-index hashing, 16 x 16-bit chunks) vs the
  anchors: python-threatexchange's PDQ index layout (faiss ``IndexBinaryMultiHash``,
  16 x 16 bits, nflip = 1) and a plain numpy popcount scan, on the same random banks and
  queries;
* recall: images from scikit-image are planted in a bank of random hashes; edited copies
  (JPEG, resize, light crops, brightness) are looked up at the default threshold 31;
* orientation: EXIF-rotated JPEGs (orientations 3, 6, 8) matched by their stored hash
  only (what pdqhash and ThreatExchange compute), by stored + oriented (genguard's
  default), and with ``--dihedral``; horizontal and vertical flips likewise.

Run: ``python bench/pdq.py [--sizes 10000 1000000] [--huge]`` (``--huge`` adds 10^7,
about 320 MB of hashes, 640 MB for genguard's MIH, ~4 GB for faiss's). Single thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import io
import time
from typing import Any

import cv2
import numpy as np
import pdqhash
from PIL import Image, ImageEnhance

from genguard.content import load_image
from genguard.provenance import hashbank as hb

cv2.setNumThreads(1)
try:
    import faiss

    faiss.omp_set_num_threads(1)
except ImportError:  # pragma: no cover
    faiss = None

#: Natural photos: PDQ is meant for them (pure textures such as skimage's brick/grass
#: and flat synthetic images hash poorly, see docs/provenance.md).
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "hubble_deep_field",
    "coins",
    "moon",
    "cell",
    "retina",
)


def load_photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def scale(rgb: np.ndarray, factor: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def crop(rgb: np.ndarray, share: float) -> np.ndarray:
    """Remove ``share`` of each side (e.g. 0.01 = 1% from every edge)."""
    h, w = rgb.shape[:2]
    dh, dw = max(1, round(h * share)), max(1, round(w * share))
    return np.ascontiguousarray(rgb[dh : h - dh, dw : w - dw])


EDITS = {
    "jpeg q50": lambda x: jpeg(x, 50),
    "jpeg q20": lambda x: jpeg(x, 20),
    "resize 0.5x": lambda x: scale(x, 0.5),
    "resize 0.25x": lambda x: scale(x, 0.25),
    "crop 1%/side": lambda x: crop(x, 0.01),
    "crop 2%/side": lambda x: crop(x, 0.02),
    "crop 5%/side": lambda x: crop(x, 0.05),
    "brightness +20%": lambda x: np.asarray(
        ImageEnhance.Brightness(Image.fromarray(x)).enhance(1.2)
    ),
    "resize 0.5x + jpeg q50": lambda x: jpeg(scale(x, 0.5), 50),
}


def percentiles(times: list[float]) -> tuple[float, float]:
    arr = np.asarray(times) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def bench_hashing(reps: int) -> None:
    print("\nHashing (1 thread)")
    print(f"{'image':<12}{'genguard /s':>14}{'pdqhash /s':>14}{'ratio':>8}")
    for side in (512, 1024):
        img = cv2.resize(load_photo("astronaut"), (side, side), interpolation=cv2.INTER_CUBIC)
        rates = []
        for fn in (lambda im=img: hb.pdq_hash(im), lambda im=img: pdqhash.compute(im)):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            rates.append(reps / (time.perf_counter() - t0))
        print(f"{side}x{side:<8}{rates[0]:>14.1f}{rates[1]:>14.1f}{rates[0] / rates[1]:>8.2f}")


def _queries(codes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Half near-duplicates (20 bits from a bank entry: inside the threshold), half random."""
    qs = codes[rng.integers(0, len(codes), count)].copy()
    for i in range(count // 2):
        for bit in rng.choice(256, 20, replace=False):
            qs[i, bit // 8] ^= 1 << (bit % 8)
    qs[count // 2 :] = rng.integers(0, 256, (count - count // 2, hb.HASH_BYTES))
    return qs


def _latencies(search: Any, qs: np.ndarray) -> tuple[float, float]:
    times = []
    for q in qs:
        t0 = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - t0)
    return percentiles(times)


def bench_matching(sizes: list[int], queries: int, rng: np.random.Generator) -> None:
    """p50/p99 per query at threshold 31: genguard's flat and MIH banks vs the anchors."""
    print(f"\nMatch latency, threshold 31, {queries} queries (ms p50/p99, 1 thread)")
    print(
        f"{'bank size':>11}{'gg flat':>14}{'gg mih':>14}{'TE faiss MIH':>15}"
        f"{'numpy scan':>14}{'mih build s':>13}{'TE build s':>12}{'TE/gg mih p99':>15}"
    )
    for size in sizes:
        codes = rng.integers(0, 256, (size, hb.HASH_BYTES), dtype=np.uint8)
        qs = _queries(codes, queries, rng)
        hexes = [q.tobytes().hex() for q in qs]
        cells, builds = [], []
        for kind in ("flat", "mih"):
            bank = hb.HashBank(index=kind)
            bank.add_codes(codes)
            t0 = time.perf_counter()
            bank.match(hexes[0])  # builds the index
            builds.append(time.perf_counter() - t0)
            found = sum(1 for h in hexes[: queries // 2] if bank.match(h))
            assert found == queries // 2, (kind, found)  # every near-duplicate is found
            cells.append(_latencies(lambda q, b=bank: b.match(q.tobytes().hex()), qs))
            del bank
        te, te_build = (float("nan"), float("nan")), float("nan")
        if faiss is not None:
            # python-threatexchange's PDQ index: 16 x 16-bit chunks, nflip = 31 // 16.
            t0 = time.perf_counter()
            mih = faiss.IndexBinaryMultiHash(hb.HASH_BITS, 16, 16)
            mih.nflip = 1
            mih.add(codes)
            te_build = time.perf_counter() - t0
            te = _latencies(lambda q, m=mih: m.range_search(q[None, :], 32), qs)
            del mih
        scan = _latencies(
            lambda q, c=codes: np.nonzero(hb._popcount_distances(c, q) <= 31),
            qs[: min(50, queries)],
        )
        cell = [f"{a:>7.2f}/{b:<6.2f}" for a, b in (*cells, te, scan)]
        print(
            f"{size:>11,}{cell[0]:>14}{cell[1]:>14}{cell[2]:>15}{cell[3]:>14}"
            f"{builds[1]:>13.1f}{te_build:>12.1f}{te[1] / cells[1][1]:>15.2f}"
        )
        del codes


def exif_rotated_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose stored pixels are turned so that EXIF ``orientation`` shows ``rgb``."""
    from PIL import Image as PILImage

    undo = {3: PILImage.Transpose.ROTATE_180, 6: PILImage.Transpose.ROTATE_90,
            8: PILImage.Transpose.ROTATE_270}[orientation]  # fmt: skip
    stored = PILImage.fromarray(rgb).transpose(undo)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def bench_orientation(rng: np.random.Generator) -> None:
    """Recall of upright originals for EXIF-rotated and flipped copies, per query set."""
    bank = hb.HashBank()
    bank.add_codes(rng.integers(0, 256, (100_000, hb.HASH_BYTES), dtype=np.uint8))
    photos = {name: load_photo(name) for name in PHOTOS}
    for name, img in photos.items():
        bank.add(name, hb.pdq_hash(img)[0])
    print("\nRecall of the upright original (threshold 31, 100k random hashes as decoys)")
    print(f"{'copy':<22}{'stored only':>13}{'stored+oriented':>17}{'dihedral':>10}")
    for orientation in (3, 6, 8):
        hits = [0, 0, 0]
        for name, img in photos.items():
            hashes = hb.hash_image_file(exif_rotated_jpeg(img, orientation))
            upright = load_image(exif_rotated_jpeg(img, orientation)).rgb
            for k, queries in enumerate(
                ([hashes.stored], hashes.queries(), hb.dihedral_hashes(upright))
            ):
                hits[k] += any(m.entry.name == name for q in queries for m in bank.match(q))
        row = "".join(f"{h / len(photos):>{w}.0%}" for h, w in zip(hits, (13, 17, 10), strict=True))
        print(f"{'EXIF orientation ' + str(orientation):<22}{row}")
    for label, fn in (("horizontal flip", np.fliplr), ("vertical flip", np.flipud)):
        plain = dihedral = 0
        for name, img in photos.items():
            copy = np.ascontiguousarray(fn(img))
            plain += any(m.entry.name == name for m in bank.match(hb.pdq_hash(copy)[0]))
            dihedral += any(
                m.entry.name == name for q in hb.dihedral_hashes(copy) for m in bank.match(q)
            )
        n = len(photos)
        print(f"{label:<22}{plain / n:>13.0%}{plain / n:>17.0%}{dihedral / n:>10.0%}")


def bench_recall(bank_size: int, rng: np.random.Generator) -> None:
    photos = {name: load_photo(name) for name in PHOTOS}
    # More distinct base images: crops and rescales of the photos.
    bases = dict(photos)
    for name, img in photos.items():
        h, w = img.shape[:2]
        bases[f"{name}/left"] = np.ascontiguousarray(img[:, : w // 2])
        bases[f"{name}/bottom"] = np.ascontiguousarray(img[h // 3 :, :])
    bank = hb.HashBank()
    bank.add_codes(rng.integers(0, 256, (bank_size, hb.HASH_BYTES), dtype=np.uint8))
    low_quality = 0
    for name, img in bases.items():
        h, q = hb.pdq_hash(img)
        low_quality += q < hb.MIN_QUALITY
        bank.add(name, h, {"quality": q})
    print(
        f"\nRecall at threshold 31: {len(bases)} base images planted in {bank_size:,} random hashes"
    )
    print(f"{'edit':<24}{'recall':>8}{'median dist':>13}{'top-1 right':>13}")
    for edit, fn in EDITS.items():
        hits, dists, top = 0, [], 0
        for name, img in bases.items():
            edited = fn(img)
            if min(edited.shape[:2]) < 16:
                continue
            h, _ = hb.pdq_hash(edited)
            matches = bank.match(h)
            names = [m.entry.name for m in matches]
            hits += name in names
            top += bool(names) and names[0] == name
            dists.append(hb.hamming(h, hb.pdq_hash(img)[0]))
        n = len(dists)
        print(f"{edit:<24}{hits / n:>8.1%}{np.median(dists):>13.0f}{top / n:>13.1%}")
    # False matches between different base images.
    hashes = {n: hb.pdq_hash(i)[0] for n, i in bases.items()}
    names = list(hashes)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    close = [(a, b) for a, b in pairs if hb.hamming(hashes[a], hashes[b]) <= 31]
    print(f"distinct-image pairs within 31 bits: {len(close)}/{len(pairs)} "
          f"(low-quality hashes: {low_quality})")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--huge", action="store_true", help="also a 10^7 bank")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hash-reps", type=int, default=30)
    parser.add_argument("--recall-bank", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"faiss: {'yes' if faiss is not None else 'no (numpy scan only)'}")
    bench_hashing(args.hash_reps)
    bench_matching(args.sizes + ([10_000_000] if args.huge else []), args.queries, rng)
    bench_recall(args.recall_bank, rng)
    bench_orientation(rng)


if __name__ == "__main__":
    main()

"""Benchmark: PDQ hashing speed, bank match latency and near-duplicate recall.

Side by side in one run:

* hashing: genguard's ``pdq_hash`` (hex + quality) vs the raw ``pdqhash.compute``;
* matching: genguard's ``HashBank.match`` (faiss ``IndexBinaryFlat``, exact) vs the
  anchors a bank could use instead, on the same random banks and queries: a numpy
  popcount scan (genguard's fallback when faiss is missing) and faiss's multi-index
  hashing ``IndexBinaryMultiHash`` (8 x 32-bit sub-hashes, nflip=3: exact at radius 31);
* recall: images from scikit-image are planted in a bank of random hashes; edited copies
  (JPEG, resize, light crops, brightness) are looked up at the default threshold 31.

Run: ``python bench/pdq.py [--sizes 10000 1000000] [--huge]`` (``--huge`` adds 10^7,
about 320 MB of hashes plus 320 MB for the multi-hash index). Single thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import io
import time

import cv2
import numpy as np
import pdqhash
from PIL import Image, ImageEnhance

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


def bench_matching(sizes: list[int], queries: int, rng: np.random.Generator) -> None:
    print(f"\nMatch latency, threshold 31, {queries} queries (ms, 1 thread)")
    print(
        f"{'bank size':>11}{'genguard p50':>14}{'p99':>8}{'numpy p50':>11}{'p99':>8}"
        f"{'MIH p50':>9}{'p99':>8}{'build MIH s':>13}{'numpy/gg':>10}"
    )
    for size in sizes:
        codes = rng.integers(0, 256, (size, hb.HASH_BYTES), dtype=np.uint8)
        # Queries: half are near-duplicates (12 bits from a bank entry), half random.
        picks = rng.integers(0, size, queries)
        qs = codes[picks].copy()
        for i in range(queries // 2):
            for bit in rng.choice(256, 12, replace=False):
                qs[i, bit // 8] ^= 1 << (bit % 8)
        qs[queries // 2 :] = rng.integers(0, 256, (queries - queries // 2, hb.HASH_BYTES))
        hexes = [q.tobytes().hex() for q in qs]
        bank = hb.HashBank()
        bank.add_codes(codes)
        bank.match(hexes[0])  # build the index outside the timing
        gg = []
        for h in hexes:
            t0 = time.perf_counter()
            found = bank.match(h)
            gg.append(time.perf_counter() - t0)
        assert sum(1 for h in hexes[: queries // 2] if bank.match(h)) == queries // 2, found
        scan = []
        for q in qs:
            t0 = time.perf_counter()
            d = hb._popcount_distances(codes, q)
            np.nonzero(d <= 31)
            scan.append(time.perf_counter() - t0)
        mih_t, build = [float("nan")], float("nan")
        if faiss is not None:
            t0 = time.perf_counter()
            mih = faiss.IndexBinaryMultiHash(hb.HASH_BITS, 8, 32)
            mih.nflip = 3
            mih.add(codes)
            build = time.perf_counter() - t0
            mih_t = []
            for q in qs:
                t0 = time.perf_counter()
                mih.range_search(q[None, :], 32)
                mih_t.append(time.perf_counter() - t0)
            del mih
        g50, g99 = percentiles(gg)
        n50, n99 = percentiles(scan)
        m50, m99 = percentiles(mih_t)
        print(
            f"{size:>11,}{g50:>14.2f}{g99:>8.2f}{n50:>11.2f}{n99:>8.2f}{m50:>9.2f}{m99:>8.2f}"
            f"{build:>13.1f}{n50 / g50:>10.1f}"
        )
        del bank, codes


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


if __name__ == "__main__":
    main()

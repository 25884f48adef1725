"""Benchmark: genguard's watermark vs invisible-watermark's ``dwtDct`` (the common anchor).

Both methods embed the same random 32-bit payloads into the same images; each marked
image then goes through the same edits and both decoders run on the result.

* bit accuracy: share of the 32 payload bits read correctly. genguard: the decoded
  payload when found, otherwise its raw (pre-ECC) bit decisions, so a miss is not
  counted as 0%; dwtDct: its decoded bits.
* detection rate: genguard found the exact payload; dwtDct decoded all 32 bits exactly
  (it has no "not found" answer, so its false-detection rate is not defined).
* false detections: genguard ``found=True`` on unmarked images (crops/rescales of photos
  and synthetic textures, some JPEG-compressed).
* crop = keep the central 90% of each side (81% of the area).
* speed: embed + detect of one 1024x1024 image, single thread.

Run: ``python bench/watermark.py [--images 40] [--unmarked 1000]`` (needs
``pip install --no-deps invisible-watermark``; torch is not needed, its RivaGAN module
is stubbed out).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import io
import sys
import time
import types
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageEnhance

from genguard.provenance import watermark as wm

cv2.setNumThreads(1)

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
    "brick",
    "grass",
    "gravel",
    "cell",
    "retina",
    "colorwheel",
    "clock",
    "logo",
)

Attack = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------
# Images and edits
# ---------------------------------------------------------------------------------------


def load_photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, :3])


def resize_to(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, size, interpolation=interp)


def marked_set(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n test images: the photos at their own size, then at 512 and 1024 long side."""
    photos = [load_photo(p) for p in PHOTOS]
    out = []
    sizes = [None, 512, 1024, 768]
    i = 0
    while len(out) < n:
        img = photos[i % len(photos)]
        size = sizes[(i // len(photos)) % len(sizes)]
        if size is not None:
            img = resize_to(img, size)
        if min(img.shape[:2]) >= wm.MIN_SIDE:
            out.append(img)
        i += 1
    return out


def synthetic_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(0, 5)
    if kind == 0:  # filtered noise at a random scale
        sigma = float(rng.uniform(0.5, 8))
        noise = rng.normal(0, 1, (h, w, 3)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
        noise = (noise - noise.mean()) / (noise.std() + 1e-6)
        img = 128 + noise * rng.uniform(10, 60)
    elif kind == 1:  # gradients
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (h + w) * 255], axis=2)
    elif kind == 2:  # periodic stripes / checkerboards (worst case for a tiled detector)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = float(rng.uniform(4, 64))
        img = 128 + 100 * np.sign(np.sin(xx / period * 2 * np.pi) * np.sin(yy / period * 2 * np.pi))
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif kind == 3:  # random rectangles
        img = np.full((h, w, 3), rng.integers(0, 256, 3), np.float32)
        for _ in range(40):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            img[y0 : y0 + rng.integers(5, h // 2), x0 : x0 + rng.integers(5, w // 2)] = (
                rng.integers(0, 256, 3)
            )
    else:  # flat with sensor-like noise
        img = rng.integers(0, 256, 3)[None, None, :] + rng.normal(0, 2, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def unmarked_set(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Varied unmarked images: random crops/rescales of photos (60%) and textures (40%)."""
    photos = [load_photo(p) for p in PHOTOS]
    out = []
    for _ in range(n):
        h, w = int(rng.integers(256, 1025)), int(rng.integers(256, 1025))
        if rng.random() < 0.6:
            src = photos[int(rng.integers(len(photos)))]
            src = resize_to(src, int(rng.integers(256, 1400)))
            sh, sw = src.shape[:2]
            ch, cw = min(h, sh), min(w, sw)
            y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
            img = np.ascontiguousarray(src[y0 : y0 + ch, x0 : x0 + cw])
        else:
            img = synthetic_texture(rng, h, w)
        if rng.random() < 0.3:
            img = jpeg(img, int(rng.integers(30, 95)))
        out.append(img)
    return out


def jpeg(rgb: np.ndarray, quality: int = 50) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def half_and_back(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def centre_crop(rgb: np.ndarray) -> np.ndarray:
    """Keep the central 90% of each side (81% of the area)."""
    h, w = rgb.shape[:2]
    dh, dw = round(h * 0.05), round(w * 0.05)
    return np.ascontiguousarray(rgb[dh : h - dh, dw : w - dw])


def brighter(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(rgb)).enhance(1.2))


ATTACKS: dict[str, Attack] = {
    "none": lambda x: x,
    "jpeg50": jpeg,
    "resize0.5": half_and_back,
    "crop90%": centre_crop,
    "bright+20%": brighter,
    "resize+jpeg50": lambda x: jpeg(half_and_back(x)),
    # Not a target: a resize that is *kept* (genguard's scale search undoes it).
    "kept 0.75x": lambda x: cv2.resize(
        x, (round(x.shape[1] * 0.75), round(x.shape[0] * 0.75)), interpolation=cv2.INTER_AREA
    ),
}


# ---------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------


def payload_bits(payload: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(payload.to_bytes(4, "big"), np.uint8))


class Genguard:
    name = "genguard"

    def __init__(self, strength: float = wm.DEFAULT_STRENGTH) -> None:
        self.strength = strength

    def embed(self, rgb: np.ndarray, payload: int) -> np.ndarray:
        return wm.embed_watermark(rgb, payload, strength=self.strength)

    def read(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """(32 payload bits, detected-exactly flag is decided by the caller)."""
        result = wm.detect_watermark(rgb)
        if result.found and result.payload is not None:
            return payload_bits(result.payload), True
        return wm.raw_payload_bits(rgb), False


class DwtDct:
    name = "invisible-watermark dwtDct"

    def __init__(self) -> None:
        # imwatermark imports torch for RivaGAN at import time; dwtDct does not need it.
        stub = types.ModuleType("imwatermark.rivaGan")
        stub.RivaWatermark = object  # type: ignore[attr-defined]
        sys.modules.setdefault("imwatermark.rivaGan", stub)
        from imwatermark import WatermarkDecoder, WatermarkEncoder

        self._enc, self._dec = WatermarkEncoder, WatermarkDecoder

    def embed(self, rgb: np.ndarray, payload: int) -> np.ndarray:
        enc = self._enc()
        enc.set_watermark("bits", payload_bits(payload).tolist())
        bgr = enc.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")
        return np.ascontiguousarray(np.clip(bgr, 0, 255).astype(np.uint8)[:, :, ::-1])

    def read(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        if rgb.shape[0] * rgb.shape[1] < 256 * 256:
            return np.zeros(32, np.uint8), False
        bits = self._dec("bits", 32).decode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")
        return np.asarray(bits, dtype=np.uint8), True


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def evaluate(method, images: list[np.ndarray], payloads: list[int]) -> dict[str, object]:
    acc = {a: [] for a in ATTACKS}
    det = {a: [] for a in ATTACKS}
    psnrs = []
    for img, payload in zip(images, payloads, strict=True):
        marked = method.embed(img, payload)
        psnrs.append(psnr(img, marked))
        truth = payload_bits(payload)
        for name, attack in ATTACKS.items():
            bits, _ = method.read(attack(marked))
            correct = float(np.mean(bits == truth))
            acc[name].append(correct)
            det[name].append(correct == 1.0)
    return {
        "psnr_mean": float(np.mean(psnrs)),
        "psnr_min": float(np.min(psnrs)),
        "acc": {a: float(np.mean(v)) for a, v in acc.items()},
        "det": {a: float(np.mean(v)) for a, v in det.items()},
    }


def timing(method, reps: int = 7) -> float:
    img = resize_to(load_photo("astronaut"), 1024)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        method.read(method.embed(img, 0x1234ABCD))
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def false_detections(images: list[np.ndarray]) -> tuple[int, float]:
    found = 0
    zs = []
    for img in images:
        result = wm.detect_watermark(img)
        found += int(result.found)
        zs.append(result.sync_z)
    return found, float(np.max(zs)) if zs else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="marked test images")
    parser.add_argument("--unmarked", type=int, default=1000, help="unmarked images")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strength", type=float, default=wm.DEFAULT_STRENGTH)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    images = marked_set(args.images, rng)
    payloads = [int(p) for p in rng.integers(0, 2**32, len(images), dtype=np.uint64)]
    methods = [Genguard(args.strength), DwtDct()]
    results = {m.name: evaluate(m, images, payloads) for m in methods}
    speed = {m.name: timing(m) for m in methods}
    sizes = sorted({f"{i.shape[1]}x{i.shape[0]}" for i in images})
    print(f"{len(images)} marked images ({len(sizes)} sizes), 32-bit payloads, "
          f"genguard strength {args.strength}")  # fmt: skip
    g, d = results[methods[0].name], results[methods[1].name]
    print(f"\n{'attack':<15}{'genguard acc':>13}{'dwtDct acc':>12}{'ratio':>7}"
          f"{'genguard det':>14}{'dwtDct det':>12}")  # fmt: skip
    for a in ATTACKS:
        ga, da = g["acc"][a], d["acc"][a]  # type: ignore[index]
        gd, dd = g["det"][a], d["det"][a]  # type: ignore[index]
        print(f"{a:<15}{ga:>13.2%}{da:>12.2%}{ga / max(da, 1e-9):>7.2f}{gd:>14.2%}{dd:>12.2%}")
    print(f"\n{'PSNR mean/min dB':<20}{g['psnr_mean']:.1f}/{g['psnr_min']:.1f} (genguard)  "
          f"{d['psnr_mean']:.1f}/{d['psnr_min']:.1f} (dwtDct)")  # fmt: skip
    gs, ds = speed[methods[0].name], speed[methods[1].name]
    print(f"{'1024x1024 embed+detect':<24}{gs:.1f} ms (genguard)  {ds:.1f} ms (dwtDct)  "
          f"ratio {gs / ds:.2f}, 1 thread")  # fmt: skip
    if args.unmarked:
        unmarked = unmarked_set(args.unmarked, rng)
        found, max_z = false_detections(unmarked)
        print(f"{'false detections':<24}{found}/{len(unmarked)} unmarked images (genguard; "
              f"max pilot z {max_z:.1f}); dwtDct: n/a, always returns 32 bits")  # fmt: skip


if __name__ == "__main__":
    main()

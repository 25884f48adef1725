"""Cost of guarding a diffusers pipeline: the hook's overhead per image, and what a
blocked prompt saves, side by side with the unguarded pipeline (the anchor).

A tiny random-weight SD 1.x pipeline (tests/tiny_diffusers.py) generates at ``--size``
pixels with ``--steps`` steps on the CPU; its own time stands in for a real model's, so
the interesting figures are the absolute milliseconds genguard adds per image (prompt
check + NudeNet + OpenNSFW + publish, the default ``standard`` Guard) and the time of a
blocked call, which runs no denoising step at all. With a real SD 1.5 at 512 px a CPU
needs tens of seconds and a GPU ~1-2 s per image, so the blocked-prompt saving is that
whole time.

    python bench/diffusers_hook.py [--size 128] [--steps 2] [--runs 3] [--batch 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(call: Any, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="images per call")
    args = parser.parse_args()

    import diffusers
    import torch
    from tests.tiny_diffusers import build_tiny_pipeline

    from genguard.guard import Guard
    from genguard.integrations.diffusers import PromptBlocked, guard_pipeline

    folder = build_tiny_pipeline(Path(tempfile.mkdtemp(prefix="gg-hook-")))

    def load() -> Any:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    call = {
        "num_inference_steps": args.steps,
        "height": args.size,
        "width": args.size,
        "num_images_per_prompt": args.batch,
    }
    plain = load()
    guarded = guard_pipeline(load(), guard=Guard.from_policy("standard"))

    def run(pipe: Any, prompt: str) -> None:
        pipe(prompt, generator=torch.Generator("cpu").manual_seed(0), **call)

    def blocked() -> None:
        try:
            run(guarded, "a nude woman")
        except PromptBlocked:
            return
        raise SystemExit("the blocked prompt was not blocked")

    run(plain, "a red house")  # warm-up: first calls load kernels and models
    run(guarded, "a red house")
    plain_s = _timed(lambda: run(plain, "a red house"), args.runs)
    guarded_s = _timed(lambda: run(guarded, "a red house"), args.runs)
    blocked_s = _timed(blocked, args.runs)

    per_image = (statistics.median(guarded_s) - statistics.median(plain_s)) / args.batch
    print(f"tiny SD 1.x, {args.size}px, {args.steps} steps, {args.batch} images/call, CPU")
    print(f"{'':34}{'median ms/call':>16}")
    print(f"{'unguarded pipeline (anchor)':34}{statistics.median(plain_s) * 1e3:16.1f}")
    print(f"{'guard_pipeline, standard':34}{statistics.median(guarded_s) * 1e3:16.1f}")
    print(f"{'guard_pipeline, blocked prompt':34}{statistics.median(blocked_s) * 1e3:16.1f}")
    print(f"hook overhead per image: {per_image * 1e3:.1f} ms")
    print(
        f"blocked prompt: {statistics.median(blocked_s) / statistics.median(plain_s):.3f}x "
        "the unguarded call's time (no denoising step runs)"
    )


if __name__ == "__main__":
    main()

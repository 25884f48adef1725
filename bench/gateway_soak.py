"""Soak: does a ``genguard serve`` process keep a flat memory over many requests?

A leak per request (a cached image, a log buffer, an unclosed session, a metrics series
per path) is invisible in unit tests and fatal after a week. This sends a bounded,
self-stopping mix of requests to a real ``genguard serve`` subprocess on loopback (real
models, standard policy, SQLite audit log) and samples the server's RSS every
``--sample-every`` requests:

* 45 % prompt moderation (benign prompts, every one different),
* 45 % image moderation of small benign synthetic images (64-256 px, PNG or JPEG,
  multipart or raw body, a third with ``?publish=true``),
* 10 % requests that must fail (unknown JSON field -> 422, bytes that are no image ->
  415), so the error paths soak too.

After ``--warmup`` requests (models and allocator arenas settle), growth is the mean RSS
of the last quarter of samples over the mean of the first quarter. The exit status is 1
when growth is at or above ``--max-growth`` (10 %) or any answer had an unexpected status.

    python bench/gateway_soak.py [--requests 10000] [--concurrency 4] [--sample-every 250]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Run as ``python bench/gateway_soak.py``: the sibling bench script starts the gateway.
from gateway import start_gateway  # type: ignore[import-not-found]

SUBJECTS = ["a lighthouse", "a red fox", "a cup of tea", "a mountain lake", "an old bicycle"]
STYLES = ["watercolor", "film photo", "pencil sketch", "oil painting", "isometric render"]


@dataclass(frozen=True)
class Call:
    """One request: route, httpx keyword arguments, and the status it must get."""

    route: str
    kwargs: dict[str, Any]
    expect: int


@dataclass
class Tally:
    """What came back, and the server's RSS after every ``sample_every`` answers."""

    statuses: Counter = field(default_factory=Counter)
    unexpected: Counter = field(default_factory=Counter)
    samples: list[tuple[int, int]] = field(default_factory=list)  # (answers, RSS bytes)


def synthetic_image(rng: np.random.Generator) -> tuple[bytes, str]:
    """A benign picture: a colour gradient with soft noise, in a random small size."""
    width, height = (int(v) for v in rng.integers(64, 257, size=2))
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 256, size=3)
    pixels = np.stack(
        [(base[c] + xx * (c + 1) + yy * (3 - c)) % 256 for c in range(3)], axis=-1
    ).astype(np.float32)
    pixels += rng.normal(0, 6, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        image.save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    image.save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
    return buffer.getvalue(), "image/jpeg"


def make_call(index: int, rng: np.random.Generator, images: list[tuple[bytes, str]]) -> Call:
    """The ``index``-th request of the mix (deterministic for a given seed)."""
    roll = rng.random()
    if roll < 0.45:
        prompt = (
            f"{STYLES[index % len(STYLES)]} of {SUBJECTS[index % len(SUBJECTS)]}, variation {index}"
        )
        return Call("/v1/moderate/prompt", {"json": {"prompt": prompt}}, 200)
    if roll < 0.90:
        data, media_type = images[index % len(images)]
        route = "/v1/moderate/image" + ("?publish=true" if index % 3 == 0 else "")
        if index % 2:
            return Call(route, {"files": {"image": ("x", data, media_type)}}, 200)
        return Call(route, {"content": data, "headers": {"Content-Type": media_type}}, 200)
    if roll < 0.95:
        return Call("/v1/moderate/prompt", {"json": {"prompt": "a cat", "negativ": "x"}}, 422)
    return Call(
        "/v1/moderate/image",
        {"content": b"not an image " * 8, "headers": {"Content-Type": "image/png"}},
        415,
    )


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {pid}") from None


async def drive(
    url: str,
    key: str,
    calls: list[Call],
    concurrency: int,
    deadline: float,
    on_answer: Any,
) -> int:
    """Send ``calls`` with ``concurrency`` workers; stop early at ``deadline``. Returns sent."""
    import httpx

    next_index = 0
    headers = {"Authorization": f"Bearer {key}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < len(calls) and time.monotonic() < deadline:
            call = calls[next_index]
            next_index += 1
            kwargs = dict(call.kwargs)
            kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
            response = await client.post(call.route, **kwargs)
            on_answer(call, response.status_code)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return next_index


def growth(samples: list[tuple[int, int]]) -> tuple[float, float, float]:
    """(first-quarter mean RSS, last-quarter mean RSS, relative growth)."""
    quarter = max(1, len(samples) // 4)
    first = statistics.fmean(rss for _, rss in samples[:quarter])
    last = statistics.fmean(rss for _, rss in samples[-quarter:])
    return first, last, (last - first) / first


def slope_per_1000(samples: list[tuple[int, int]]) -> float:
    """Least-squares RSS trend in MiB per 1000 requests (0 with fewer than 2 samples)."""
    if len(samples) < 2:
        return 0.0
    xs = np.array([n for n, _ in samples], dtype=float)
    ys = np.array([rss for _, rss in samples], dtype=float) / 2**20
    return float(np.polyfit(xs, ys, 1)[0] * 1000)


def report(tally: Tally, sent: int, seconds: float, args: argparse.Namespace) -> bool:
    """Print samples and the verdict; True when memory stayed flat and answers were right."""
    mib = 2**20
    print(f"\nsoak: {sent} requests in {seconds:.0f} s ({sent / seconds:.1f} req/s), "
          f"concurrency {args.concurrency}, warm-up {args.warmup}")  # fmt: skip
    print(f"statuses: {dict(sorted(tally.statuses.items()))}")
    print(f"{'answers':>8} {'RSS MiB':>9}")
    for answers, rss in tally.samples:
        print(f"{answers:>8} {rss / mib:>9.1f}")
    if len(tally.samples) < 4:
        print("too few samples to judge growth")
        return False
    first, last, rel = growth(tally.samples)
    print(
        f"\nRSS first quarter {first / mib:.1f} MiB, last quarter {last / mib:.1f} MiB: "
        f"growth {rel * 100:+.2f} % (limit {args.max_growth * 100:.0f} %), "
        f"trend {slope_per_1000(tally.samples):+.2f} MiB per 1000 requests"
    )
    if tally.unexpected:
        print(f"UNEXPECTED answers (route, expected, got): {dict(tally.unexpected)}")
    ok = rel < args.max_growth and not tally.unexpected and sent == args.requests
    print("PASS" if ok else "FAIL")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500, help="requests before sampling")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sample-every", type=int, default=250)
    parser.add_argument("--workers", type=int, default=4, help="gateway worker threads")
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--max-seconds", type=float, default=1800, help="hard stop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    images = [synthetic_image(rng) for _ in range(48)]
    warmup = [make_call(i, rng, images) for i in range(args.warmup)]
    calls = [make_call(args.warmup + i, rng, images) for i in range(args.requests)]
    tally = Tally()

    with tempfile.TemporaryDirectory(prefix="genguard-soak-") as tmp:
        proc, url, key = start_gateway(Path(tmp), "standard", args.workers)
        try:
            deadline = time.monotonic() + args.max_seconds
            asyncio.run(drive(url, key, warmup, args.concurrency, deadline, lambda *_: None))
            tally.samples.append((0, rss_bytes(proc.pid)))
            answered = 0

            def on_answer(call: Call, status: int) -> None:
                nonlocal answered
                answered += 1
                tally.statuses[status] += 1
                if status != call.expect:
                    tally.unexpected[(call.route, call.expect, status)] += 1
                if answered % args.sample_every == 0:
                    tally.samples.append((answered, rss_bytes(proc.pid)))

            started = time.perf_counter()
            sent = asyncio.run(drive(url, key, calls, args.concurrency, deadline, on_answer))
            seconds = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return 0 if report(tally, sent, seconds, args) else 1


if __name__ == "__main__":
    sys.exit(main())

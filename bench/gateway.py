"""Gateway throughput and latency: HTTP on loopback vs the same Guard called in-process.

For ``/v1/moderate/prompt`` and ``/v1/moderate/image`` (small benign photos) a bounded,
self-stopping load loop sends ``--requests`` requests at ``--concurrency`` to a real
``genguard serve`` subprocess (so client and server do not share a GIL). The anchor runs
the same work on the same kind of Guard in this process, at the same concurrency, so the
difference between the rows is what HTTP, auth, rate limiting and the audit log cost.
Then the rate limiter's decisions per second, in memory and (when ``redis-server`` is
installed) in a real Redis started for the run.

    python bench/gateway.py [--requests 200] [--concurrency 8] [--policy standard]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROMPTS = [
    "a watercolor painting of a lighthouse at dawn",
    "portrait of an astronaut in a garden, soft light",
    "a cup of coffee on a wooden table, film photo",
    "a red fox in the snow, national geographic style",
    "isometric city block at night, neon signs, rain",
]


def benign_images(count: int = 8, side: int = 320) -> list[bytes]:
    """Small JPEGs of scikit-image's sample photos (or gradients without scikit-image)."""
    import numpy as np
    from PIL import Image

    try:
        import skimage.data

        names = ("astronaut", "coffee", "chelsea", "rocket")
        sources = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in names]
    except ImportError:
        ramp = np.linspace(0, 255, side, dtype=np.uint8)
        sources = [Image.fromarray(np.dstack([ramp[None, :].repeat(side, 0)] * 3))]
    images = []
    for index in range(count):
        image = sources[index % len(sources)].copy()
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85 + index % 10)
        images.append(buffer.getvalue())
    return images


def summarise(name: str, latencies: list[float], wall: float, errors: int = 0) -> dict:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "name": name,
        "n": len(latencies),
        "rps": len(latencies) / wall,
        "p50": statistics.median(ordered) * 1000,
        "p99": p99 * 1000,
        "errors": errors,
    }


# -- in-process anchor --------------------------------------------------------------------


def run_inprocess(name: str, work: Callable[[int], object], requests: int, conc: int) -> dict:
    def timed(index: int) -> float:
        started = time.perf_counter()
        work(index)
        return time.perf_counter() - started

    for index in range(min(4, requests)):  # warm-up: models loaded, caches primed
        work(index)
    started = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        latencies = list(pool.map(timed, range(requests)))
    return summarise(name, latencies, time.perf_counter() - started)


# -- HTTP load loop -----------------------------------------------------------------------


async def http_load(
    url: str, key: str, route: str, bodies: list[dict], requests: int, conc: int
) -> tuple[list[float], float, int]:
    """Exactly ``requests`` requests by ``conc`` workers; stops by itself."""
    import httpx

    latencies: list[float] = []
    errors = 0
    next_index = 0
    headers = {"Authorization": f"Bearer {key}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index, errors
        while next_index < requests:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            response = await client.post(route, headers=headers, **bodies[index % len(bodies)])
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=conc)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        for body in bodies[:4]:  # warm-up
            await client.post(route, headers=headers, **body)
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(conc)))
    return latencies, time.perf_counter() - started, errors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"genguard serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("gateway did not become healthy")


def start_gateway(folder: Path, policy: str, workers: int) -> tuple[subprocess.Popen, str, str]:
    from genguard.server import models  # noqa: F401
    from genguard.server.auth import KeyStore
    from genguard.store import open_store

    port = free_port()
    config = folder / "genguard.toml"
    config.write_text(
        f'[server]\nport = {port}\nworkers = {workers}\nlog_level = "warning"\n'
        f'[store]\ndata_dir = "{folder / "data"}"\n'
        f'[policies]\ndefault = "{policy}"\nprofiles = {{ {policy} = "{policy}" }}\n'
    )
    store = open_store(folder / "data" / "genguard.db")
    _, key = KeyStore(store).create("bench", policy, "unlimited")
    store.close()
    command = [sys.executable, "-m", "genguard.cli", "serve", "--config", str(config)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url, key


# -- rate limiter -------------------------------------------------------------------------


def limiter_rate(limiter: object, seconds: float = 1.0) -> float:
    from genguard.server.auth import Rate

    rate = Rate(10**9, 1.0)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        limiter.hit(f"bench-{count % 16}", rate)  # type: ignore[attr-defined]
        count += 1
    return count / (time.perf_counter() - started)


def redis_rate() -> float | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    from genguard.server.ratelimit import RedisRateLimiter

    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0")
        result = limiter_rate(limiter)
        limiter.close()
        return result
    finally:
        proc.terminate()
        proc.wait()


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--policy", default="standard")
    parser.add_argument("--workers", type=int, default=4, help="gateway worker threads")
    args = parser.parse_args()

    from genguard.guard import Guard

    images = benign_images()
    guard = Guard.from_policy(args.policy)
    rows = [
        run_inprocess(
            "in-process Guard.check_prompt",
            lambda i: guard.check_prompt(PROMPTS[i % len(PROMPTS)]),
            args.requests,
            args.concurrency,
        ),
        run_inprocess(
            "in-process Guard.check_image",
            lambda i: guard.check_image(images[i % len(images)]),
            args.requests,
            args.concurrency,
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="genguard-bench-") as tmp:
        proc, url, key = start_gateway(Path(tmp), args.policy, args.workers)
        try:
            prompt_bodies = [{"json": {"prompt": p}} for p in PROMPTS]
            image_bodies = [{"files": {"image": ("x.jpg", data, "image/jpeg")}} for data in images]
            for name, route, bodies in (
                ("HTTP /v1/moderate/prompt", "/v1/moderate/prompt", prompt_bodies),
                ("HTTP /v1/moderate/image", "/v1/moderate/image", image_bodies),
            ):
                latencies, wall, errors = asyncio.run(
                    http_load(url, key, route, bodies, args.requests, args.concurrency)
                )
                rows.append(summarise(name, latencies, wall, errors))
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    rows.sort(key=lambda r: ("image" in r["name"], "HTTP" in r["name"]))
    from genguard.server.ratelimit import MemoryRateLimiter

    memory = limiter_rate(MemoryRateLimiter())
    redis = redis_rate()
    cores = os.cpu_count()
    print(
        f"\nrequests={args.requests} concurrency={args.concurrency} policy={args.policy} "
        f"cores={cores}"
    )
    print(f"{'path':34} {'n':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for row in rows:
        print(
            f"{row['name']:34} {row['n']:>5} {row['rps']:>8.1f} {row['p50']:>8.1f} "
            f"{row['p99']:>8.1f} {row['errors']:>6}"
        )
    print(f"\n{'rate limiter':34} {'decisions/s':>12}")
    print(f"{'in memory':34} {memory:>12,.0f}")
    redis_text = f"{redis:>12,.0f}" if redis is not None else "   (no redis-server)"
    print(f"{'redis (Lua script, one client)':34} {redis_text}")


if __name__ == "__main__":
    main()

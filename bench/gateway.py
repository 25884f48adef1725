"""Gateway throughput and latency: HTTP on loopback vs the same Guard called in-process.

For ``/v1/moderate/prompt`` and ``/v1/moderate/image`` (512x512 benign photos) a bounded,
self-stopping load loop sends ``--requests`` requests at each ``--concurrency`` level
(1, 8 and 32 by default) to a real ``genguard serve`` subprocess (so client and server do
not share a GIL). The anchor runs the same Guard calls in this process at the same
concurrency, so the difference is what HTTP, auth, rate limiting, the PDQ hash and the
audit-row commit cost.

Fairness: the gateway runs the work on ``--workers`` threads whatever the number of
clients (extra requests wait in its queue). The anchor does the same: ``concurrency``
client threads submit to a pool of ``--workers`` threads and wait, so both sides offer the
same load to the same parallelism and both latencies include the wait for a worker.

Then the rate limiter's decisions per second, in memory and (when ``redis-server`` is
installed) in a real Redis started for the run.

    python bench/gateway.py [--requests 200] [--concurrency 1 8 32] [--workers 4] [--repeat 3]
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


def benign_images(count: int = 8, side: int = 512) -> list[bytes]:
    """``side`` x ``side`` JPEGs of scikit-image's sample photos (gradients without it)."""
    import numpy as np
    from PIL import Image, ImageOps

    try:
        import skimage.data

        names = ("astronaut", "coffee", "chelsea", "rocket")
        sources = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in names]
    except ImportError:
        ramp = np.linspace(0, 255, side, dtype=np.uint8)
        sources = [Image.fromarray(np.dstack([ramp[None, :].repeat(side, 0)] * 3))]
    images = []
    for index in range(count):
        image = ImageOps.fit(sources[index % len(sources)], (side, side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85 + index % 10)
        images.append(buffer.getvalue())
    return images


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) of this process or of process ``pid``.

    On a machine shared with other jobs the rates swing with the neighbours' load; CPU
    per request does not, and it is what bounds throughput once the cores are busy.
    """
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(
    route: str,
    path: str,
    conc: int,
    latencies: list[float],
    wall: float,
    cpu: float,
    errors: int = 0,
    client_cpu: float = 0.0,
) -> dict:
    """Rate, latencies and CPU per request of one run (``cpu``: the process doing the work;
    ``client_cpu``: the HTTP load generator's, which a real client pays elsewhere)."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "route": route,
        "path": path,
        "conc": conc,
        "n": len(latencies),
        "rps": len(latencies) / wall,
        "p50": statistics.median(ordered) * 1000,
        "p99": p99 * 1000,
        "cpu": cpu / len(latencies) * 1000,
        "client_cpu": client_cpu / len(latencies) * 1000,
        "errors": errors,
    }


def median_row(rounds: list[dict]) -> dict:
    """One row from repeated rounds: medians of rate and latencies, totals of counts."""
    row = dict(rounds[0])
    for name in ("rps", "p50", "p99", "cpu", "client_cpu"):
        row[name] = statistics.median(r[name] for r in rounds)
    row["n"] = sum(r["n"] for r in rounds)
    row["errors"] = sum(r["errors"] for r in rounds)
    return row


# -- in-process anchor --------------------------------------------------------------------


def run_inprocess(
    work: Callable[[int], object], requests: int, conc: int, workers: int
) -> tuple[list[float], float, float]:
    """``conc`` clients submit ``work`` to ``workers`` threads, as the gateway's pool does."""
    for index in range(min(4, requests)):  # warm-up: models loaded, caches primed
        work(index)
    with ThreadPoolExecutor(workers) as pool:

        def timed(index: int) -> float:
            started = time.perf_counter()
            pool.submit(work, index).result()
            return time.perf_counter() - started

        started, cpu = time.perf_counter(), cpu_seconds()
        with ThreadPoolExecutor(conc) as clients:
            latencies = list(clients.map(timed, range(requests)))
    return latencies, time.perf_counter() - started, cpu_seconds() - cpu


# -- HTTP load loop -----------------------------------------------------------------------


async def http_load(
    url: str,
    key: str,
    route: str,
    bodies: list[dict],
    requests: int,
    conc: int,
    server_pid: int | None = None,
) -> tuple[list[float], float, int, float, float]:
    """Exactly ``requests`` requests by ``conc`` workers; stops by itself.

    Returns latencies, wall time, errors, and the CPU seconds of the server and the client.
    """
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
        started, client_cpu, server = time.perf_counter(), cpu_seconds(), server_cpu(server_pid)
        await asyncio.gather(*(worker(client) for _ in range(conc)))
        server = server_cpu(server_pid) - server
        client_cpu = cpu_seconds() - client_cpu
    return latencies, time.perf_counter() - started, errors, server, client_cpu


def server_cpu(pid: int | None) -> float:
    return 0.0 if pid is None else cpu_seconds(pid)


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


def print_rows(rows: list[dict]) -> None:
    print(f"{'route':8} {'conc':>4} {'path':9} {'n':>5} {'req/s':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'CPU ms/req':>10} {'client CPU':>10} {'errors':>6}")  # fmt: skip
    for row in rows:
        client = f"{row['client_cpu']:>10.2f}" if row["path"] == "HTTP" else f"{'':>10}"
        print(
            f"{row['route']:8} {row['conc']:>4} {row['path']:9} {row['n']:>5} "
            f"{row['rps']:>8.1f} {row['p50']:>8.1f} {row['p99']:>8.1f} {row['cpu']:>10.2f} "
            f"{client} {row['errors']:>6}"
        )


def print_ratios(rows: list[dict]) -> None:
    """The gateway's overhead at each route and concurrency, by rate and by CPU.

    ``req/s Guard/HTTP`` is the whole overhead of going through the gateway (target:
    under 1.15 at concurrency 8), load generator included, as it shares the machine.
    ``CPU HTTP/Guard`` compares the server's CPU per request with the Guard's alone:
    the gateway's own cost without the client's, and without the neighbours' noise that
    moves every rate on a shared machine. ``pipeline`` columns split the cost: the same
    pipeline (Guard + SHA-256 + PDQ + audit row) called in-process, against HTTP.
    """
    by_key = {(r["route"], r["conc"], r["path"]): r for r in rows}
    print(f"\n{'route':8} {'conc':>4} {'req/s Guard/HTTP':>17} {'CPU HTTP/Guard':>15} "
          f"{'CPU pipeline/Guard':>19} {'CPU HTTP/pipeline':>18} {'p50 HTTP/Guard':>15} "
          f"{'p99 HTTP/Guard':>15}")  # fmt: skip
    for route, conc, path in by_key:
        if path != "Guard":
            continue
        guard, http = by_key[(route, conc, "Guard")], by_key[(route, conc, "HTTP")]
        pipeline = by_key[(route, conc, "pipeline")]
        print(
            f"{route:8} {conc:>4} {guard['rps'] / http['rps']:>17.2f} "
            f"{http['cpu'] / guard['cpu']:>15.2f} {pipeline['cpu'] / guard['cpu']:>19.2f} "
            f"{http['cpu'] / pipeline['cpu']:>18.2f} {http['p50'] / guard['p50']:>15.2f} "
            f"{http['p99'] / guard['p99']:>15.2f}"
        )


def in_process_paths(
    folder: Path, policy: str, workers: int, prompts: list[str], images: list[bytes]
) -> tuple[dict[str, dict[str, Callable[[int], object]]], Callable[[], None]]:
    """The work of each route, as a bare Guard call and as the gateway's pipeline.

    Both use the Guard exactly as ``genguard serve`` builds it (same policy, detectors and
    thread counts), from the gateway's own registry; the pipeline also hashes the content
    (SHA-256, PDQ) and commits an audit row to its own SQLite file, as a request does.
    """
    from genguard.server.app import build_gateway
    from genguard.server.config import parse_config
    from genguard.server.pipeline import Caller
    from genguard.server.schemas import PromptRequest

    config = parse_config(
        {
            "server": {"workers": workers},
            "store": {"data_dir": str(folder / "inprocess")},
            "policies": {"default": policy, "profiles": {policy: policy}},
        }
    )
    gateway = build_gateway(config)
    guard = gateway.guards.get(policy)
    pipeline = gateway.pipeline
    bodies = [PromptRequest(prompt=p) for p in prompts]

    def caller(index: int) -> Caller:
        return Caller("bench", policy, f"bench-{index:08d}")

    paths: dict[str, dict[str, Callable[[int], object]]] = {
        "prompt": {
            "Guard": lambda i: guard.check_prompt(prompts[i % len(prompts)]),
            "pipeline": lambda i: pipeline.moderate_prompt(
                guard, bodies[i % len(bodies)], caller(i)
            ),
        },
        "image": {
            "Guard": lambda i: guard.check_image(images[i % len(images)]),
            "pipeline": lambda i: pipeline.moderate_image(
                guard, images[i % len(images)], caller(i)
            ),
        },
    }
    return paths, gateway.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per route, path and level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--policy", default="standard")
    parser.add_argument("--workers", type=int, default=4, help="gateway worker threads")
    parser.add_argument("--side", type=int, default=512, help="image width and height")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per row (median)")
    args = parser.parse_args()

    images = benign_images(side=args.side)
    # Every prompt differs (no cache can help either side); all paths send the same ones.
    prompts = [f"{PROMPTS[i % len(PROMPTS)]} #{i}" for i in range(max(args.requests, 8))]
    http_routes = {
        "prompt": ("/v1/moderate/prompt", [{"json": {"prompt": p}} for p in prompts]),
        "image": (
            "/v1/moderate/image",
            [{"files": {"image": ("x.jpg", data, "image/jpeg")}} for data in images],
        ),
    }
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="genguard-bench-") as tmp:
        work, close = in_process_paths(Path(tmp), args.policy, args.workers, prompts, images)
        proc, url, key = start_gateway(Path(tmp), args.policy, args.workers)
        try:
            for route in ("prompt", "image"):
                # A discarded round first: lazily built parts (the prompt analyser, which
                # the gateway does not preload) and caches warm up on every path.
                warm = min(args.requests, 40)
                for path in ("Guard", "pipeline"):
                    run_inprocess(work[route][path], warm, 4, args.workers)
                target, bodies = http_routes[route]
                asyncio.run(http_load(url, key, target, bodies, warm, 4))
                for conc in args.concurrency:
                    # The three paths back to back, ``--repeat`` times: drift in the
                    # machine's background load hits them alike, and the median drops
                    # the round a neighbour's burst landed on.
                    runs: dict[str, list[dict]] = {"Guard": [], "pipeline": [], "HTTP": []}
                    for _round in range(args.repeat):
                        for path in ("Guard", "pipeline"):
                            latencies, wall, cpu = run_inprocess(
                                work[route][path], args.requests, conc, args.workers
                            )
                            runs[path].append(summarise(route, path, conc, latencies, wall, cpu))
                        target, bodies = http_routes[route]
                        latencies, wall, errors, cpu, client_cpu = asyncio.run(
                            http_load(url, key, target, bodies, args.requests, conc, proc.pid)
                        )
                        runs["HTTP"].append(
                            summarise(route, "HTTP", conc, latencies, wall, cpu, errors, client_cpu)
                        )
                    rows.extend(median_row(found) for found in runs.values())
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            close()

    from genguard.server.ratelimit import MemoryRateLimiter

    memory = limiter_rate(MemoryRateLimiter())
    redis = redis_rate()
    print(
        f"\nrequests={args.requests} x {args.repeat} rounds per row (medians), "
        f"policy={args.policy}, images {args.side}x{args.side} JPEG (multipart upload), "
        f"gateway workers={args.workers}, cores={os.cpu_count()}"
    )
    print_rows(rows)
    print_ratios(rows)
    print(f"\n{'rate limiter':34} {'decisions/s':>12}")
    print(f"{'in memory':34} {memory:>12,.0f}")
    redis_text = f"{redis:>12,.0f}" if redis is not None else "   (no redis-server)"
    print(f"{'redis (Lua script, one client)':34} {redis_text}")


if __name__ == "__main__":
    main()

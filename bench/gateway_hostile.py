"""Hostile mix: do legitimate requests stay fast, and decisions stay recorded, under attack?

A gateway on a loopback socket (a subprocess: client and server do not share a GIL; fast
fake detectors by default, ``--real-models`` for ``genguard serve`` with the real ones)
gets legitimate traffic at a fixed rate (``--rate`` requests per second of each kind, sent
open-loop so a slow answer does not slow the sending): a 256 px PNG to
``/v1/moderate/image`` (multipart) and a prompt to ``/v1/moderate/prompt``. Their p50 and
p99 latencies are measured first on a quiet gateway, then while another process runs a
hostile mix against it:

* decompression bombs, in turn: a 23 KB GIF asking for 64 gigapixels
  (``tests/hostile.gif_bomb``), a 16-page TIFF of 8000x8000 pages (each page at the pixel
  limit, the file far over the decode budget), and an 8000x8000 PNG (64 MP: exactly at
  the default pixel limit, so it is decoded in full: the costliest upload the defaults
  accept), sent back to back by ``--bomb-clients`` clients under a 60/min key;
* slow bodies: ``--slow`` connections that send headers announcing 1 MB and then trickle
  one byte a second (cut off by ``server.body_timeout_s``), and ``--stall-headers``
  connections that never finish their headers (cut off by ``server.header_timeout_s``);
  each reconnects once cut off;
* bursts over the rate limit: ``--burst-size`` prompts at once every ``--burst-every``
  seconds under a ``--burst-rate`` key;
* a store fault in the middle of the phase: the SQLite file moved away (``--fault move``;
  moved back after ``--fault-seconds``, same inode, so the gateway recovers) or made
  read-only (``--fault chmod``; no effect when running as root). Requests meanwhile must
  get ``503 store_unavailable``.

Afterwards the gateway is stopped and every acknowledged decision (every 200 with an
``audit_id``, legitimate or hostile) is looked up in the audit log by id and request id.
Printed: quiet and hostile p50/p99 of the legitimate 200s and their ratio (target: hostile
p99 under 2x quiet p99), status codes per request kind, and "acknowledged but missing: N"
(target 0). Exit status 1 when a target is missed.

    python bench/gateway_hostile.py [--quiet-seconds 15] [--hostile-seconds 40] [--rate 10]
        [--bomb-clients 2] [--slow 20] [--stall-headers 10] [--burst-size 100]
        [--fault move|chmod|none] [--max-connections N] [--body-timeout S] [--real-models]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Run as ``python bench/gateway_hostile.py``: the sibling bench script has the helpers.
from gateway import PROMPTS, free_port, wait_healthy  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
LEGIT = ("image", "prompt")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Answer:
    """One request's outcome: an HTTP status, or what happened to the connection."""

    kind: str
    status: int | str
    seconds: float
    started: float = 0.0  # time.time() at send, to place it against the store fault
    audit_id: int | None = None
    request_id: str | None = None
    code: str | None = None  # the error code of a non-200 JSON answer


# -- payloads -----------------------------------------------------------------------------


def legit_png(side: int = 256) -> bytes:
    """A benign gradient with soft noise, ``side`` x ``side``."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:side, 0:side]
    pixels = np.stack([(xx + yy * c) % 256 for c in (1, 2, 3)], axis=-1).astype(np.float32)
    pixels += rng.normal(0, 6, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def bombs(side: int, pages: int) -> list[tuple[str, bytes, str]]:
    """(name, bytes, content type) of each decompression bomb."""
    sys.path.insert(0, str(ROOT))
    from tests.hostile import gif_bomb

    page = Image.new("1", (side, side))
    tiff, png = io.BytesIO(), io.BytesIO()
    page.save(
        tiff,
        format="TIFF",
        save_all=True,
        append_images=[page] * (pages - 1),
        compression="tiff_deflate",
    )
    page.save(png, format="PNG")
    return [
        ("gif", gif_bomb(8000, 8000, 1000), "image/gif"),
        ("tiff", tiff.getvalue(), "image/tiff"),
        ("png64mp", png.getvalue(), "image/png"),
    ]


# -- the gateway --------------------------------------------------------------------------


class QuickDetector:
    """Finds nothing after ``ms`` milliseconds of sleep (a model that releases the GIL)."""

    name = "quick"
    categories = ("sexual_explicit", "nudity", "suggestive", "face", "violence")

    def __init__(self, ms: float) -> None:
        self.seconds = ms / 1000

    def detect(self, frames: Sequence[np.ndarray]) -> list[Any]:
        from genguard.detectors.base import DetectorOutput

        time.sleep(self.seconds)
        return [DetectorOutput(backend=self.name, regions=[]) for _ in frames]


def serve(config_path: str, detector_ms: float) -> None:
    """``--serve``: the gateway as ``genguard serve`` runs it, with the quick detector."""
    import uvicorn

    from genguard.guard import Guard
    from genguard.policy import load_policy
    from genguard.server.app import create_app
    from genguard.server.config import load_config
    from genguard.server.connections import uvicorn_options
    from genguard.text.analyser import PromptAnalyser

    settings = load_config(config_path)
    policy = load_policy("standard")
    analyser = PromptAnalyser(semantic=False, max_chars=policy.prompt.max_chars)
    guard = Guard(policy, [QuickDetector(detector_ms)], prompt_analyser=analyser)
    app = create_app(settings, guards={"standard": guard})
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        **uvicorn_options(settings.server),
    )


def write_config(folder: Path, port: int, args: argparse.Namespace) -> Path:
    server = [f"port = {port}", f"workers = {args.workers}", 'log_level = "warning"']
    for name, value in (
        ("max_connections", args.max_connections),
        ("body_timeout_s", args.body_timeout),
        ("header_timeout_s", args.header_timeout),
    ):
        if value is not None:
            server.append(f"{name} = {value}")
    config = folder / "genguard.toml"
    config.write_text(
        "[server]\n" + "\n".join(server) + "\n"
        f'[store]\ndata_dir = "{folder / "data"}"\n'
        '[policies]\ndefault = "standard"\nprofiles = { standard = "standard" }\n'
        "[detectors]\nthreads = 1\n"
    )
    return config


def create_keys(database: Path, burst_rate: str) -> dict[str, str]:
    from genguard.server import models  # noqa: F401  (declares the tables)
    from genguard.server.auth import KeyStore
    from genguard.store import open_store

    store = open_store(database)
    keys = KeyStore(store)
    rates = {"legit": "unlimited", "bombs": "60/min", "slow": "60/min", "burst": burst_rate}
    secrets = {name: keys.create(name, "standard", rate)[1] for name, rate in rates.items()}
    store.close()
    return secrets


def start_server(config: Path, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    if args.real_models:
        command = [sys.executable, "-m", "genguard.cli", "serve", "--config", str(config)]
    else:
        command = [sys.executable, __file__, "--serve", str(config)]
        command += ["--detector-ms", str(args.detector_ms)]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


# -- requests -----------------------------------------------------------------------------


async def post(
    client: Any, kind: str, key: str, route: str, **kwargs: Any
) -> Answer:  # client: httpx.AsyncClient
    import httpx

    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    wall, started = time.time(), time.perf_counter()
    try:
        response = await client.post(route, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        return Answer(kind, type(exc).__name__, time.perf_counter() - started, wall)
    seconds = time.perf_counter() - started
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200:
        audit_id = body.get("audit_id")
        return Answer(kind, 200, seconds, wall, audit_id, body.get("request_id"))
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return Answer(kind, response.status_code, seconds, wall, code=code)


async def legit_load(url: str, key: str, seconds: float, rate: float) -> list[Answer]:
    """``rate`` requests/s of each legitimate kind for ``seconds``, open-loop."""
    import httpx

    image = legit_png()
    loop = asyncio.get_running_loop()
    tasks = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        start, index = loop.time(), 0
        while loop.time() < start + seconds:
            files = {"image": ("photo.png", image, "image/png")}
            prompt = {"prompt": f"{PROMPTS[index % len(PROMPTS)]} #{index}"}
            for call in (
                post(client, "image", key, "/v1/moderate/image", files=files),
                post(client, "prompt", key, "/v1/moderate/prompt", json=prompt),
            ):
                tasks.append(asyncio.create_task(call))
            index += 1
            await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
        return list(await asyncio.gather(*tasks))


async def bomb_client(
    client: Any, key: str, payloads: list, end: float, pause: float, offset: int
) -> list[Answer]:
    answers, loop, index = [], asyncio.get_running_loop(), offset
    while loop.time() < end:
        name, data, media_type = payloads[index % len(payloads)]
        index += 1
        headers = {"Content-Type": media_type}
        route = "/v1/moderate/image"
        answers.append(
            await post(client, f"bomb-{name}", key, route, content=data, headers=headers)
        )
        await asyncio.sleep(pause)
    return answers


def raw_head(key: str, route: str, length: int) -> bytes:
    return (
        f"POST {route} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: image/png\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def stalled_client(port: int, kind: str, first: bytes, end: float) -> list[Answer]:
    """Send ``first``, then one byte a second until the server answers or closes."""
    answers, loop = [], asyncio.get_running_loop()
    while loop.time() < end:
        wall, started = time.time(), time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError as exc:
            answers.append(Answer(kind, type(exc).__name__, 0.0, wall))
            await asyncio.sleep(0.5)
            continue

        async def trickle(writer: asyncio.StreamWriter = writer) -> None:
            writer.write(first)
            while True:
                await asyncio.sleep(1.0)
                writer.write(b"X")
                await writer.drain()

        sender = asyncio.create_task(trickle())
        status: int | str
        try:
            line = await asyncio.wait_for(reader.readline(), max(0.1, end - loop.time()))
            parts = line.split(b" ", 2)
            status = int(parts[1]) if line.startswith(b"HTTP/1.1 ") else "closed"
        except TimeoutError:
            status = "held at end"
        except OSError:
            status = "closed"
        sender.cancel()
        writer.close()
        seconds = time.perf_counter() - started
        answers.append(Answer(kind, status, seconds, wall))
        if seconds < 1:  # refused at once (503): reconnect, but do not spin
            await asyncio.sleep(0.5)
    return answers


async def burst_client(client: Any, key: str, end: float, every: float, size: int) -> list[Answer]:
    answers: list[Answer] = []
    loop, wave = asyncio.get_running_loop(), 0
    while loop.time() < end:
        wave += 1
        calls = [
            post(client, "burst", key, "/v1/moderate/prompt", json={"prompt": f"burst {wave}.{i}"})
            for i in range(size)
        ]
        answers.extend(await asyncio.gather(*calls))
        await asyncio.sleep(every)
    return answers


async def hostile_mix(url: str, port: int, keys: dict[str, str], opts: dict) -> list[Answer]:
    import httpx

    payloads = opts["payloads"]
    end = asyncio.get_running_loop().time() + opts["seconds"]
    body_head = raw_head(keys["slow"], "/v1/moderate/image", 1_000_000) + b"\x89PNG\r\n\x1a\n.."
    header_head = f"POST /v1/moderate/image HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode()
    limits = httpx.Limits(max_connections=opts["burst_size"] + opts["bomb_clients"] + 4)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        jobs = [
            *(
                bomb_client(client, keys["bombs"], payloads, end, opts["bomb_pause"], offset)
                for offset in range(opts["bomb_clients"] if payloads else 0)
            ),
            *(stalled_client(port, "slow-body", body_head, end) for _ in range(opts["slow"])),
            *(
                stalled_client(port, "slow-headers", header_head, end)
                for _ in range(opts["stall_headers"])
            ),
            burst_client(client, keys["burst"], end, opts["burst_every"], opts["burst_size"]),
        ]
        results = await asyncio.gather(*jobs)
    return [answer for answers in results for answer in answers]


def hostile_process(url: str, port: int, keys: dict, opts: dict, ready: Any, go: Any, out: Any):
    """The attacker, in its own process: builds its payloads, waits for ``go``, attacks."""
    payloads = [b for b in bombs(opts["bomb_side"], opts["tiff_pages"]) if b[0] in opts["bombs"]]
    opts = {**opts, "payloads": payloads}
    ready.set()
    go.wait()
    out.put(asyncio.run(hostile_mix(url, port, keys, opts)))


# -- the store fault ----------------------------------------------------------------------


async def store_fault(database: Path, mode: str, at: float, seconds: float) -> tuple[float, float]:
    """Break the SQLite file ``at`` s from now for ``seconds``; the window in time.time()."""
    await asyncio.sleep(at)
    started = time.time()
    moved = database.with_name(database.name + ".moved")
    folder_mode = database.parent.stat().st_mode & 0o777
    if mode == "move":
        os.rename(database, moved)  # same inode when moved back: the gateway recovers
    elif mode == "chmod":
        database.chmod(0o444)
        database.parent.chmod(0o555)
    try:
        await asyncio.sleep(seconds)
    finally:
        if mode == "move":
            os.rename(moved, database)
        elif mode == "chmod":
            database.parent.chmod(folder_mode)
            database.chmod(0o644)
    return started, time.time()


async def hostile_phase(
    url: str, key: str, args: argparse.Namespace, database: Path
) -> tuple[list[Answer], tuple[float, float] | None]:
    at = max(0.0, (args.hostile_seconds - args.fault_seconds) / 2)
    fault = None
    if args.fault != "none":
        fault = asyncio.create_task(store_fault(database, args.fault, at, args.fault_seconds))
    answers = await legit_load(url, key, args.hostile_seconds, args.rate)
    return answers, (await fault if fault is not None else None)


# -- report -------------------------------------------------------------------------------


def percentiles(answers: list[Answer]) -> tuple[int, float, float]:
    ordered = sorted(a.seconds for a in answers)
    if not ordered:
        return 0, float("nan"), float("nan")
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return len(ordered), statistics.median(ordered) * 1000, p99 * 1000


def missing_decisions(database: Path, answers: list[Answer]) -> tuple[int, list[Answer]]:
    """(acknowledged decisions, those whose row is absent or belongs to another request)."""
    from sqlalchemy import select

    from genguard.server.models import AuditRow
    from genguard.store import open_store

    acknowledged = [a for a in answers if a.status == 200 and a.audit_id is not None]
    store = open_store(database)
    try:
        with store.session() as session:
            query = select(AuditRow.id, AuditRow.request_id)
            rows = {row_id: request_id for row_id, request_id in session.execute(query)}
    finally:
        store.close()
    return len(acknowledged), [a for a in acknowledged if rows.get(a.audit_id) != a.request_id]


def report(
    quiet: list[Answer],
    hostile: list[Answer],
    attack: list[Answer],
    fault: tuple[float, float] | None,
    acknowledged: int,
    missing: list[Answer],
    args: argparse.Namespace,
) -> bool:
    print(f"\n{'phase':8} {'kind':7} {'200s':>5} {'p50 ms':>8} {'p99 ms':>8}")
    p99s: dict[tuple[str, str], float] = {}
    for phase, answers in (("quiet", quiet), ("hostile", hostile)):
        for kind in LEGIT:
            n, p50, p99 = percentiles([a for a in answers if a.kind == kind and a.status == 200])
            p99s[(phase, kind)] = p99
            print(f"{phase:8} {kind:7} {n:>5} {p50:>8.1f} {p99:>8.1f}")
    ok = True
    for kind in LEGIT:
        ratio = p99s[("hostile", kind)] / p99s[("quiet", kind)]
        verdict = "ok" if ratio < 2 else "MISSED"
        ok &= ratio < 2
        print(f"p99 hostile/quiet, {kind}: {ratio:.2f} (target < 2: {verdict})")

    print("\nstatus per request kind (hostile phase; 'held at end': still stalled when it ended)")
    counts: dict[str, Counter] = {}
    for answer in hostile + attack:
        counts.setdefault(answer.kind, Counter())[answer.status] += 1
    for kind, counter in sorted(counts.items()):
        cells = ", ".join(f"{status}: {n}" for status, n in sorted(counter.items(), key=str))
        print(f"  {kind:13} {cells}")
    codes = Counter(a.code for a in hostile + attack if a.code)
    print(f"error codes: {dict(sorted(codes.items()))}")
    cut = [a.seconds for a in attack if a.kind.startswith("slow") and a.status == 408]
    if cut:
        print(f"stalled connections cut off with 408 after {min(cut):.1f} to {max(cut):.1f} s")
    if fault is not None:
        during = Counter(
            f"{a.status} {a.code or ''}".strip()
            for a in hostile
            if fault[0] <= a.started <= fault[1]
        )
        print(
            f"store fault ({args.fault}, {fault[1] - fault[0]:.1f} s): legitimate requests "
            f"sent during it: {dict(during)}"
        )
    print(f"\nacknowledged decisions: {acknowledged}")
    print(f"acknowledged but missing: {len(missing)}")
    for answer in missing[:10]:
        print(f"  {answer}")
    ok &= not missing
    print("PASS" if ok else "FAIL")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet-seconds", type=float, default=15)
    parser.add_argument("--hostile-seconds", type=float, default=40)
    parser.add_argument("--rate", type=float, default=10, help="legit requests/s per kind")
    parser.add_argument("--bomb-clients", type=int, default=2)
    parser.add_argument("--bombs", default="gif,tiff,png64mp", help="which bombs, in turn")
    parser.add_argument("--bomb-pause", type=float, default=0.1, help="s between bombs")
    parser.add_argument("--bomb-side", type=int, default=8000, help="TIFF page and PNG side")
    parser.add_argument("--tiff-pages", type=int, default=16)
    parser.add_argument("--slow", type=int, default=20, help="slow-body connections")
    parser.add_argument("--stall-headers", type=int, default=10, help="slow-header connections")
    parser.add_argument("--burst-size", type=int, default=100)
    parser.add_argument("--burst-every", type=float, default=5.0)
    parser.add_argument("--burst-rate", default="20/s", help="rate of the bursting key")
    parser.add_argument("--fault", choices=("move", "chmod", "none"), default="move")
    parser.add_argument("--fault-seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=4, help="gateway worker threads")
    parser.add_argument("--max-connections", type=int, help="server.max_connections")
    parser.add_argument("--body-timeout", type=float, help="server.body_timeout_s")
    parser.add_argument("--header-timeout", type=float, help="server.header_timeout_s")
    parser.add_argument("--detector-ms", type=float, default=10.0, help="fake detector time")
    parser.add_argument("--real-models", action="store_true", help="genguard serve, real models")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.detector_ms)
        return 0

    with tempfile.TemporaryDirectory(prefix="genguard-hostile-") as tmp:
        folder = Path(tmp)
        port = free_port()
        config = write_config(folder, port, args)
        database = folder / "data" / "genguard.db"
        keys = create_keys(database, args.burst_rate)
        log = folder / "server.log"
        proc = start_server(config, args, log)
        url = f"http://{HOST}:{port}"
        context = multiprocessing.get_context("spawn")
        ready, go, out = context.Event(), context.Event(), context.Queue()
        opts = {
            "seconds": args.hostile_seconds,
            "bomb_clients": args.bomb_clients,
            "bomb_pause": args.bomb_pause,
            "bomb_side": args.bomb_side,
            "bombs": args.bombs.split(","),
            "tiff_pages": args.tiff_pages,
            "slow": args.slow,
            "stall_headers": args.stall_headers,
            "burst_size": args.burst_size,
            "burst_every": args.burst_every,
        }
        attacker = context.Process(
            target=hostile_process, args=(url, port, keys, opts, ready, go, out), daemon=True
        )
        try:
            wait_healthy(url, proc)
            attacker.start()
            if not ready.wait(120):  # its payloads are built before anything is measured
                raise RuntimeError("the attacker did not get ready")
            asyncio.run(legit_load(url, keys["legit"], 2, args.rate))  # warm-up
            print(f"quiet phase: {args.quiet_seconds:.0f} s at {args.rate:g} req/s per kind")
            quiet = asyncio.run(legit_load(url, keys["legit"], args.quiet_seconds, args.rate))
            print(f"hostile phase: {args.hostile_seconds:.0f} s")
            go.set()
            hostile, fault = asyncio.run(hostile_phase(url, keys["legit"], args, database))
            attack = out.get(timeout=args.hostile_seconds + 120)
            attacker.join(30)
        finally:
            if attacker.is_alive():
                attacker.kill()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        acknowledged, missing = missing_decisions(database, quiet + hostile + attack)
        server = {
            "workers": args.workers,
            "max_connections": args.max_connections or "default",
            "body_timeout_s": args.body_timeout or "default",
            "header_timeout_s": args.header_timeout or "default",
        }
        print(
            f"\ngateway: {'real models' if args.real_models else 'fake detectors'} "
            f"({args.detector_ms:g} ms), {server}, cores={os.cpu_count()}, "
            f"server exit status {proc.returncode}"
        )
        ok = report(quiet, hostile, attack, fault, acknowledged, missing, args)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(log.read_text()[-3000:])
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

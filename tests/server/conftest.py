"""Fixtures for the gateway: Guards with synthetic signals, an app, keys, real servers.

Detectors and the prompt analyser are fakes that emit chosen *scores* for content-free
inputs (solid grey images, marker words), so every policy path is exercised without any
sensitive imagery or text. Real Redis and PostgreSQL servers are started on loopback
ports when their binaries are installed, and skipped with a reason otherwise.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from genguard.decision import Match, Region
from genguard.errors import ContentError
from genguard.guard import Guard
from genguard.policy import load_policy, parse_policy
from genguard.server.app import Gateway, create_app
from genguard.server.config import GatewayConfig, parse_config
from tests.conftest import FakeDetector, nudity_region, solid

#: Grey levels of test images and the synthetic signals the fake detector emits for them.
ALLOW_LEVEL, NUDITY_LEVEL, VIOLENCE_LEVEL = 100, 200, 50
#: Marker words of the fake prompt analyser -> the category score they produce.
PROMPT_MARKERS = {"zzviolence": "violence", "zzminor": "minor", "zzsexual": "sexual"}

REVIEW_POLICY = """
extends = "standard"
name = "reviewing"
[image.categories.nudity]
threshold = 0.6
action = "review"
"""


@dataclass
class FakeSignals:
    categories: dict[str, float]
    matches: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class FakePromptAnalyser:
    """Scores 0.9 for each marker word present; validates like the real analyser."""

    def __init__(self, max_chars: int = 4000) -> None:
        self.max_chars = max_chars
        self.calls = 0

    def analyse_many(
        self,
        texts: list[str],
        *,
        semantic_threshold: float = 0.6,
        negative_prompts: list[str | None] | None = None,
    ) -> list[FakeSignals | ContentError]:
        out: list[FakeSignals | ContentError] = []
        negatives = negative_prompts or [None] * len(texts)
        for text, negative in zip(texts, negatives, strict=True):
            try:
                signals = self.analyse(text, semantic_threshold=semantic_threshold)
            except ContentError as exc:
                out.append(exc)
                continue
            named = sorted({c for m, c in PROMPT_MARKERS.items() if m in (negative or "").lower()})
            if named:  # like the real analyser: noted, never a request
                signals.notes.append(
                    f"negative prompt mentions {', '.join(named)}: treated as a safety measure"
                )
            out.append(signals)
        return out

    def analyse(self, text: str, *, semantic_threshold: float = 0.6) -> FakeSignals:
        self.calls += 1
        if not text.strip():
            raise ContentError("prompt is empty", code="empty_prompt")
        if len(text) > self.max_chars:
            raise ContentError(
                f"prompt is {len(text)} characters, over the limit of {self.max_chars}",
                code="prompt_too_long",
            )
        scores = {c: 0.0 for c in ("sexual", "violence", "minor", "self_harm", "hate")}
        matches = []
        for marker, category in PROMPT_MARKERS.items():
            start = text.lower().find(marker)
            if start >= 0:
                scores[category] = 0.9
                end = start + len(marker)
                quote = text[start:end]
                matches.append(Match(category, marker, start, end, quote, 0.9, "lexicon"))
        return FakeSignals(scores, matches)


def detector_plan() -> dict[int, list[Region]]:
    violence = Region(
        box=(10, 10, 50, 50), label="WEAPON", category="violence", score=0.9, backend="fake"
    )
    return {NUDITY_LEVEL: [nudity_region()], VIOLENCE_LEVEL: [violence]}


def fake_guards() -> dict[str, Guard]:
    """'standard' and 'reviewing' (nudity -> review) Guards with synthetic signals."""
    return {
        "standard": Guard(
            load_policy("standard"),
            [FakeDetector(detector_plan())],
            prompt_analyser=FakePromptAnalyser(),
        ),
        "reviewing": Guard(
            parse_policy(REVIEW_POLICY, "reviewing"),
            [FakeDetector(detector_plan())],
            prompt_analyser=FakePromptAnalyser(),
        ),
    }


def png(level: int, size: tuple[int, int] = (200, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(solid(level, size)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_config(tmp_path: Path, **sections: dict) -> GatewayConfig:
    """A config on a SQLite file in ``tmp_path``; sections override defaults."""
    data: dict = {
        "store": {"data_dir": str(tmp_path / "data")},
        "policies": {
            "default": "standard",
            "profiles": {"standard": "standard", "reviewing": "reviewing"},
        },
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data)


@dataclass
class Harness:
    client: TestClient
    config: GatewayConfig
    closed: bool = False

    def close(self) -> None:
        """Stop the app (runs the lifespan shutdown) once."""
        if not self.closed:
            self.closed = True
            self.client.__exit__(None, None, None)

    @property
    def gateway(self) -> Gateway:
        return self.client.app.state.gateway

    def key(self, name: str = "bot", policy: str = "standard", rate: str = "1000/min") -> str:
        return self.gateway.keys.create(name, policy, rate)[1]


@pytest.fixture
def harness_factory(tmp_path: Path) -> Iterator:
    """Build apps on demand (closed at the end of the test)."""
    harnesses: list[Harness] = []

    def build(
        guards: dict[str, Guard] | None = None, engine: object = None, **sections: dict
    ) -> Harness:
        config = make_config(tmp_path / f"app{len(harnesses)}", **sections)
        app = create_app(
            config,
            guards=guards if guards is not None else fake_guards(),
            generator=engine,  # type: ignore[arg-type]  (an ImageGenerator double)
        )
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        harnesses.append(Harness(client, config))
        return harnesses[-1]

    yield build
    for harness in harnesses:
        harness.close()


@pytest.fixture
def harness(harness_factory) -> Harness:
    return harness_factory()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- real servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port (trust auth)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not under pytest's tmp dir: its parents are private to root, and the server must
    # run as the postgres user when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="genguard-pg-"))
    data = folder / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run as the postgres user
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            pytest.skip("running as root without a 'postgres' user to start PostgreSQL")
        shutil.chown(folder, "postgres")
        prefix = [runuser, "-u", "postgres", "--"]
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.skip(f"cannot start PostgreSQL ({args[0]}): {done.stderr.strip()[:300]}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "genguard", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql+psycopg://genguard@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


def rgb_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

"""A watched folder, a fake-detector Guard, and a watcher running in a thread.

Images are benign: solid greys (the fake detector flags level 245 as a nudity region ->
censor, level 30 as an explicit region -> block) and scikit-image sample photos (allow).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from genguard.decision import Region
from genguard.guard import Guard
from genguard.policy import load_policy
from genguard.store import Store, open_store
from genguard.watch.pending import Timing
from genguard.watch.state import WatchState
from genguard.watch.watcher import Watcher, resolve_options
from tests.conftest import FakeDetector, nudity_region

CENSOR_LEVEL = 245
BLOCK_LEVEL = 30
#: Short waits so tests run fast; the defaults are for real front-ends.
FAST = Timing(settle=0.3, close_settle=0.05, timeout=2.0)


def explicit_region() -> Region:
    return Region(
        box=(5, 5, 40, 40),
        label="FEMALE_GENITALIA_EXPOSED",
        category="sexual_explicit",
        score=0.95,
        backend="fake",
    )


def fake_guard() -> tuple[Guard, FakeDetector]:
    detector = FakeDetector(
        {
            CENSOR_LEVEL // 10 * 10: [nudity_region(box=(8, 8, 40, 40))],
            BLOCK_LEVEL // 10 * 10: [explicit_region()],
        }
    )
    return Guard(load_policy("standard"), [detector]), detector


def png(level: int | None = None, side: int = 64, seed: int = 0) -> bytes:
    """A noisy grey PNG of mean ``level`` (default 100: nothing flagged -> allow).

    Noisy, not solid, so that a censored version differs from the original.
    """
    rng = np.random.default_rng(seed)
    centre = 100 if level is None else level
    array = rng.integers(centre - 4, centre + 5, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_rows(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    text = log.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line being written is not read yet
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def wait_for(test: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return True
        time.sleep(0.02)
    return test()


def wait_rows(log: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    wait_for(lambda: len(read_rows(log)) >= count, timeout)
    return read_rows(log)


class Setup:
    """Paths of one test: the watched folder, quarantine, log and store."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "outputs"
        self.root.mkdir()
        self.quarantine = tmp_path / "quarantine"
        self.log = tmp_path / "watch.jsonl"
        self.db = tmp_path / "data" / "genguard.db"
        self.guard, self.detector = fake_guard()
        self._stores: list[Store] = []

    def watcher(self, mode: str = "quarantine", timing: Timing = FAST) -> Watcher:
        options = resolve_options(
            self.root, quarantine=self.quarantine, log=self.log, mode=mode, timing=timing
        )
        store = open_store(self.db)
        self._stores.append(store)
        return Watcher(self.guard, WatchState(store), options)

    def running(self, mode: str = "quarantine", timing: Timing = FAST) -> Any:
        """A watcher following events in a thread; stopped (and checked) on exit."""
        return self.running_watcher(self.watcher(mode, timing))

    @contextmanager
    def running_watcher(self, watcher: Watcher) -> Iterator[Watcher]:
        started = threading.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                watcher.run(started=started)
            except BaseException as exc:  # surfaced in the test thread
                failure.append(exc)
                started.set()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        assert started.wait(10)
        try:
            yield watcher
        finally:
            watcher.stop()
            thread.join(10)
            assert not thread.is_alive(), "watcher did not stop"
        if failure:
            raise failure[0]

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.log)

    def close(self) -> None:
        for store in self._stores:
            store.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.close()

"""``genguard watch`` with real filesystem events in tmp_path (inotify on Linux)."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from genguard.engines.records import decision_record
from genguard.watch import actions
from genguard.watch import watcher as watcher_module
from genguard.watch.pending import Timing
from genguard.watch.state import OWN_WRITE, WatchFileRow
from tests.watch.conftest import BLOCK_LEVEL, CENSOR_LEVEL, Setup, png, wait_for, wait_rows


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def quarantined(setup: Setup) -> list[Path]:
    if not setup.quarantine.exists():
        return []
    return sorted(p for p in setup.quarantine.rglob("*") if p.is_file())


def test_new_file_gets_one_decision_row_in_scan_shape(setup: Setup) -> None:
    data = png(seed=1)
    with setup.running():
        (setup.root / "a.png").write_bytes(data)
        rows = wait_rows(setup.log, 1)
        time.sleep(0.3)
    assert len(setup.rows()) == 1
    row = rows[0]
    assert row["path"] == str(setup.root / "a.png")
    assert row["action"] == "allow" and row["error_code"] is None
    assert row["sha256"] == sha(data)
    assert row["watch"]["did"] == "kept"
    # The scan record's keys, plus one "watch" object.
    scan_keys = set(decision_record("x", setup.guard.check_image(data)))
    assert set(row) == scan_keys | {"watch"}
    assert (setup.root / "a.png").read_bytes() == data


def test_quarantine_mode_keeps_original_and_leaves_censored_copy(setup: Setup) -> None:
    data = png(CENSOR_LEVEL)
    target = setup.root / "sub" / "flagged.png"
    target.parent.mkdir()
    with setup.running():
        target.write_bytes(data)
        wait_rows(setup.log, 1)
        time.sleep(0.8)  # time for the watcher to (wrongly) react to its own write
    rows = setup.rows()
    assert len(rows) == 1, rows  # its own censored replacement was not judged again
    assert rows[0]["action"] == "censor"
    assert rows[0]["watch"]["did"] == "quarantined+censored"
    saved = setup.quarantine / "sub" / "flagged.png"
    assert rows[0]["watch"]["quarantined_to"] == str(saved)
    assert saved.read_bytes() == data  # the original, byte for byte
    assert target.exists() and target.read_bytes() != data  # censored in place
    assert setup.detector.calls == [1]  # one model call: the own write was skipped
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_censor_mode_replaces_in_place_and_quarantines_nothing(setup: Setup) -> None:
    data = png(CENSOR_LEVEL)
    with setup.running(mode="censor"):
        (setup.root / "f.png").write_bytes(data)
        rows = wait_rows(setup.log, 1)
        time.sleep(0.5)
    assert len(setup.rows()) == 1
    assert rows[0]["watch"]["did"] == "censored"
    assert (setup.root / "f.png").read_bytes() != data
    assert quarantined(setup) == []


def test_block_moves_the_original_to_quarantine(setup: Setup) -> None:
    data = png(BLOCK_LEVEL)
    with setup.running(mode="censor"):  # block quarantines in either mode
        (setup.root / "b.png").write_bytes(data)
        rows = wait_rows(setup.log, 1)
    assert rows[0]["action"] == "block" and rows[0]["watch"]["did"] == "quarantined"
    assert not (setup.root / "b.png").exists()
    assert [p.read_bytes() for p in quarantined(setup)] == [data]


@pytest.mark.slow  # waits out real settle times and timeouts (~1.5 s)
def test_partially_written_file_is_judged_once_complete(setup: Setup) -> None:
    data = png(seed=3, side=160)
    path = setup.root / "slow.png"
    with setup.running():
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            time.sleep(1.0)  # longer than the settle time: the writer is just slow
            assert setup.rows() == []  # nothing judged while the writer holds it open
            handle.write(data[len(data) // 2 :])
        rows = wait_rows(setup.log, 1)
        time.sleep(0.5)
    assert len(setup.rows()) == 1
    assert rows[0]["action"] == "allow" and rows[0]["sha256"] == sha(data)


@pytest.mark.slow  # waits out real settle times and timeouts (~1.5 s)
def test_writer_that_closes_and_reopens_is_not_judged_half_written(setup: Setup) -> None:
    data = png(seed=4, side=160)
    path = setup.root / "twice.png"
    with setup.running():
        path.write_bytes(data[: len(data) // 2])
        time.sleep(0.8)
        with open(path, "ab") as handle:
            handle.write(data[len(data) // 2 :])
        rows = wait_rows(setup.log, 1)
        time.sleep(0.4)
    assert len(setup.rows()) == 1
    assert rows[0]["error_code"] is None and rows[0]["sha256"] == sha(data)


@pytest.mark.slow  # waits out real settle times and timeouts (~1.5 s)
def test_file_still_incomplete_after_timeout_is_one_error_row(setup: Setup) -> None:
    data = png(seed=5, side=160)
    path = setup.root / "stuck.png"
    with setup.running(timing=Timing(settle=0.3, close_settle=0.05, timeout=1.0)):
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            rows = wait_rows(setup.log, 1, timeout=8)
        time.sleep(0.4)  # the close of the half file must not make a second row
    assert len(setup.rows()) == 1
    assert rows[0]["error_code"] == "incomplete" and rows[0]["action"] is None
    assert "incomplete" in rows[0]["error"]
    assert path.exists()  # errors never touch the file


def test_catch_up_then_restart_does_not_recheck(setup: Setup) -> None:
    for i in range(3):
        (setup.root / f"old{i}.png").write_bytes(png(seed=i))
    (setup.root / "flag.png").write_bytes(png(CENSOR_LEVEL))
    first = setup.watcher().run(once=True)
    assert first.total == 4 and first.actions == {"allow": 3, "censor": 1}
    calls = len(setup.detector.calls)

    second = setup.watcher().run(once=True)  # a restart: new watcher, same store
    assert second.total == 0 and second.already_checked == 4
    assert len(setup.detector.calls) == calls  # not even the censored copy is re-judged

    (setup.root / "old1.png").write_bytes(png(seed=99))  # a new version under an old name
    third = setup.watcher().run(once=True)
    assert third.total == 1 and third.already_checked == 3
    assert len(setup.rows()) == 5


def test_state_rows_are_keyed_by_version(setup: Setup) -> None:
    (setup.root / "flag.png").write_bytes(png(CENSOR_LEVEL))
    watcher = setup.watcher(mode="censor")
    watcher.run(once=True)
    with watcher.state.store.session() as session:
        rows = session.query(WatchFileRow).all()
    assert len(rows) == 1
    current = os.stat(setup.root / "flag.png")
    assert rows[0].outcome == OWN_WRITE
    assert (rows[0].size, rows[0].mtime_ns) == (current.st_size, current.st_mtime_ns)
    assert rows[0].sha256 == sha((setup.root / "flag.png").read_bytes())


def test_burst_of_200_files_each_judged_once(setup: Setup) -> None:
    _burst(setup, 200)


@pytest.mark.slow
def test_burst_of_1000_files_each_judged_once(setup: Setup) -> None:
    _burst(setup, 1000)


def _burst(setup: Setup, count: int) -> None:
    payloads = [png(seed=i, side=24) for i in range(count)]
    progress: list[tuple[int, int]] = []
    with setup.running() as watcher:
        watcher.on_progress = lambda done, pending: progress.append((done, pending))
        for i, data in enumerate(payloads):
            folder = setup.root / f"batch{i % 4}"
            folder.mkdir(exist_ok=True)
            (folder / f"{i:05d}.png").write_bytes(data)
        rows = wait_rows(setup.log, count, timeout=60 + count / 10)
        time.sleep(0.3)
    rows = setup.rows()
    assert len(rows) == count
    assert len({row["path"] for row in rows}) == count  # each file exactly once
    assert {row["action"] for row in rows} == {"allow"}
    assert max(batch for batch in setup.detector.calls) <= 8  # bounded batches
    assert progress and progress[-1][0] >= count


def test_file_deleted_before_check_is_skipped_without_row(setup: Setup) -> None:
    with setup.running() as watcher:
        path = setup.root / "gone.png"
        with open(path, "wb") as handle:
            handle.write(png(seed=6)[:100])
            path.unlink()  # deleted while still being written
        (setup.root / "kept.png").write_bytes(png(seed=7))
        wait_rows(setup.log, 1)
        time.sleep(0.4)
    assert [row["path"] for row in setup.rows()] == [str(setup.root / "kept.png")]
    assert "gone.png" not in str(watcher.pending.entries)


def test_file_deleted_while_being_checked_is_one_error_row(setup: Setup) -> None:
    path = setup.root / "vanishing.png"
    original_detect = setup.detector.detect

    def detect_and_delete(frames):  # the user deletes it while the models run
        if path.exists():
            path.unlink()
        return original_detect(frames)

    setup.detector.detect = detect_and_delete  # type: ignore[method-assign]
    with setup.running():
        path.write_bytes(png(CENSOR_LEVEL))
        rows = wait_rows(setup.log, 1)
        (setup.root / "next.png").write_bytes(png(seed=8))  # and the watcher goes on
        rows = wait_rows(setup.log, 2)
    assert rows[0]["error_code"] == "vanished" and rows[0]["watch"]["decided"] == "censor"
    assert rows[1]["action"] == "allow"
    assert quarantined(setup) == []  # the rolled-back copy is gone too


def test_renames_into_the_folder_are_judged(setup: Setup, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(png(seed=9))
    with setup.running():
        os.rename(outside, setup.root / "moved-in.png")  # from outside the tree
        partial = setup.root / "render.png.part"  # a front-end's temp name, then a rename
        partial.write_bytes(png(seed=10))
        os.rename(partial, setup.root / "render.png")
        rows = wait_rows(setup.log, 2)
        time.sleep(0.3)
    assert sorted(Path(r["path"]).name for r in setup.rows()) == ["moved-in.png", "render.png"]
    assert all(r["action"] == "allow" for r in rows)


def test_non_image_files_are_ignored(setup: Setup) -> None:
    with setup.running():
        (setup.root / "params.txt").write_text("steps: 20")
        (setup.root / "workflow.json").write_text("{}")
        (setup.root / ".hidden.png").write_bytes(png(seed=11))
        (setup.root / "real.png").write_bytes(png(seed=12))
        wait_rows(setup.log, 1)
        time.sleep(0.5)
    assert [Path(r["path"]).name for r in setup.rows()] == ["real.png"]


def test_permission_error_leaves_the_original_and_retries_after_restart(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = png(CENSOR_LEVEL)
    target = setup.root / "ro.png"
    target.write_bytes(data)
    real_replace = os.replace

    def refuse_in_watched(src, dst):  # a read-only output folder
        if str(dst).startswith(str(setup.root)):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(actions.os, "replace", refuse_in_watched)
    summary = setup.watcher().run(once=True)
    rows = setup.rows()
    assert summary.errors == {"permission_denied": 1}
    assert rows[0]["error_code"] == "permission_denied" and "\n" not in rows[0]["error"]
    assert "left as it was" in rows[0]["error"]
    assert target.read_bytes() == data  # the original is intact...
    assert quarantined(setup) == []  # ...so the quarantine copy was rolled back
    assert [p.name for p in setup.root.iterdir()] == ["ro.png"]  # no temp file left

    monkeypatch.setattr(actions.os, "replace", real_replace)  # permissions fixed
    again = setup.watcher().run(once=True)
    assert again.actions == {"censor": 1}  # not remembered as done: retried
    assert [p.read_bytes() for p in quarantined(setup)] == [data]


def test_stop_returns_promptly(setup: Setup) -> None:
    started = time.monotonic()
    with setup.running():
        pass
    assert time.monotonic() - started < 3
    assert wait_for(lambda: setup.log.exists())


@pytest.mark.slow  # waits out real settle times and timeouts (~1.5 s)
def test_rescan_catches_a_file_whose_events_were_lost(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = setup.watcher()
    watcher.options = replace(watcher.options, rescan_every=0.3)
    apply = watcher._apply

    def lose_events_of_missed(kind: str, src: str, dest: str, is_dir: bool) -> None:
        if "missed" not in src + dest:  # as if the inotify queue had overflowed
            apply(kind, src, dest, is_dir)

    monkeypatch.setattr(watcher, "_apply", lose_events_of_missed)
    with setup.running_watcher(watcher):
        (setup.root / "missed.png").write_bytes(png(seed=13))
        rows = wait_rows(setup.log, 1, timeout=5)
        time.sleep(0.8)  # more rescans: the file is not judged twice
    assert [Path(r["path"]).name for r in rows] == ["missed.png"]
    assert len(setup.rows()) == 1


def test_own_writes_are_skipped_even_when_forgotten_in_memory(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "HANDLED_MEMORY", 1)  # the store must answer
    with setup.running():
        for i in range(3):
            (setup.root / f"flag{i}.png").write_bytes(png(CENSOR_LEVEL, seed=i))
        wait_rows(setup.log, 3)
        time.sleep(0.6)
    assert len(setup.rows()) == 3
    assert sum(setup.detector.calls) == 3  # one image per file: no censored copy re-judged


def test_interrupt_mid_step_records_what_was_done_and_restart_finishes(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.png", "b.png"):
        (setup.root / name).write_bytes(png(CENSOR_LEVEL))
    real_act = watcher_module.act
    calls: list[str] = []

    def act_then_interrupt(*args, **kwargs):
        calls.append(kwargs["key"].path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second file is acted on
        return real_act(*args, **kwargs)

    monkeypatch.setattr(watcher_module, "act", act_then_interrupt)
    old = time.time() - 5  # settled already: both files go in one step
    for name in ("a.png", "b.png"):
        os.utime(setup.root / name, (old, old))
    with pytest.raises(KeyboardInterrupt):
        setup.watcher().run(once=True)
    rows = setup.rows()
    assert [Path(r["path"]).name for r in rows] == ["a.png"]  # the finished one is logged
    assert (setup.root / "b.png").read_bytes() == png(CENSOR_LEVEL)  # untouched

    monkeypatch.setattr(watcher_module, "act", real_act)
    again = setup.watcher().run(once=True)
    assert again.already_checked == 1 and again.actions == {"censor": 1}  # only b.png


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions"
)
def test_real_read_only_subfolder_is_one_clear_error_row(setup: Setup) -> None:
    sub = setup.root / "readonly"
    sub.mkdir()
    data = png(CENSOR_LEVEL)
    (sub / "x.png").write_bytes(data)
    sub.chmod(0o555)
    try:
        summary = setup.watcher().run(once=True)
    finally:
        sub.chmod(0o755)
    assert summary.errors == {"permission_denied": 1}
    assert (sub / "x.png").read_bytes() == data
    assert quarantined(setup) == []

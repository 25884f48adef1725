"""``genguard watch`` on the command line: options, one-line errors, exit codes, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genguard.cli import main
from genguard.watch import cli as watch_cli
from genguard.watch.watcher import default_quarantine
from tests.watch.conftest import CENSOR_LEVEL, fake_guard, png, read_rows, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_cli_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_cli, "build_guard", lambda *_args: fake_guard()[0])


def test_once_catches_up_and_exits(
    tmp_path: Path, fake_cli_guard: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    (root / "ok.png").write_bytes(png(seed=1))
    (root / "flag.png").write_bytes(png(CENSOR_LEVEL))
    log = tmp_path / "log.jsonl"
    args = ["watch", str(root), "--once", "--log", str(log), "--no-progress"]
    args += ["--store", str(tmp_path / "g.db")]
    assert main(args) == 0
    rows = read_rows(log)
    assert sorted(r["action"] for r in rows) == ["allow", "censor"]
    quarantine = default_quarantine(root)
    assert quarantine == tmp_path / "outputs-genguard-quarantine"
    assert (quarantine / "flag.png").read_bytes() == png(CENSOR_LEVEL)
    assert "done: 2 rows" in capsys.readouterr().err
    assert main(args) == 0  # a second run: nothing new, nothing appended
    assert len(read_rows(log)) == 2


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t: [str(t / "missing")], "does not exist"),
        (lambda t: [str(t / "file.png")], "is not a folder"),
        (lambda t: [str(t / "out"), "--quarantine", str(t / "out" / "q")], "inside the watched"),
        (lambda t: [str(t / "out"), "--mode", "delete"], "--mode must be censor or quarantine"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2(
    tmp_path: Path, fake_cli_guard: None, capsys: pytest.CaptureFixture[str], make_args, message
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "file.png").write_bytes(png())
    code = main(["watch", *make_args(tmp_path), "--once", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("error:") and err.count("\n") == 1


@pytest.mark.slow  # a subprocess importing genguard: ~5 s on 2 cores
def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    log = tmp_path / "log.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from genguard.cli import main
        from genguard.watch import cli
        from tests.watch.conftest import fake_guard
        cli.build_guard = lambda *a: fake_guard()[0]
        sys.exit(main(["watch", {str(root)!r}, "--log", {str(log)!r}, "--no-progress",
                       "--store", {str(tmp_path / "g.db")!r}]))
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert wait_for(lambda: log.exists(), timeout=30)  # the log opens once it watches
        (root / "a.png").write_bytes(png(seed=2))
        assert wait_for(lambda: len(read_rows(log)) == 1, timeout=10)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    finally:
        process.kill()
    assert code == 143  # unwound by SIGTERM (128 + 15), not killed on the spot
    assert read_rows(log)[0]["action"] == "allow"

"""The scanner and the core CLI, end to end, with real models on benign photos."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from genguard.cli import main
from genguard.scan import walk
from tests.test_content import bomb_png


@pytest.fixture
def mixed_folder(tmp_path: Path, photos: dict[str, Path]) -> Path:
    """Good photos next to every kind of bad file, in nested folders."""
    root = tmp_path / "inbox"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(photos["astronaut"], root / "a-astronaut.jpg")
    shutil.copy(photos["coffee"], root / "sub" / "coffee.jpg")
    shutil.copy(photos["chelsea"], root / "sub" / "deeper" / "cat.jpg")
    (root / "b-empty.png").write_bytes(b"")
    (root / "c-text.jpg").write_text("hello")
    data = photos["rocket"].read_bytes()
    (root / "d-truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "e-bomb.png").write_bytes(bomb_png())
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (40, 30), (i * 40, 90, 90)) for i in range(4)]
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], duration=50)
    (root / "f-animated.webp").write_bytes(buffer.getvalue())
    (root / "loop-a.jpg").symlink_to(root / "loop-b.jpg")
    (root / "loop-b.jpg").symlink_to(root / "loop-a.jpg")
    (root / "sub" / "back-up").symlink_to(root)  # directory cycle
    (root / "readme.txt").write_text("not scanned: no image extension")
    return root


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_walk_is_sorted_recursive_and_loop_safe(mixed_folder: Path) -> None:
    items = list(walk([mixed_folder]))
    names = [Path(i.path).name for i in items]
    assert names[:4] == ["a-astronaut.jpg", "b-empty.png", "c-text.jpg", "d-truncated.jpg"]
    assert "readme.txt" not in names
    loop = [i for i in items if i.path.endswith("back-up")]
    assert len(loop) == 1 and loop[0].error is not None and loop[0].error.code == "symlink_loop"


def test_scan_writes_one_record_per_input_in_order(mixed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    assert (
        main(["scan", str(mixed_folder), "--out", str(out), "--no-progress", "--batch-size", "2"])
        == 0
    )
    records = read_records(out)
    expected = [item.path for item in walk([mixed_folder])]
    assert [r["path"] for r in records] == expected
    by_name = {Path(r["path"]).name: r for r in records}
    assert by_name["b-empty.png"]["error_code"] == "empty_file"
    assert by_name["c-text.jpg"]["error_code"] == "not_an_image"
    assert by_name["d-truncated.jpg"]["error_code"] == "truncated"
    assert by_name["e-bomb.png"]["error_code"] == "too_many_pixels"
    assert by_name["loop-a.jpg"]["error_code"] == "symlink_loop"
    assert by_name["back-up"]["error_code"] == "symlink_loop"
    for good in ("a-astronaut.jpg", "coffee.jpg", "cat.jpg", "f-animated.webp"):
        record = by_name[good]
        assert record["action"] == "allow" and record["error"] is None, record
        assert set(record) >= {"path", "action", "categories", "regions", "error"}
    assert by_name["f-animated.webp"]["frames"] == 4
    assert any(r["label"] == "FACE_FEMALE" for r in by_name["a-astronaut.jpg"]["regions"])


def test_resume_skips_done_paths_and_repairs_a_torn_tail(
    mixed_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    args = ["scan", str(mixed_folder), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    full = read_records(out)
    # Simulate a crash: keep 3 records and half of the 4th line.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:20])
    assert main([*args, "--resume"]) == 0
    resumed = read_records(out)
    assert [r["path"] for r in resumed] == [r["path"] for r in full]
    assert [r["action"] for r in resumed] == [r["action"] for r in full]


def test_check_and_policy_commands(
    photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(photos["astronaut"]), "--policy", "adult", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["action"] == "allow" and decision["policy_id"].startswith("adult@")
    assert main(["check", str(photos["coffee"])]) == 0
    assert "ALLOW" in capsys.readouterr().out
    assert main(["policy", "show", "standard"]) == 0
    shown = capsys.readouterr().out
    assert "hard rule sexual_minor" in shown and "[image.categories.nudity]" in shown
    assert main(["policy", "list"]) == 0
    assert "adult" in capsys.readouterr().out


def test_censor_command_keeps_size_and_format(photos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "safe.jpg"
    assert main(["censor", str(photos["chelsea"]), "-o", str(out), "--policy", "strict"]) == 0
    written = Image.open(out)
    original = Image.open(photos["chelsea"])
    assert written.format == "JPEG" and written.size == original.size


def test_usage_errors_exit_2(
    tmp_path: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(photos["coffee"]), "--policy", "lenient"]) == 2
    assert "unknown policy 'lenient'" in capsys.readouterr().err
    assert main(["scan", str(tmp_path), "--backend", "nope", "--no-progress"]) == 2
    assert main(["scan", "--bogus-flag"]) == 2
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert main(["check", str(empty)]) == 2
    assert "empty file" in capsys.readouterr().err


def test_scan_cli_writes_parquet_through_the_engine(mixed_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from genguard.engines import read_rows

    out = tmp_path / "scores.parquet"
    assert main(["scan", str(mixed_folder), "--out", str(out), "--no-progress"]) == 0
    rows = read_rows(out)
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["coffee.jpg"]["action"] == "allow"
    assert by_name["b-empty.png"]["error_code"] == "empty_file"
    assert len(rows) == len(list(walk([mixed_folder])))
    assert main(["scan", str(mixed_folder), "--out", str(out), "--resume"]) == 2


def test_names_that_are_not_utf8_are_recorded_and_resumed(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    """POSIX file names are bytes: one invalid in UTF-8 must not crash JSONL or Parquet."""
    folder = tmp_path / "odd"
    folder.mkdir()
    odd = os.fsdecode(bytes(folder) + b"/bad-\xff.jpg")
    shutil.copy(photos["coffee"], odd)
    shutil.copy(photos["chelsea"], folder / "chat-é 猫.jpg")
    out = tmp_path / "odd.jsonl"
    assert main(["scan", str(folder), "--out", str(out), "--no-progress"]) == 0
    paths = [r["path"] for r in read_records(out)]
    assert paths == [str(folder / "bad-\\xff.jpg"), str(folder / "chat-é 猫.jpg")]
    assert main(["scan", str(folder), "--out", str(out), "--no-progress", "--resume"]) == 0
    assert len(read_records(out)) == 2  # both recognised as done
    pytest.importorskip("pyarrow")
    from genguard.engines import read_rows

    parquet = tmp_path / "odd.parquet"
    assert main(["scan", str(folder), "--out", str(parquet), "--no-progress"]) == 0
    assert sorted(r["path"] for r in read_rows(parquet)) == sorted(paths)


def test_errors_are_one_line_at_any_width(tmp_path, capsys) -> None:
    """A long path and rich markup characters stay on one line (no wrapping at 80 columns)."""
    from genguard.cli import main

    deep = tmp_path / ("x" * 60) / ("y" * 60) / "[bracketed] missing.png"
    code = main(["check", str(deep)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "[bracketed] missing.png" in err


def test_file_system_errors_are_one_line_and_exit_2(tmp_path, capsys) -> None:
    """A missing output folder is the user's to fix: which file, what the system said."""
    source = tmp_path / "in.png"
    Image.new("RGB", (300, 300), (120, 90, 60)).save(source)
    target = tmp_path / "missing-folder" / "out.png"
    code = main(["watermark", "embed", str(source), str(target), "--payload", "0x12"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "out.png" in err and "No such file or directory" in err and "Traceback" not in err

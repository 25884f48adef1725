"""The CLI never embeds with a built-in key: --key, the environment, or the install's key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from genguard.cli import main
from genguard.provenance import watermark as wm

from .conftest import photo


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, dict, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else {}), err


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(photo("rocket")).save(path)
    return path


def test_first_embed_creates_a_private_install_key_that_detect_reuses(
    capsys, monkeypatch, tmp_path: Path, source: Path
) -> None:
    monkeypatch.delenv("GENGUARD_WATERMARK_KEY", raising=False)
    monkeypatch.setenv("GENGUARD_STORE", str(tmp_path / "data" / "genguard.db"))
    out = tmp_path / "out.png"
    code, data, _ = run(capsys, "watermark", "embed", source, out, "--payload", "0x42")
    assert code == 0 and data["verified"] is True
    key_file = tmp_path / "data" / wm.KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    code, data, _ = run(capsys, "watermark", "detect", out)
    assert data["found"] is True and data["payload"] == "0x00000042"
    # Another install (another key) reads nothing; the install's key, given, reads it.
    code, data, _ = run(capsys, "watermark", "detect", out, "--key", "0x1234")
    assert data["found"] is False
    code, data, _ = run(capsys, "watermark", "detect", out, "--key", key_file.read_text().strip())
    assert data["found"] is True


def test_public_key_and_bad_keys_are_one_line_errors(capsys, tmp_path: Path, source: Path) -> None:
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "watermark", "embed", source, out, "--payload", "1", "--key",
                       "0x6767776d")  # fmt: skip
    assert code == 2 and "public example key" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code, _, err = run(capsys, "watermark", "embed", source, out, "--payload", "1", "--key", "x")
    assert code == 2 and "decimal or 0x-hex" in err


def test_help_says_where_the_key_comes_from(capsys) -> None:
    try:
        code = main(["watermark", "embed", "--help"])
    except SystemExit as exc:  # click may exit instead of returning
        code = exc.code
    assert code in (0, None)
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "GENGUARD_WATERMARK_KEY" in text and "watermark.key" in text

"""`genguard audit` end to end through the real CLI (fake generator, fake classifier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import FakeClassifier, reddish

from genguard.audit.classify import CLASSIFIERS
from genguard.cli import main


@pytest.fixture
def fake_classifier():
    CLASSIFIERS.add("test-fake", lambda options: FakeClassifier(reddish))
    yield
    CLASSIFIERS.remove("test-fake")


def test_audit_command_writes_the_report(tmp_path: Path, fake_classifier, capsys) -> None:
    suite = tmp_path / "mine.txt"
    suite.write_text("a lighthouse\na teapot\na garden\n", encoding="utf-8")
    out = tmp_path / "report"
    args = [
        "audit",
        "model-a",
        "model-b",
        "--suite",
        str(suite),
        "--seeds",
        "3",
        "--generator",
        "fake",
        "--classifier",
        "test-fake",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        str(out),
        "-q",
        "--label",
        "A",
        "--label",
        "B",
    ]
    assert main(args) == 0
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [m["label"] for m in data["models"]] == ["A", "B"]
    assert all(m["images"] == 9 for m in data["models"])
    assert data["settings"]["width"] == 32 and data["suite"]["name"] == "mine"
    assert (out / "index.html").is_file()
    err = capsys.readouterr().err
    assert "18 generated, 0 from cache" in err.replace("\n", " ")
    assert main(args) == 0  # second run: everything from the cache
    assert "0 generated, 18 from cache" in capsys.readouterr().err.replace("\n", " ")


@pytest.mark.slow  # the absent-model case imports the torch stack (~10 s)
def test_audit_command_errors(tmp_path: Path, fake_classifier, capsys) -> None:
    code = main(
        [
            "audit",
            "m",
            "--suite",
            "nope",
            "--generator",
            "fake",
            "--classifier",
            "test-fake",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and "unknown suite 'nope'" in capsys.readouterr().err
    code = main(
        [
            "audit",
            str(tmp_path / "absent.safetensors"),
            "--suite",
            "innocent",
            "--seeds",
            "1",
            "--classifier",
            "test-fake",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "model weights not found" in err.replace("\n", " ")

"""One home for settings: every GENGUARD_* variable is read in genguard/settings.py only."""

from __future__ import annotations

import re
from pathlib import Path

from genguard import settings

SRC = Path(__file__).parents[1] / "src" / "genguard"
DOCS = Path(__file__).parents[1] / "docs" / "settings.md"


def test_no_module_but_settings_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "settings.py" and re.search(r"os\.environ(?:\.get)?\W+[\"']GENGUARD_",
                                                    path.read_text("utf-8"))
    ]  # fmt: skip
    assert readers == []


def test_every_variable_used_in_the_code_is_documented() -> None:
    used = set()
    for path in SRC.rglob("*.py"):
        used.update(re.findall(r"GENGUARD_[A-Z_]+", path.read_text("utf-8")))
    documented = {s.name for s in settings.SETTINGS}
    assert used - documented <= {"GENGUARD_CACHE"}  # the old name of GENGUARD_CACHE_DIR
    page = DOCS.read_text("utf-8")
    assert all(f"`{name}`" in page for name in documented)


def test_cache_dir_honours_both_names(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("GENGUARD_CACHE_DIR", raising=False)
    monkeypatch.setenv("GENGUARD_CACHE", str(tmp_path / "old"))
    assert settings.cache_dir() == tmp_path / "old"
    monkeypatch.setenv("GENGUARD_CACHE_DIR", str(tmp_path / "new"))
    assert settings.cache_dir() == tmp_path / "new"
    monkeypatch.setenv("GENGUARD_DEVICE", " CUDA ")
    assert settings.device() == "cuda"

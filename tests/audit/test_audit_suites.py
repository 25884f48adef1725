"""Prompt suites: the shipped innocent suite and users' own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.audit.suites import builtin_suites, load_suite
from genguard.errors import ConfigError


def test_innocent_suite_ships_and_covers_its_topics() -> None:
    assert "innocent" in builtin_suites()
    suite = load_suite("innocent")
    assert 35 <= len(suite.prompts) <= 50
    tags = {p.tag for p in suite.prompts}
    assert tags == {"portrait", "beach", "gym", "fashion", "school", "anime", "couple"}
    assert len({p.text for p in suite.prompts}) == len(suite.prompts)
    assert suite.source == "builtin:innocent"


def test_user_txt_and_toml_suites(tmp_path: Path) -> None:
    txt = tmp_path / "mine.txt"
    txt.write_text("# my prompts\na red bicycle\n\n  a bowl of soup  \n", encoding="utf-8")
    suite = load_suite(txt)
    assert suite.name == "mine" and [p.text for p in suite.prompts] == [
        "a red bicycle",
        "a bowl of soup",
    ]
    toml = tmp_path / "t.toml"
    toml.write_text(
        'name = "kitchen"\nnegative_prompt = "blurry"\n'
        'prompts = ["a teapot", {text = "a chef", tag = "portrait"}]\n',
        encoding="utf-8",
    )
    suite = load_suite(str(toml))
    assert suite.name == "kitchen" and suite.negative_prompt == "blurry"
    assert suite.prompts[1].tag == "portrait"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("", ".txt", "no prompts"),
        ("a cat\na cat\n", ".txt", "duplicate prompts"),
        ("prompts = 3", ".toml", "expected a 'prompts' list"),
        ("prompts = [{tag = 'x'}]", ".toml", r"prompts\.0 needs a 'text'"),
        ("prompts = [", ".toml", "invalid TOML"),
    ],
)
def test_bad_suite_files(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"s{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_suite(path)


def test_unknown_suite_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown suite 'nope'.*innocent"):
        load_suite("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "missing.toml")

"""Prompt suites: the innocent prompts an audit feeds each model.

Suites ship as data under ``genguard/audit/suites/`` (``innocent.toml``); users may pass
their own file instead: a ``.toml`` with ``prompts = [{text = ..., tag = ...}, ...]`` (or
plain strings), or a ``.txt`` with one prompt per line (``#`` starts a comment).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from genguard.errors import ConfigError


@dataclass(frozen=True)
class Prompt:
    """One prompt of a suite, with an optional tag (portrait, beach...) for the report."""

    text: str
    tag: str = ""


@dataclass(frozen=True)
class PromptSuite:
    """A named list of prompts."""

    name: str
    prompts: list[Prompt]
    description: str = ""
    negative_prompt: str = ""
    source: str = field(default="", compare=False)


def builtin_suites() -> list[str]:
    """Names of the suites shipped with genguard."""
    folder = resources.files("genguard.audit") / "suites"
    return sorted(Path(p.name).stem for p in folder.iterdir() if p.name.endswith((".toml", ".txt")))


def load_suite(name_or_path: str | Path) -> PromptSuite:
    """Load a built-in suite by name, or a user's .toml/.txt file by path."""
    path = Path(name_or_path)
    if path.suffix in {".toml", ".txt"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"suite file {path} not found")
        return _parse(path.read_text(encoding="utf-8"), path.suffix, path.stem, str(path))
    name = str(name_or_path)
    folder = resources.files("genguard.audit") / "suites"
    for suffix in (".toml", ".txt"):
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return _parse(candidate.read_text(encoding="utf-8"), suffix, name, f"builtin:{name}")
    known = ", ".join(builtin_suites())
    raise ConfigError(f"unknown suite {name!r}: use one of {known}, or a .toml/.txt file")


def _parse(text: str, suffix: str, default_name: str, source: str) -> PromptSuite:
    if suffix == ".toml":
        return _parse_toml(text, default_name, source)
    prompts = [
        Prompt(line.strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return _checked(PromptSuite(default_name, prompts, source=source))


def _parse_toml(text: str, default_name: str, source: str) -> PromptSuite:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"suite {source}: invalid TOML: {exc}") from None
    raw = data.get("prompts")
    if not isinstance(raw, list):
        raise ConfigError(f"suite {source}: expected a 'prompts' list")
    prompts = [_prompt(item, i, source) for i, item in enumerate(raw)]
    suite = PromptSuite(
        name=str(data.get("name", default_name)),
        prompts=prompts,
        description=str(data.get("description", "")),
        negative_prompt=str(data.get("negative_prompt", "")),
        source=source,
    )
    return _checked(suite)


def _prompt(item: Any, index: int, source: str) -> Prompt:
    if isinstance(item, str):
        return Prompt(item.strip())
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return Prompt(item["text"].strip(), str(item.get("tag", "")))
    raise ConfigError(f"suite {source}: prompts.{index} needs a 'text' string")


def _checked(suite: PromptSuite) -> PromptSuite:
    if not suite.prompts or any(not p.text for p in suite.prompts):
        raise ConfigError(f"suite {suite.source}: no prompts, or an empty prompt")
    texts = [p.text for p in suite.prompts]
    if len(set(texts)) != len(texts):
        raise ConfigError(f"suite {suite.source}: duplicate prompts (results are keyed by text)")
    return suite

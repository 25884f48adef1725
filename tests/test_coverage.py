"""Coverage: what a backend set can see, and what the hard rules rest on."""

from __future__ import annotations

from typer.testing import CliRunner

from genguard.cli import app
from genguard.coverage import category_coverage, rule_coverage
from genguard.policy import load_policy


def test_the_default_set_sees_nudity_but_not_violence_or_minors() -> None:
    seen = {row.category: row.backends for row in category_coverage(["nudenet", "opennsfw"])}
    assert seen["nudity"] == ("nudenet", "opennsfw")
    assert seen["face"] == ("nudenet",)
    assert seen["violence"] == ()
    with_clip = {row.category: row.backends for row in category_coverage(["nudenet", "clip:x"])}
    assert with_clip["violence"] == ("clip:x",)


def test_hard_rules_on_images_need_the_prompt_for_minor_and_real_person() -> None:
    rules = {r.rule: r for r in rule_coverage(load_policy("standard"), ["nudenet", "opennsfw"])}
    minor = rules["sexual_minor"]
    assert not minor.fires_on_images_alone and minor.fires_on_prompts_alone
    assert minor.missing_on_images == [("minor",)]
    assert "nudity" in minor.image[0] and "sexual" in minor.prompt[0]
    assert rules["sexual_real_person"].missing_on_images == [("real_person",)]


def test_the_cli_says_so_on_one_screen() -> None:
    result = CliRunner().invoke(app, ["backends", "coverage"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.replace("│", " ").split())
    assert "violence" in words and "nothing" in words
    lines = [line for line in result.output.splitlines() if line.startswith("sexual_minor")]
    assert lines == [
        "sexual_minor: fires on images alone: no; on prompts alone: yes; no image signal for"
        " minor: needs the prompt as context"
    ]


def test_a_bad_policy_or_backend_fails_before_any_output() -> None:
    for args in (["--policy", "nosuch"], ["-b", "nosuchbackend"]):
        result = CliRunner().invoke(app, ["backends", "coverage", *args])
        assert result.exit_code != 0
        assert "scored by" not in result.output and "hard rules" not in result.output

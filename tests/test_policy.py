"""Policies: loading, validation errors, ids, thresholds, actions and hard rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.decision import Action
from genguard.errors import PolicyError
from genguard.policy import BUILTIN_PROFILES, HARD_RULES, evaluate, load_policy, parse_policy


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_builtin_profiles_load_with_stable_ids(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert policy.policy_id.startswith(f"{name}@") and len(policy.policy_id) == len(name) + 13
    assert load_policy(name).policy_id == policy.policy_id


def test_cached_id_follows_copies() -> None:
    standard = load_policy("standard")
    first = standard.policy_id
    renamed = standard.model_copy(update={"name": "renamed"})
    assert renamed.policy_id.startswith("renamed@") and standard.policy_id == first
    stricter = standard.model_copy(
        update={"image": standard.image.model_copy(update={"max_frames": 3})}
    )
    assert stricter.policy_id != first and stricter.policy_id.startswith("standard@")


def test_ids_differ_between_profiles_and_track_content() -> None:
    ids = {load_policy(n).policy_id for n in BUILTIN_PROFILES}
    assert len(ids) == len(BUILTIN_PROFILES)
    a = parse_policy('name = "x"\n[image.categories.nudity]\nthreshold = 0.5\naction = "block"\n')
    b = parse_policy('name = "x"\n[image.categories.nudity]\nthreshold = 0.51\naction = "block"\n')
    assert a.policy_id != b.policy_id


def test_profiles_order_from_strict_to_adult() -> None:
    """The same nudity score is blocked by strict, censored by standard, allowed by adult."""
    scores = {"nudity": 0.7, "suggestive": 0.7, "sexual_explicit": 0.1}
    actions = {n: evaluate(load_policy(n), "image", scores).action for n in BUILTIN_PROFILES}
    assert actions == {
        "strict": Action.BLOCK,
        "standard": Action.CENSOR,
        "adult": Action.ALLOW,
        "off": Action.ALLOW,
    }


def test_reason_text_names_score_threshold_policy_and_action() -> None:
    verdict = evaluate(load_policy("standard"), "image", {"nudity": 0.91})
    assert verdict.reasons == ["nudity 0.91 >= 0.60 in policy standard -> censor"]
    assert verdict.censor_categories == {"nudity"}


def test_worst_action_wins() -> None:
    verdict = evaluate(load_policy("standard"), "image", {"nudity": 0.9, "sexual_explicit": 0.9})
    assert verdict.action is Action.BLOCK
    assert len(verdict.reasons) == 2


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_hard_rules_hold_under_every_profile(name: str) -> None:
    policy = load_policy(name)
    minor = evaluate(policy, "prompt", {"sexual": 0.8, "minor": 0.9})
    assert minor.action is Action.BLOCK and minor.hard_rule == "sexual_minor"
    person = evaluate(policy, "prompt", {"sexual": 0.8, "real_person": 0.95})
    assert person.action is Action.BLOCK and person.hard_rule == "sexual_real_person"
    assert "hard rule" in person.reasons[0]


def test_hard_rule_combines_image_scores_with_prompt_context() -> None:
    adult = load_policy("adult")
    alone = evaluate(adult, "image", {"nudity": 0.9})
    assert alone.action is Action.ALLOW
    with_context = evaluate(adult, "image", {"nudity": 0.9}, context={"minor": 0.8})
    assert with_context.action is Action.BLOCK and with_context.hard_rule == "sexual_minor"
    below = evaluate(adult, "image", {"nudity": 0.3}, context={"minor": 0.8})
    assert below.action is Action.ALLOW


def test_policy_cannot_remove_hard_rules_only_add(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(
        'extends = "off"\nname = "custom"\n'
        '[[hard_rules]]\nname = "no_gore_with_minors"\nall_of = [["violence"], ["minor"]]\n'
    )
    policy = load_policy(path)
    names = [rule.name for rule in policy.all_hard_rules()]
    assert names[: len(HARD_RULES)] == [r.name for r in HARD_RULES]
    assert "no_gore_with_minors" in names
    assert evaluate(policy, "prompt", {"violence": 0.9, "minor": 0.9}).action is Action.BLOCK


def test_extends_overrides_only_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'extends = "standard"\nname = "mine"\n'
        '[image.categories.nudity]\nthreshold = 0.8\naction = "review"\n'
    )
    policy = load_policy(path)
    standard = load_policy("standard")
    assert policy.image.categories["nudity"].threshold == 0.8
    assert (
        policy.image.categories["sexual_explicit"] == standard.image.categories["sexual_explicit"]
    )
    assert policy.prompt == standard.prompt


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name = ", "not valid TOML"),
        (
            'name = "x"\n[image.categories.nudiity]\nthreshold = 0.5\naction = "block"',
            "unknown image categories",
        ),
        (
            'name = "x"\n[image.categories.nudity]\nthreshold = 1.5\naction = "block"',
            "image.categories.nudity.threshold",
        ),
        (
            'name = "x"\n[image.categories.nudity]\nthreshold = 0.5\naction = "delete"',
            "image.categories.nudity.action",
        ),
        ('name = "x"\nsurprise = 1', "surprise"),
        ('extends = "nonexistent"', "only built-in profiles can be extended"),
        (
            'name = "x"\n[prompt.categories.nudity]\nthreshold = 0.5\naction = "block"',
            "unknown prompt categories",
        ),
    ],
)
def test_invalid_policies_give_specific_errors(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "bad.toml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("bad.toml")


def test_unknown_policy_names_and_missing_files() -> None:
    with pytest.raises(PolicyError, match="unknown policy 'lenient'"):
        load_policy("lenient")
    with pytest.raises(PolicyError, match="not found"):
        load_policy("/nonexistent/policy.toml")

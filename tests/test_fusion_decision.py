"""Fusion maths and the Decision's versioned JSON form."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from genguard.calibration import calibrate
from genguard.decision import SCHEMA, Action, Decision, Match, Region
from genguard.detectors.base import DetectorOutput
from genguard.detectors.nudenet import NUDENET_CURVE, detections_to_output
from genguard.detectors.opennsfw import probability_to_output
from genguard.fusion import Evidence, Fusion, apply_implications

DOCS = Path(__file__).resolve().parents[1] / "docs"


def nudenet_output(label: str, score: float) -> DetectorOutput:
    return detections_to_output([(label, score, (0, 0, 10, 10))])


def test_calibration_is_monotone_and_anchored() -> None:
    values = [calibrate(x / 100, NUDENET_CURVE) for x in range(101)]
    assert values == sorted(values)
    assert calibrate(0.2, NUDENET_CURVE) == pytest.approx(0.1)
    assert calibrate(1.0, NUDENET_CURVE) == 1.0


def test_label_weights_and_implication_chain() -> None:
    fusion = Fusion()
    explicit = fusion.fuse([nudenet_output("MALE_GENITALIA_EXPOSED", 0.8)])
    assert explicit["sexual_explicit"] == pytest.approx(0.92)
    assert explicit["nudity"] >= explicit["sexual_explicit"]
    assert explicit["suggestive"] >= explicit["nudity"]
    belly = fusion.fuse([nudenet_output("BELLY_EXPOSED", 0.8)])
    assert belly["suggestive"] == pytest.approx(0.92 * 0.4)
    assert belly["nudity"] == 0.0
    face = fusion.fuse([nudenet_output("FACE_FEMALE", 0.6)])
    assert face["face"] == pytest.approx(0.75) and face["nudity"] == 0.0


def test_a_detection_both_backends_support_keeps_its_score() -> None:
    fusion = Fusion()
    nn = nudenet_output("FEMALE_BREAST_EXPOSED", 0.5)
    nsfw = probability_to_output(0.7)
    together = fusion.fuse([nn, nsfw])["nudity"]
    alone = fusion.fuse([nn])["nudity"], fusion.fuse([nsfw])["nudity"]
    assert together == pytest.approx(max(alone))
    # OpenNSFW cannot tell explicit from nude: half weight on sexual_explicit.
    nsfw_alone = fusion.fuse([nsfw])
    assert nsfw_alone["sexual_explicit"] == pytest.approx(nsfw_alone["nudity"] / 2)


def test_lone_boxes_that_the_whole_image_classifier_rejects_count_less() -> None:
    fusion = Fusion()
    nn = nudenet_output("BUTTOCKS_EXPOSED", 0.8)
    rejected = fusion.fuse([nn, probability_to_output(0.01)])["nudity"]
    assert rejected == pytest.approx(fusion.fuse([nn])["nudity"] * fusion.lone_factor)
    unsure = fusion.fuse([nn, probability_to_output(0.2)])["nudity"]  # not a rejection
    assert unsure == pytest.approx(fusion.fuse([nn])["nudity"])
    # A whole-image score with no box anywhere is not damped (nothing located to doubt).
    assert fusion.fuse([nudenet_output("FACE_FEMALE", 0.9), probability_to_output(0.95)])[
        "nudity"
    ] == pytest.approx(fusion.fuse([probability_to_output(0.95)])["nudity"])


@pytest.mark.parametrize("threshold", [0.2, 0.3, 0.45, 0.6, 0.75, 0.9])
def test_where_both_backends_alone_agree_the_fusion_agrees(threshold: float) -> None:
    """Any threshold, any pair of scores: agreement of the parts is the fused decision."""
    fusion = Fusion()
    grid = [i / 20 for i in range(21)]
    for a in grid:
        for b in grid:
            items = [Evidence(a, located=True), Evidence(b, located=False)]
            alone = (a >= threshold, fusion.combine(items[1:]) >= threshold)
            fused = fusion.combine(items) >= threshold
            if alone[0] == alone[1]:
                assert fused == alone[0], (a, b)


def test_frame_filling_body_part_boxes_are_implausible() -> None:
    from genguard.detectors.nudenet import plausibility

    frame = (400, 300)
    assert plausibility("BUTTOCKS_EXPOSED", (0, 0, 400, 300), frame) == pytest.approx(0.5)
    assert plausibility("BUTTOCKS_EXPOSED", (10, 10, 100, 100), frame) == 1.0
    assert 0.5 < plausibility("FEMALE_BREAST_EXPOSED", (0, 0, 260, 260), frame) < 1.0
    assert plausibility("FACE_FEMALE", (0, 0, 400, 300), frame) == 1.0  # portraits
    whole = detections_to_output([("BUTTOCKS_EXPOSED", 0.8, (0, 0, 400, 300))], frame_size=frame)
    small = detections_to_output([("BUTTOCKS_EXPOSED", 0.8, (0, 0, 90, 90))], frame_size=frame)
    assert whole.scores["nudity"] == pytest.approx(small.scores["nudity"] / 2)
    assert whole.regions[0].score == small.regions[0].score == 0.8  # evidence kept raw


def test_direct_category_backends_pass_through() -> None:
    scores = Fusion().fuse([DetectorOutput("hashbank", scores={"hash_match": 1.0})])
    assert scores["hash_match"] == 1.0


def test_fusion_knows_no_backend_by_name() -> None:
    """Any backend's calibrated scores fuse alike; names never change the maths."""
    nudenet = nudenet_output("FEMALE_BREAST_EXPOSED", 0.7)
    renamed = DetectorOutput("third-party", regions=nudenet.regions, scores=nudenet.scores)
    assert Fusion().fuse([renamed]) == Fusion().fuse([nudenet])
    source = (Path(__file__).resolve().parents[1] / "src/genguard/fusion.py").read_text()
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    literals = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }
    assert not literals & {"nudenet", "opennsfw", "clip", "hf", "hashbank"}


def test_unscored_regions_count_at_their_own_score() -> None:
    region = Region((0, 0, 5, 5), "blade", "violence", 0.7, "plugin")
    scored = DetectorOutput("plugin", regions=[region], scores={"violence": 0.2})
    assert Fusion().fuse([DetectorOutput("plugin", regions=[region])])["violence"] == 0.7
    # The backend's own calibration wins over its raw region score.
    assert Fusion().fuse([scored])["violence"] == pytest.approx(0.2)


def test_every_nudenet_category_is_reported() -> None:
    assert set(detections_to_output([]).scores) == {
        "sexual_explicit",
        "nudity",
        "suggestive",
        "face",
    }


def test_vocabulary_always_complete() -> None:
    assert set(apply_implications({})) == {"sexual_explicit", "nudity", "suggestive", "face"}


def make_decision() -> Decision:
    return Decision(
        action=Action.CENSOR,
        categories={"nudity": 0.912345, "face": 0.5},
        policy_id="standard@abc",
        regions=[Region((1, 2, 3, 4), "FEMALE_BREAST_EXPOSED", "nudity", 0.9, "nudenet")],
        matches=[Match("sexual", "nude", 0, 4, "n.u.d.e", 0.9, "lexicon")],
        reasons=["nudity 0.91 >= 0.60 in policy standard -> censor"],
        timings_ms={"detect": 12.3456},
    )


def test_decision_round_trip() -> None:
    decision = make_decision()
    data = json.loads(decision.to_json())
    assert data["schema"] == SCHEMA and data["categories"]["nudity"] == 0.9123
    again = Decision.from_dict(data)
    assert again.action is Action.CENSOR and again.regions[0].box == (1, 2, 3, 4)
    assert again.matches[0].quote == "n.u.d.e"
    with pytest.raises(ValueError, match="unsupported decision schema"):
        Decision.from_dict({**data, "schema": "genguard.decision/0"})


def test_json_schema_document_matches_the_code() -> None:
    schema = json.loads((DOCS / "decision.schema.json").read_text())
    assert schema["properties"]["schema"]["const"] == SCHEMA
    data = make_decision().to_dict()
    assert set(schema["required"]) == set(data)
    assert set(schema["properties"]) == set(data)
    assert set(schema["properties"]["action"]["enum"]) == {a.value for a in Action}


def test_action_ordering() -> None:
    assert Action.worst(Action.CENSOR, Action.REVIEW, Action.ALLOW) is Action.REVIEW
    assert Action.worst() is Action.ALLOW

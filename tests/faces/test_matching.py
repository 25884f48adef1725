"""Image side: edited copies of a registered face match, other faces and face-free photos
do not, and the sexual_real_person hard rule then blocks under every profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genguard.cli import main
from genguard.content import LoadLimits, load_image
from genguard.coverage import rule_coverage
from genguard.decision import Action
from genguard.detectors.base import ImageDetector
from genguard.detectors.faces import MAX_FACES, FaceMatchDetector
from genguard.faces.index import FaceIndex
from genguard.guard import Guard
from genguard.policy import BUILTIN_PROFILES, load_policy
from tests.faces import samples
from tests.faces.conftest import REGISTERED, SexualSignal

ANALYSIS = LoadLimits(analysis_side=640)


def frame_of(data: bytes) -> np.ndarray:
    """What a Guard's detectors receive for these file bytes."""
    return load_image(data, ANALYSIS).frames[0]


@pytest.mark.slow
@pytest.mark.parametrize("edit", sorted(samples.AUGMENTATIONS))
def test_edited_copies_of_the_registered_face_match(face_index: FaceIndex, edit: str) -> None:
    frame = frame_of(samples.AUGMENTATIONS[edit](samples.astronaut()))
    (output,) = FaceMatchDetector(index=face_index).detect([frame])
    assert output.scores["real_person"] >= 0.5
    (region,) = output.regions
    assert region.category == "real_person" and region.label.startswith(f"PERSON:{REGISTERED} (")
    x, y, w, h = region.box  # on the face (the original photo has it at ~(179, 83, 88, 88))
    assert w >= 30 and x + w <= frame.shape[1] and y + h <= frame.shape[0]


def test_another_identity_and_face_free_photos_do_not_match(face_index: FaceIndex) -> None:
    detector = FaceMatchDetector(index=face_index)
    hopper, *free = detector.detect(
        [frame_of(samples.encode(samples.grace_hopper()))]
        + [frame_of(samples.encode(im)) for im in list(samples.face_free().values())[:3]]
    )
    assert hopper.raw["faces"] == 1 and hopper.raw["distance"] > 0.6
    assert hopper.scores["real_person"] < 0.5 and hopper.regions == []
    for output in free:
        assert output.raw == {"faces": 0.0} and output.scores == {"real_person": 0.0}


@pytest.mark.slow
def test_a_crowd_costs_at_most_the_bounded_number_of_embeddings(face_index: FaceIndex) -> None:
    crowd = samples.face_grid(samples.astronaut().crop((130, 30, 320, 220)), rows=5, cols=5)
    detector = FaceMatchDetector(index=face_index, max_faces=4)
    (output,) = detector.detect([crowd])
    assert output.raw["faces"] == 4  # 25 faces found, the 4 largest embedded
    assert len(output.regions) == 4 and output.scores["real_person"] >= 0.5
    faces, _, _ = FaceMatchDetector(index=face_index).find_faces(crowd)
    assert 4 < len(faces) <= MAX_FACES


def _guard(profile: str, index: FaceIndex, sexual: float) -> Guard:
    detectors: list[ImageDetector] = [SexualSignal(sexual), FaceMatchDetector(index=index)]
    return Guard(load_policy(profile), detectors)


@pytest.mark.parametrize("profile", BUILTIN_PROFILES)
def test_registered_face_with_sexual_signal_is_blocked_under_every_profile(
    face_index: FaceIndex, portraits: dict[str, Path], profile: str
) -> None:
    decision = _guard(profile, face_index, sexual=0.9).check_image(portraits["astronaut"])
    assert decision.action is Action.BLOCK
    assert decision.hard_rule == "sexual_real_person"
    assert decision.categories["real_person"] >= 0.5
    assert any(r.label.startswith(f"PERSON:{REGISTERED}") for r in decision.regions)


def test_registered_face_without_sexual_signal_is_not_blocked_by_the_rule(
    face_index: FaceIndex, portraits: dict[str, Path]
) -> None:
    decision = _guard("strict", face_index, sexual=0.0).check_image(portraits["astronaut"])
    assert decision.hard_rule is None and decision.action is Action.ALLOW
    assert decision.categories["real_person"] >= 0.5  # seen, but a portrait is fine


def test_unregistered_face_with_sexual_signal_is_no_real_person(
    face_index: FaceIndex, portraits: dict[str, Path]
) -> None:
    decision = _guard("off", face_index, sexual=0.9).check_image(portraits["hopper"])
    assert decision.categories["real_person"] < 0.5
    assert decision.hard_rule != "sexual_real_person"
    assert not any(r.category == "real_person" for r in decision.regions)


def test_with_the_faces_backend_the_rule_fires_on_images_alone() -> None:
    rules = {r.rule: r for r in rule_coverage(load_policy("off"), ["nudenet", "faces"])}
    assert rules["sexual_real_person"].fires_on_images_alone
    assert not rules["sexual_minor"].fires_on_images_alone


@pytest.mark.slow
def test_guard_and_check_cli_add_the_backend_when_the_store_has_faces(
    tmp_path: Path, portraits: dict[str, Path], capsys
) -> None:
    db = tmp_path / "faces.db"
    assert main(["persons", "add", REGISTERED, "--photo", str(portraits["astronaut"]),
                 "--store", str(db)]) == 0  # fmt: skip
    guard = Guard.from_policy("off", backends=[], store=str(db))
    assert [d.name for d in guard.detectors] == ["faces"]
    decision = guard.check_image(portraits["astronaut"])
    assert decision.categories["real_person"] >= 0.5 and decision.backends == ["faces"]
    assert Guard.from_policy("off", backends=[], store=str(tmp_path / "empty.db")).detectors == []
    capsys.readouterr()
    code = main(["check", str(portraits["astronaut"]), "-b", "faces", "--store", str(db),
                 "--json"])  # fmt: skip
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["categories"]["real_person"] >= 0.5
    assert [r["label"].split(" (")[0] for r in record["regions"]] == [f"PERSON:{REGISTERED}"]
    # The gateway builds its detectors from its open store: the faces backend joins them.
    from genguard.server.services import GuardRegistry
    from genguard.store import open_store

    with open_store(db) as opened:
        served = GuardRegistry({"off": "off"}, backends=[], store=opened).get("off")
        assert [d.name for d in served.detectors] == ["faces"]
    with open_store(tmp_path / "empty.db") as opened:
        assert GuardRegistry({"off": "off"}, backends=[], store=opened).get("off").detectors == []

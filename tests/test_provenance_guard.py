"""Provenance inside the Guard: hash-bank matches as signals, watermarks as an action."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genguard.cli import main
from genguard.content import load_image
from genguard.decision import Action
from genguard.detectors.base import create_detector
from genguard.errors import ConfigError
from genguard.guard import Guard, WatermarkSettings
from genguard.policy import load_policy
from genguard.provenance.hashbank import HashBank, pdq_hash
from genguard.provenance.watermark import detect_watermark
from tests.conftest import FakeDetector


@pytest.fixture
def bank_file(photos: dict[str, Path], tmp_path: Path) -> Path:
    bank = HashBank()
    digest, _ = pdq_hash(load_image(photos["astronaut"]).rgb)
    bank.add("known-astronaut", digest, {"source": "test"})
    path = tmp_path / "known.bank"
    bank.save(path)
    return path


def test_a_bank_match_blocks_a_resized_reencoded_copy(
    photos: dict[str, Path], bank_file: Path
) -> None:
    guard = Guard(load_policy("standard"), [create_detector(f"hashbank:{bank_file}")])
    copy = Image.open(photos["astronaut"]).resize((200, 200))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=60)
    decision = guard.check_image(buffer.getvalue())
    assert decision.action is Action.BLOCK
    assert decision.reasons == ["hash_match 1.00 >= 0.50 in policy standard -> block"]
    assert decision.regions[0].label.startswith("HASHBANK:known-astronaut (distance ")
    assert guard.check_image(photos["coffee"]).action is Action.ALLOW
    off = Guard(load_policy("off"), guard.detectors)
    assert off.check_image(buffer.getvalue()).action is Action.ALLOW  # a policy decision


def test_hashbank_backend_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a bank file"):
        create_detector("hashbank")
    with pytest.raises(ConfigError, match="hash bank not found"):
        create_detector(f"hashbank:{tmp_path / 'none.bank'}")
    (tmp_path / "b.bank").write_text("")
    with pytest.raises(ConfigError, match="must be an integer"):
        create_detector(f"hashbank:{tmp_path / 'b.bank'}@far")
    assert create_detector(f"hashbank:{tmp_path / 'b.bank'}@12").threshold == 12


def test_published_images_carry_the_watermark(photos: dict[str, Path]) -> None:
    guard = Guard(load_policy("standard"), [FakeDetector()])
    guard.watermark = WatermarkSettings(payload=0x1234ABCD)
    big = Image.open(photos["coffee"]).resize((512, 384))
    image = load_image(np.asarray(big))
    decision = guard.check_image(image)
    out = guard.apply(image, decision)
    found = detect_watermark(out)
    assert found.found and found.payload == 0x1234ABCD
    assert "watermark embedded: payload 0x1234abcd" in decision.notes
    small = load_image(np.asarray(big.resize((120, 90))))
    small_decision = guard.check_image(small)
    assert (guard.apply(small, small_decision) == small.rgb).all()
    assert any(n.startswith("not watermarked") for n in small_decision.notes)


def test_censor_cli_watermark_option(photos: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    Image.open(photos["chelsea"]).resize((400, 300)).save(source)
    out = tmp_path / "out.png"
    assert main(["censor", str(source), "-o", str(out), "--watermark", "0xcafe0001"]) == 0
    assert detect_watermark(np.asarray(Image.open(out).convert("RGB"))).payload == 0xCAFE0001
    assert main(["censor", str(source), "-o", str(out), "--watermark", "0x1ffffffff"]) == 2

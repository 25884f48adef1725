"""eval/calibrate on synthetic scores with known answers, and the CLI end to end.

Positives come from a synthetic backend that scores solid-grey images by their level;
no real imagery is involved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genguard.cli import main
from genguard.decision import Region
from genguard.detectors.base import DETECTORS, DetectorOutput, register_detector
from genguard.errors import ConfigError
from genguard.evaluation import metrics
from genguard.evaluation.dataset import read_labelled_folder, read_labels_csv
from genguard.policy import load_policy


def test_threshold_for_fpr_recovers_the_known_optimum() -> None:
    negatives = np.linspace(0.0, 0.5, 101)  # FPR 0.1 => the 10 highest negatives may pass
    positives = np.linspace(0.45, 1.0, 50)
    scores = np.r_[negatives, positives]
    labels = np.r_[np.zeros(101, bool), np.ones(50, bool)]
    chosen = metrics.threshold_for_fpr(scores, labels, 0.1)
    assert chosen.fp <= 10 and chosen.fpr <= 0.1
    assert chosen.threshold == pytest.approx(negatives[-10])  # the lowest allowed threshold
    separable = metrics.threshold_for_fpr([0.1, 0.2, 0.3, 0.6, 0.7], [0, 0, 0, 1, 1], 0.0)
    assert separable.threshold == pytest.approx(0.6) and separable.recall == 1.0


def test_threshold_for_recall_and_auc() -> None:
    scores = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2]
    labels = [0, 0, 1, 1, 1, 0]
    assert metrics.roc_auc(scores, labels) == pytest.approx(8 / 9)
    chosen = metrics.threshold_for_recall(scores, labels, 1.0)
    assert chosen.threshold == pytest.approx(0.35) and chosen.fp == 1
    assert metrics.threshold_for_recall(scores, labels, 0.6).threshold == pytest.approx(0.8)


def test_single_class_sets_are_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="needs both classes: the set has 0 unsafe and 3 safe"):
        metrics.roc_auc([0.1, 0.2, 0.3], [0, 0, 0])


def test_isotonic_and_platt_calibrate_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(4000)
    labels = rng.random(4000) < truth  # P(unsafe) = truth
    scores = truth**3  # monotone but badly calibrated
    before = metrics.expected_calibration_error(scores, labels)
    curve = metrics.isotonic_fit(scores, labels)
    after = metrics.expected_calibration_error(np.interp(scores, *zip(*curve, strict=True)), labels)
    assert before > 0.15 and after < 0.03
    xs, ys = zip(*curve, strict=True)
    assert list(xs) == sorted(set(xs)) and list(ys) == sorted(ys)
    slope, _ = metrics.platt_fit(truth, labels)
    assert slope > 3  # a steep logistic: the truth is informative


class LevelDetector:
    """Synthetic backend: nudity score = (grey level - 100) / 100, clipped; no location."""

    name = "level"
    categories = ("nudity",)

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        outputs = []
        for frame in frames:
            score = float(np.clip((frame.mean() - 100) / 100, 0, 1))
            region = Region((0, 0, 4, 4), "LEVEL", "nudity", score, self.name)
            outputs.append(DetectorOutput(self.name, regions=[region] if score > 0 else []))
        return outputs


@pytest.fixture
def level_backend():
    register_detector("level")(LevelDetector)
    yield "level"
    DETECTORS.remove("level")


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """safe/ levels 60..150, nudity/ levels 130..200: overlapping, so thresholds matter."""
    root = tmp_path / "labelled"
    for folder, levels in (("safe", range(60, 151, 3)), ("nudity", range(130, 201, 3))):
        (root / folder).mkdir(parents=True)
        for level in levels:
            Image.new("RGB", (16, 16), (level,) * 3).save(root / folder / f"{level}.png")
    (root / "safe" / "broken.png").write_bytes(b"")
    return root


def test_eval_cli_writes_metrics_and_html(
    labelled: Path, level_backend: str, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    args = ["eval", str(labelled), "--out", str(out), "--backend", level_backend]
    assert main([*args, "--target-fpr", "0.1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 56 and report["unsafe"] == 24
    assert report["errors"][0]["path"].endswith("broken.png")
    fused = report["targets"]["nudity"]["sources"]["fused"]
    assert 0.8 < fused["auc"] < 1.0
    assert fused["at_target_fpr"]["fpr"] <= 0.1
    assert fused["at_policy"]["threshold"] == 0.6  # standard's nudity threshold
    page = (out / "index.html").read_text()
    assert "<svg" in page and "ROC AUC" in page and "<img" not in page
    assert main([*args, "--thumbnails", "--out", str(tmp_path / "e2")]) == 0
    assert "<img" in (tmp_path / "e2" / "index.html").read_text()


def test_calibrate_cli_writes_a_loadable_fitted_policy(
    labelled: Path, level_backend: str, tmp_path: Path
) -> None:
    output = tmp_path / "fitted.toml"
    args = ["calibrate", str(labelled), "-o", str(output), "--backend", level_backend]
    assert main([*args, "--target-fpr", "0.05"]) == 0
    policy = load_policy(output)
    assert policy.fit["target"] == {"fpr": 0.05}
    assert len(policy.fit["dataset_sha256"]) == 64
    nudity = policy.fit["metrics"]["nudity"]
    assert nudity["fpr"] <= 0.05 and nudity["recall"] > 0.5
    assert "nudity" in policy.image.calibration
    assert (
        policy.image.categories["sexual_explicit"]
        == load_policy("standard").image.categories["sexual_explicit"]
    )
    assert main([*args, "--target-fpr", "0.05", "--target-recall", "0.9"]) == 2


def test_label_files_report_line_numbers(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    cases = {
        "path,label\na.png,1\nmissing.png,0\n": "labels.csv:3: no such file",
        "a.png,maybe\n": "labels.csv:1: unknown label 'maybe'",
        "a.png,1,nudeness\n": "labels.csv:1: unknown category 'nudeness'",
        "a.png\n": "labels.csv:1: expected 'path,label[,category]'",
    }
    for text, message in cases.items():
        (tmp_path / "labels.csv").write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            read_labels_csv(tmp_path / "labels.csv")
    (tmp_path / "labels.csv").write_text("a.png,unsafe,nudity\n")
    assert read_labels_csv(tmp_path / "labels.csv")[0].category == "nudity"


def test_labelled_folder_rejects_unknown_sub_folders(tmp_path: Path) -> None:
    (tmp_path / "gore-ish").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "gore-ish" / "x.png")
    with pytest.raises(ConfigError, match="unknown category 'gore-ish'"):
        read_labelled_folder(tmp_path)


def test_backends_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "list"]) == 0
    out = capsys.readouterr().out
    assert "nudenet" in out and "opennsfw" in out

"""`genguard merge ... --audit SUITE`: the merged file audited next to its sources.

Uses the audit's own fake generator (deterministic pictures from a hash of the model
path, prompt and seed) and a content-free classifier registered here, as the audit CLI
tests do, so the whole merge -> audit -> side-by-side path runs in well under a second.
The expected counts are recomputed here from the generator and the rule directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from merge_helpers import SD1_KEYS, random_state
from PIL import Image

from genguard.audit.classify import CLASSIFIERS
from genguard.cli import main
from genguard.generators import GenerationSettings
from genguard.generators.local import FakeGenerator
from genguard.merge import parse_config
from genguard.merge.cli import audit_models

PROMPTS = ["a lighthouse", "a teapot on a table", "a garden in spring"]
SEEDS = 3
SIZE = 32


@dataclass
class _Decision:
    action: str
    categories: dict[str, float]


def reddish(image: Image.Image) -> bool:
    """A rule on pixels only: the red channel dominates on average."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return bool(pixels[..., 0].mean() > pixels[..., 1:].mean() + 10)


class RedClassifier:
    classifier_id = "test-red:v1"

    def check_images(self, images: Sequence[Image.Image]) -> list[_Decision]:
        return [
            _Decision("block", {"nudity": 0.9})
            if reddish(i)
            else _Decision("allow", {"nudity": 0.1})
            for i in images
        ]


@pytest.fixture
def red_classifier():
    CLASSIFIERS.add("test-red", lambda options: RedClassifier())
    yield
    CLASSIFIERS.remove("test-red")


@pytest.fixture
def setup(make_ckpt: Callable, write_recipe, tmp_path: Path) -> tuple[Path, Path]:
    make_ckpt("a", random_state(SD1_KEYS, 1))
    make_ckpt("b", random_state(SD1_KEYS, 2))
    recipe = write_recipe({"method": "slerp", "models": ["a.safetensors", "b.safetensors"]})
    suite = tmp_path / "innocent-mini.txt"
    suite.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return recipe, suite


def expected_flagged(model: Path) -> int:
    """What the audit must find for ``model``: the fake generator's images, the rule."""
    gen = FakeGenerator(str(model))
    settings = GenerationSettings(steps=25, width=SIZE, height=SIZE)
    return sum(reddish(gen.generate(p, s, settings)) for p in PROMPTS for s in range(SEEDS))


def audit_args(recipe: Path, out: Path, suite: Path) -> list[str]:
    return [
        "merge",
        str(recipe),
        "-o",
        str(out),
        "-q",
        "--audit",
        str(suite),
        "--audit-generator",
        "fake",
        "--audit-classifier",
        "test-red",
        "--audit-seeds",
        str(SEEDS),
        "--audit-size",
        str(SIZE),
    ]


def test_merge_audit_reports_sources_and_merge_side_by_side(
    setup, red_classifier, tmp_path: Path, capsys
) -> None:
    recipe, suite = setup
    out = tmp_path / "m.safetensors"
    assert main(audit_args(recipe, out, suite)) == 0
    assert out.is_file()
    report = json.loads((tmp_path / "m.audit" / "report.json").read_text(encoding="utf-8"))
    labels = [m["label"] for m in report["models"]]
    assert labels == ["a", "b", "merged:m"]
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors", out]
    for m, path in zip(report["models"], paths, strict=True):
        assert Path(m["ref"]).resolve() == path.resolve()  # the merge output itself is audited
        assert m["images"] == len(PROMPTS) * SEEDS
        assert m["flagged"]["count"] == expected_flagged(path)
    printed = " ".join(capsys.readouterr().out.split())
    for m in report["models"]:
        flagged = m["flagged"]
        assert f"{100 * flagged['rate']:.1f}% [" in printed
    merged = report["models"][-1]["flagged"]["rate"]
    for source in report["models"][:2]:  # merged - source, in points, on each source's row
        assert f"{100 * (merged - source['flagged']['rate']):+.1f} pts" in printed
    assert (tmp_path / "m.audit" / "index.html").is_file()


def test_bad_suite_fails_before_the_merge(setup, red_classifier, tmp_path: Path, capsys) -> None:
    recipe, _suite = setup
    out = tmp_path / "m.safetensors"
    code = main(audit_args(recipe, out, tmp_path / "missing.txt"))
    err = capsys.readouterr().err
    assert code == 2 and "suite file" in err and "missing.txt" in err
    assert not out.exists()  # nothing merged for an audit that could not run


def test_unknown_classifier_fails_before_the_merge(setup, tmp_path: Path, capsys) -> None:
    recipe, suite = setup
    out = tmp_path / "m.safetensors"
    assert main(audit_args(recipe, out, suite)) == 2  # test-red is not registered here
    assert "test-red" in capsys.readouterr().err and not out.exists()


def test_audited_models_are_sources_then_base_then_merge(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "method": "task_arithmetic",
            "base_model": "sd15.safetensors",
            "models": [{"model": "x.safetensors", "name": "style"}, "y.safetensors"],
        },
        base_dir=tmp_path,
    )
    models, labels = audit_models(cfg, tmp_path / "out.safetensors")
    assert labels == ["style", "y", "base:sd15", "merged:out"]
    assert models == [
        str(tmp_path / n) for n in ("x.safetensors", "y.safetensors", "sd15.safetensors")
    ] + [str(tmp_path / "out.safetensors")]


def _rate(k: int, n: int) -> dict:
    return {"count": k, "n": n, "rate": k / n, "ci95": [0.0, 1.0]}


def test_audit_table_shows_the_merge_minus_each_source(capsys) -> None:
    from rich.console import Console

    from genguard.merge.cli import audit_table

    comparison = {"diff": 0.0, "diff_ci95": [0, 0], "z": 0.0, "p_value": 1.0}
    summary = {
        "suite": {"name": "innocent", "prompts": 2},
        "seeds": [0, 1],
        "threshold": 0.5,
        "models": [
            {
                "label": "a",
                "images": 4,
                "flagged": _rate(1, 4),
                "categories": {"nudity": _rate(1, 4)},
            },
            {
                "label": "b",
                "images": 4,
                "flagged": _rate(3, 4),
                "categories": {"nudity": _rate(2, 4)},
            },
            {"label": "merged:m", "images": 4, "flagged": _rate(1, 4), "categories": {}},
        ],
        "comparisons": [
            {"a": "a", "b": "merged:m", "flagged": comparison},
            {"a": "b", "b": "merged:m", "flagged": comparison | {"diff": 0.5, "p_value": 0.2}},
            {"a": "a", "b": "b", "flagged": comparison | {"diff": -0.5}},
        ],
    }
    summary["models"][2]["categories"] = {"nudity": _rate(0, 4)}
    Console(width=200).print(audit_table(summary))
    out = " ".join(capsys.readouterr().out.split())
    assert "+0.0 pts (p=1.000)" in out and "-0.0" not in out  # equal rates: no negative zero
    assert "-50.0 pts (p=0.200)" in out  # the merge flags half as often as b
    assert "25.0% [0.0-100.0]" in out and "75.0% [0.0-100.0]" in out

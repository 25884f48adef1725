"""report.json numbers and the self-contained HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from audit_helpers import FakeClassifier

from genguard.audit import GenerationSettings, run_audit, write_report
from genguard.audit.stats import wilson_interval
from genguard.audit.suites import Prompt, PromptSuite

SMALL = GenerationSettings(steps=1, width=32, height=32)


class ByPrompt(FakeClassifier):
    """Flags according to a fixed set of (model, prompt) pairs, known in advance."""

    def __init__(self) -> None:
        super().__init__(lambda px: False)
        self.flag_next: list[bool] = []

    def check_images(self, images):
        decisions = super().check_images(images)
        for d, flag in zip(decisions, self.flag_next[: len(images)], strict=True):
            if flag:
                d.action, d.categories = "censor", {"nudity": 0.8, "face": 0.3}
        del self.flag_next[: len(images)]
        return decisions


@pytest.fixture
def result(tmp_path: Path):
    suite = PromptSuite(
        "t", [Prompt("a <b>bold</b> teapot", "kitchen"), Prompt("a garden", "outdoor")]
    )
    clf = ByPrompt()
    # model a: prompt 1 flagged on all 5 seeds, prompt 2 on none; model b: nothing
    clf.flag_next = [True] * 5 + [False] * 5 + [False] * 10
    res = run_audit(["a", "b"], suite, list(range(5)), SMALL, tmp_path, clf, generator="fake")
    write_report(res, tmp_path, threshold=0.5)
    return res


def test_report_json_numbers(result, tmp_path: Path) -> None:
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert data["schema"] == "genguard.audit/1" and data["seeds"] == [0, 1, 2, 3, 4]
    a, b = data["models"]
    assert a["label"] == "a" and a["images"] == 10 and a["flagged"]["count"] == 5
    assert a["flagged"]["ci95"] == pytest.approx(list(wilson_interval(5, 10)), abs=1e-6)
    assert b["flagged"]["count"] == 0 and b["flagged"]["ci95"][0] == 0.0
    assert a["categories"]["nudity"]["count"] == 5 and a["categories"]["face"]["count"] == 0
    assert a["actions"] == {"censor": 5, "allow": 5}
    assert a["tags"]["kitchen"]["rate"] == 1.0 and a["tags"]["outdoor"]["rate"] == 0.0
    (cmp,) = data["comparisons"]
    assert cmp["a"] == "a" and cmp["flagged"]["diff"] == 0.5
    assert cmp["flagged"]["p_value"] < 0.05  # 5/10 vs 0/10
    assert len(data["flagged"]) == 5 and all(f["model"] == "a" for f in data["flagged"])
    assert all(f["thumbnail"].startswith("thumbs/") for f in data["flagged"])
    worst, other = data["prompts"]
    assert worst["models"] == {"a": {"flagged": 5, "n": 5}, "b": {"flagged": 0, "n": 5}}
    assert other["models"]["a"] == {"flagged": 0, "n": 5}


def test_html_is_self_contained_and_escaped(result, tmp_path: Path) -> None:
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert page.count('class="bar"') == 2  # one bar per model in the inline SVG chart
    assert "<svg" in page and "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    # no external resources: every src is an embedded data URI
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "50.0% [23.7%, 76.3%]" in page  # rate and Wilson interval of model a
    assert "<td class=num>5/5</td>" in page and "Per prompt group" in page

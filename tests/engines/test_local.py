"""run_scan with the local engine: one row per sample, Parquet or JSONL, errors as rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from genguard.engines import ScanOptions, SourceOptions, read_rows, row_schema, run_scan
from genguard.errors import ConfigError, ContentError, MissingExtraError
from tests.engines.conftest import FakeGuardFactory

pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (genguard[scale])")
pq = pytest.importorskip("pyarrow.parquet")

QUIET = ScanOptions(progress=False, batch_size=3)


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {Path(r["id"]).name: r for r in rows}


def core_code(path: Path) -> str:
    """The error code genguard's core loader gives a file: engines must report the same."""
    with pytest.raises(ContentError) as info:
        FakeGuardFactory()().load(path)
    return info.value.code


def test_folder_to_parquet(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    summary = run_scan([image_folder], out=out, guard_factory=FakeGuardFactory(), options=QUIET)
    table = pq.read_table(out)
    assert table.schema.equals(row_schema())
    rows = by_name(table.to_pylist())
    assert len(rows) == summary.total == 7
    assert rows["flagged.png"]["action"] == "censor"
    assert rows["flagged.png"]["score_nudity"] == pytest.approx(0.9)
    assert rows["flagged.png"]["reasons"] and rows["flagged.png"]["error"] is None
    assert rows["astronaut.jpg"]["action"] == "allow"
    assert rows["astronaut.jpg"]["score_nudity"] == 0.0
    assert rows["truncated.jpg"]["error_code"] == core_code(image_folder / "truncated.jpg")
    assert rows["truncated.jpg"]["action"] is None and rows["truncated.jpg"]["score_nudity"] is None
    assert rows["empty.png"]["error_code"] == "empty_file"
    assert {r["policy_id"] for r in rows.values()} == {FakeGuardFactory()().policy_id}
    assert summary.actions == {"allow": 4, "censor": 1}
    assert summary.errors == {core_code(image_folder / "truncated.jpg"): 1, "empty_file": 1}


def test_webdataset_shards_with_corrupt_ones(shard_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards.jsonl"
    summary = run_scan(
        [shard_folder], out=out, fmt="webdataset", guard_factory=FakeGuardFactory(), options=QUIET
    )
    rows = read_rows(out)
    ids = {r["id"].split("/")[-1] for r in rows}
    assert {"shard-000.tar#s000", "shard-001.tar#a/s100"} <= {
        r["id"].split(str(shard_folder) + "/")[-1] for r in rows
    }
    assert len(rows) == summary.total == 4 + 3 + 3 + 1 + 1
    codes = {r["id"].split(str(shard_folder) + "/")[-1]: r["error_code"] for r in rows}
    assert codes["shard-001.tar#a/s101"] == "no_image"
    assert codes["shard-002.tar#t0"] is None and codes["shard-002.tar#t1"] is None
    assert codes["shard-002.tar#error"] == "truncated"
    assert codes["shard-003.tar#error"] == "corrupt_shard"
    assert codes["shard-004.tar#error"] == "empty_file"
    flagged = next(r for r in rows if r["key"] == "a/s100")
    assert flagged["action"] == "censor" and flagged["path"].endswith("shard-001.tar#a/s100")
    assert summary.actions == {"allow": 7, "censor": 1} and len(ids) == len(rows)


def test_parquet_table_in_parquet_out(tmp_path: Path, image_bytes) -> None:
    source = tmp_path / "in.parquet"
    names = ["astronaut", "flagged", "coffee"]
    pq.write_table(
        pa.table({"uid": [*names, "broken"], "jpg": [*(image_bytes[n] for n in names), b"x"]}),
        source,
    )
    out = tmp_path / "out.parquet"
    run_scan(
        [source],
        out=out,
        fmt="parquet",
        guard_factory=FakeGuardFactory(),
        options=QUIET,
        source=SourceOptions(image_column="jpg", id_column="uid"),
    )
    rows = {r["id"]: r for r in read_rows(out)}
    assert [rows[n]["action"] for n in names] == ["allow", "censor", "allow"]
    assert rows["broken"]["error_code"] == "not_an_image"
    assert rows["flagged"]["key"] == "1"


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown input format"):
        run_scan([tmp_path], out=tmp_path / "o.parquet", fmt="zip")
    with pytest.raises(ConfigError, match="unknown engine"):
        run_scan([tmp_path], out=tmp_path / "o.parquet", engine="spark")


def test_ray_engine_without_ray_names_the_extra(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtraError, match=r"genguard\[ray\]"):
        run_scan(
            [image_folder],
            out=tmp_path / "o.parquet",
            engine="ray",
            guard_factory=FakeGuardFactory(),
            options=QUIET,
        )


def test_score_columns_cover_the_builtin_image_categories() -> None:
    """The schema is fixed (workers must agree); it must still name every built-in."""
    from genguard.engines import SCORE_CATEGORIES
    from genguard.taxonomy import categories

    builtin = {c.name for c in categories("image")}
    assert builtin <= set(SCORE_CATEGORIES)
    assert [f"score_{c}" for c in SCORE_CATEGORIES] == [
        n for n in row_schema().names if n.startswith("score_")
    ]


def test_engine_scan_maps_cli_options(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """The call genguard scan makes: policy/backends reach the workers' GuardFactory."""
    from genguard.engines import cli as engines_cli

    seen = {}

    def fake_run_scan(paths, **kwargs):
        seen.update(kwargs, paths=paths)
        return run_scan(paths, **{**kwargs, "guard_factory": FakeGuardFactory()})

    monkeypatch.setattr(engines_cli, "run_scan", fake_run_scan)
    out = tmp_path / "s.parquet"
    assert engines_cli.needs_engine("folder", "local", out)
    assert not engines_cli.needs_engine("folder", "local", tmp_path / "s.jsonl")
    summary = engines_cli.engine_scan(
        [image_folder],
        out=out,
        policy="strict",
        backends=["nudenet"],
        image_column="img",
        workers=3,
        progress=False,
    )
    assert summary.total == 7 and len(read_rows(out)) == 7
    assert seen["guard_factory"].policy == "strict"
    assert seen["guard_factory"].backends == ("nudenet",)
    assert seen["source"].image_column == "img" and seen["options"].workers == 3
    with pytest.raises(ConfigError, match="--resume"):
        engines_cli.engine_scan([image_folder], out=out, resume=True)
    with pytest.raises(ConfigError, match="directories: Ray only"):
        engines_cli.engine_scan([image_folder], out=tmp_path / "dir")

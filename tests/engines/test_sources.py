"""Sources turn folders, shards and Parquet files into samples, and damage into errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.engines.sources import (
    SourceOptions,
    iter_samples,
    parquet_samples,
    shard_samples,
    split_member_name,
)
from genguard.errors import ConfigError

pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (genguard[scale])")
pq = pytest.importorskip("pyarrow.parquet")


def test_member_names_split_at_the_first_dot_of_the_base_name() -> None:
    assert split_member_name("a/b/s001.seg.JPG") == ("a/b/s001", "seg.jpg")
    assert split_member_name("s1.jpg") == ("s1", "jpg")
    assert split_member_name("dir.v2/s1.png") == ("dir.v2/s1", "png")


def test_good_shard_groups_members_by_key(shard_folder: Path, image_bytes) -> None:
    samples = list(shard_samples(str(shard_folder / "shard-000.tar")))
    assert [s.key for s in samples] == ["s000", "s001", "s002", "s003"]
    assert samples[0].data == image_bytes["astronaut"]
    assert all(s.error is None for s in samples)


def test_sample_without_image_and_compound_suffix(shard_folder: Path, image_bytes) -> None:
    samples = {s.key: s for s in shard_samples(str(shard_folder / "shard-001.tar"))}
    assert samples["a/s100"].data == image_bytes["flagged"]
    assert samples["a/s101"].error is not None and samples["a/s101"].error.code == "no_image"
    assert samples["a/s102"].data == image_bytes["chelsea"]


def test_truncated_shard_keeps_complete_samples_then_one_error(shard_folder: Path) -> None:
    samples = list(shard_samples(str(shard_folder / "shard-002.tar")))
    assert [s.key for s in samples] == ["t0", "t1", None]
    assert samples[-1].id.endswith("shard-002.tar#error")
    assert samples[-1].error is not None and samples[-1].error.code == "truncated"
    assert "t2" in str(samples[-1].error)


@pytest.mark.parametrize(
    ("name", "code"), [("shard-003.tar", "corrupt_shard"), ("shard-004.tar", "empty_file")]
)
def test_unreadable_shards_become_one_error_sample(shard_folder: Path, name, code) -> None:
    samples = list(shard_samples(str(shard_folder / name)))
    assert len(samples) == 1 and samples[0].error is not None
    assert samples[0].error.code == code


def test_missing_shard(tmp_path: Path) -> None:
    (sample,) = shard_samples(str(tmp_path / "gone.tar"))
    assert sample.error is not None and sample.error.code == "not_found"


def test_parquet_bytes_paths_structs_and_nulls(tmp_path: Path, image_bytes) -> None:
    (tmp_path / "rel.jpg").write_bytes(image_bytes["coffee"])
    table = pa.table(
        {
            "uid": ["a", "b", "c"],
            "img": [image_bytes["rocket"], None, b"garbage"],
            "file": ["rel.jpg", str(tmp_path / "rel.jpg"), None],
            "hf": [{"bytes": image_bytes["chelsea"], "path": None}, None, None],
        }
    )
    path = tmp_path / "table.parquet"
    pq.write_table(table, path)
    by_bytes = list(parquet_samples(str(path), SourceOptions(image_column="img", id_column="uid")))
    assert [s.id for s in by_bytes] == ["a", "b", "c"]
    assert by_bytes[0].data == image_bytes["rocket"]
    assert by_bytes[1].error is not None and by_bytes[1].error.code == "missing_image"
    assert by_bytes[2].data == b"garbage"  # decoding (and its error) happens in the engine
    by_path = list(parquet_samples(str(path), SourceOptions(image_column="file")))
    assert by_path[0].path == str(tmp_path / "rel.jpg")  # relative to the table's folder
    assert by_path[0].id == f"{path}#0" and by_path[0].data is None
    hf = list(parquet_samples(str(path), SourceOptions(image_column="hf")))
    assert hf[0].data == image_bytes["chelsea"]


def test_parquet_missing_column_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(ConfigError, match="no column 'image'"):
        list(parquet_samples(str(path)))


def test_corrupt_parquet_file_is_an_error_sample(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100)
    (sample,) = parquet_samples(str(path))
    assert sample.error is not None and sample.error.code == "corrupt_parquet"


def test_folder_walk_takes_image_extensions_only(image_folder: Path) -> None:
    names = sorted(Path(s.path).name for s in iter_samples([image_folder], "folder"))
    assert names == [
        "astronaut.jpg",
        "chelsea.jpg",
        "coffee.jpg",
        "empty.png",
        "flagged.png",
        "rocket.jpg",
        "truncated.jpg",
    ]

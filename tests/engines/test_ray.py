"""The Ray engine: same rows as the local engine, retries after a worker crash.

One local Ray (2 CPUs) is started for the whole module: starting Ray costs seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from genguard.engines import ScanOptions, SourceOptions, read_rows, row_schema, run_scan
from genguard.guard import Guard
from genguard.policy import load_policy
from tests.engines.conftest import FLAG_LEVEL, FakeGuardFactory

pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (genguard[scale])")
pq = pytest.importorskip("pyarrow.parquet")

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]
OPTIONS = ScanOptions(progress=False, batch_size=3, workers=2, cpus_per_worker=1)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=150 * 1024 * 1024,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},  # workers import tests.*
    )
    yield
    ray.shutdown()


def comparable(rows: list[dict]) -> dict[str, tuple]:
    return {
        r["id"]: (r["action"], r["error_code"], r["score_nudity"], r["key"], r["policy_id"])
        for r in rows
    }


def scan_both(paths, tmp_path: Path, fmt: str, **kwargs) -> tuple[dict, dict]:
    local, remote = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    common = {"fmt": fmt, "guard_factory": FakeGuardFactory(), "options": OPTIONS, **kwargs}
    run_scan(paths, out=local, engine="local", **common)
    summary = run_scan(paths, out=remote, engine="ray", **common)
    assert summary.total == pq.read_metadata(remote).num_rows
    return comparable(read_rows(local)), comparable(read_rows(remote))


def test_folder_rows_match_the_local_engine(image_folder: Path, tmp_path: Path) -> None:
    local, remote = scan_both([image_folder], tmp_path, "folder")
    assert remote == local and len(remote) == 7
    assert pq.read_schema(tmp_path / "ray.parquet").equals(row_schema())


def test_webdataset_with_corrupt_shards(shard_folder: Path, tmp_path: Path) -> None:
    local, remote = scan_both([shard_folder], tmp_path, "webdataset")
    assert remote == local and len(remote) == 12
    codes = sorted(c for _, c, *_ in remote.values() if c)
    assert codes == ["corrupt_shard", "empty_file", "no_image", "truncated"]


def test_parquet_input_by_expansion_and_by_ray_reader(tmp_path: Path, image_bytes) -> None:
    source = tmp_path / "in.parquet"
    names = ["astronaut", "flagged", "rocket"]
    pq.write_table(pa.table({"uid": names, "image": [image_bytes[n] for n in names]}), source)
    options = SourceOptions(id_column="uid")
    local, remote = scan_both([source], tmp_path, "parquet", source=options)
    assert remote == local and remote["flagged"][0] == "censor"
    out = tmp_path / "reader.parquet"
    reader_options = ScanOptions(**{**OPTIONS.__dict__, "ray_readers": True})
    run_scan(
        [source],
        out=out,
        fmt="parquet",
        engine="ray",
        guard_factory=FakeGuardFactory(),
        options=reader_options,
        source=options,
    )
    assert {k: v[:3] for k, v in comparable(read_rows(out)).items()} == {
        k: v[:3] for k, v in local.items()
    }


def test_binary_file_reader_and_part_file_directory(image_folder: Path, tmp_path: Path) -> None:
    files = sorted(str(p) for p in image_folder.rglob("*.jpg"))
    out_dir = tmp_path / "parts"
    summary = run_scan(
        files,
        out=out_dir,
        engine="ray",
        guard_factory=FakeGuardFactory(),
        options=ScanOptions(**{**OPTIONS.__dict__, "ray_readers": True}),
    )
    rows = read_rows(out_dir)
    assert len(rows) == summary.total == 5
    assert summary.actions == {"allow": 4} and sum(summary.errors.values()) == 1
    assert list(out_dir.glob("*.parquet"))


@dataclass(frozen=True)
class CrashOnceFactory:
    """A Guard whose worker process dies the first time it meets the flagged image."""

    marker: str

    def __call__(self) -> Guard:
        inner = FakeGuardFactory()().detectors[0]
        marker = self.marker

        class Crashing:
            name = "fake"
            categories = inner.categories

            def detect(self, frames):
                flagged = any(int(f.mean()) // 10 == FLAG_LEVEL // 10 for f in frames)
                if flagged and not os.path.exists(marker):
                    Path(marker).write_text(str(os.getpid()))
                    os._exit(1)  # a hard crash: no exception, the actor process is gone
                return inner.detect(frames)

        return Guard(load_policy("standard"), [Crashing()])


def test_a_crashed_worker_is_restarted_and_its_batch_retried(
    image_folder: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "crashed"
    out = tmp_path / "retry.parquet"
    summary = run_scan(
        [image_folder],
        out=out,
        engine="ray",
        guard_factory=CrashOnceFactory(str(marker)),
        options=OPTIONS,
    )
    assert marker.exists()  # the crash really happened
    rows = read_rows(out)
    assert len(rows) == len({r["id"] for r in rows}) == summary.total == 7
    flagged = next(r for r in rows if r["id"].endswith("flagged.png"))
    assert flagged["action"] == "censor"

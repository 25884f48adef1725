"""Benign inputs in every supported layout, plus broken ones, and a picklable fake Guard.

A solid grey image of level 245 gets a synthetic nudity region from the fake detector
(-> ``censor`` under the standard policy); sample photos get nothing (-> ``allow``).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genguard.guard import Guard
from genguard.policy import load_policy
from tests.conftest import FakeDetector, nudity_region

FLAG_LEVEL = 245
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


@dataclass(frozen=True)
class FakeGuardFactory:
    """Picklable: Ray workers import this module and build their own Guard."""

    def __call__(self) -> Guard:
        detector = FakeDetector({FLAG_LEVEL // 10 * 10: [nudity_region(box=(10, 10, 40, 40))]})
        return Guard(load_policy("standard"), [detector])


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def photo(name: str, side: int = 160) -> np.ndarray:
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    image.thumbnail((side, side))
    return np.asarray(image)


def flagged(side: int = 96) -> np.ndarray:
    return np.full((side, side, 3), FLAG_LEVEL, dtype=np.uint8)


@pytest.fixture(scope="session")
def image_bytes() -> dict[str, bytes]:
    """Encoded benign images by name: four photos and one flagged solid grey."""
    encoded = {name: jpeg(photo(name)) for name in PHOTO_NAMES}
    encoded["flagged"] = png(flagged())
    return encoded


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory, image_bytes) -> Path:
    """photos/*.jpg, flagged.png, a truncated JPEG, an empty file, a text file."""
    folder = tmp_path_factory.mktemp("folder")
    sub = folder / "photos"
    sub.mkdir()
    for name in PHOTO_NAMES:
        (sub / f"{name}.jpg").write_bytes(image_bytes[name])
    (folder / "flagged.png").write_bytes(image_bytes["flagged"])
    (folder / "truncated.jpg").write_bytes(image_bytes["coffee"][:600])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not scanned: no image extension")
    return folder


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w") as archive:
        for key, members in samples:
            for suffix, data in members.items():
                add_member(archive, f"{key}.{suffix}", data)


@pytest.fixture(scope="session")
def shard_folder(tmp_path_factory: pytest.TempPathFactory, image_bytes) -> Path:
    """Three good shards (one with a no-image sample), a truncated one, a non-tar, an
    empty one. Expected rows are described in ``EXPECTED_SHARD_ROWS``."""
    folder = tmp_path_factory.mktemp("shards")

    def meta(i: int) -> bytes:
        return json.dumps({"caption": f"sample {i}"}).encode()

    write_shard(
        folder / "shard-000.tar",
        [
            (f"s{i:03d}", {"jpg": image_bytes[n], "json": meta(i)})
            for i, n in enumerate(PHOTO_NAMES)
        ],
    )
    write_shard(
        folder / "shard-001.tar",
        [
            ("a/s100", {"png": image_bytes["flagged"], "txt": b"grey"}),
            ("a/s101", {"json": meta(101)}),  # no image member
            ("a/s102", {"seg.jpg": image_bytes["chelsea"]}),  # compound suffix
        ],
    )
    full = folder / "full.tmp"
    image = image_bytes["astronaut"]
    write_shard(full, [(f"t{i}", {"jpg": image}) for i in range(4)])
    member = 512 + -(-len(image) // 512) * 512  # tar header + data padded to 512
    cut = 2 * member + 512 + 700  # inside the third sample's image data
    (folder / "shard-002.tar").write_bytes(full.read_bytes()[:cut])
    full.unlink()
    (folder / "shard-003.tar").write_bytes(b"this is not a tar archive at all" * 40)
    (folder / "shard-004.tar").write_bytes(b"")
    return folder

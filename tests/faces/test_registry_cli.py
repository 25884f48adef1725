"""`genguard persons add NAME --photo`: embeddings stored (never photos), one-line errors,
all or nothing, counts in `persons list`, gone after `persons remove`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genguard.faces.reference import REFERENCE_SIDE, reference_face
from genguard.faces.registry import load_index_from, store_has_faces, with_face_backend
from tests.conftest import run_cli as run
from tests.faces import samples

pytestmark = pytest.mark.usefixtures("private_cwd")


def face_rows(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM person_faces").fetchone()[0])


@pytest.mark.slow
def test_add_stores_embeddings_not_photos_and_list_remove_follow(
    tmp_path: Path, portraits: dict[str, Path], capsys
) -> None:
    db = tmp_path / "faces.db"
    code, out, err = run(
        capsys, "persons", "add", "Eileen Collins", "--photo", str(portraits["astronaut"]),
        "--store", str(db),
    )  # fmt: skip
    assert code == 0, err
    assert "1 face embedding(s) added" in out
    # Adding the same photo again stores nothing new.
    code, out, _ = run(
        capsys, "persons", "add", "Eileen Collins", "--photo", str(portraits["astronaut"]),
        "--store", str(db),
    )  # fmt: skip
    assert code == 0 and "0 face embedding(s) added (1 in all)" in out
    assert face_rows(db) == 1
    # No photo in the database: neither the file's bytes nor any row of its pixels.
    raw = b"".join(path.read_bytes() for path in tmp_path.glob(f"{db.name}*"))  # + WAL
    photo = portraits["astronaut"].read_bytes()
    assert photo[:4096] not in raw and photo[-4096:] not in raw
    pixels = np.asarray(Image.open(portraits["astronaut"]).convert("RGB"))
    for row in (100, 130, 160):  # rows through the face
        assert pixels[row, 150:280].tobytes() not in raw
    with sqlite3.connect(db) as connection:
        (blob,) = connection.execute("SELECT embedding FROM person_faces").fetchone()
    assert len(blob) == 128 * 4
    # The name still protects prompts, and list shows the count of faces.
    code, out, _ = run(capsys, "persons", "list", "--json", "--store", str(db))
    assert json.loads(out) == [
        {"name": "Eileen Collins", "aliases": [], "builtin": False, "faces": 1}
    ]
    code, out, _ = run(capsys, "persons", "list", "--store", str(db))
    assert "Eileen Collins  faces: 1" in out
    code, out, _ = run(
        capsys, "check-prompt", "Eileen Collins nude", "--no-semantic",
        "--no-builtin-persons", "--store", str(db), "--json",
    )  # fmt: skip
    assert json.loads(out)["hard_rule"] == "sexual_real_person"
    assert with_face_backend(["nudenet"], str(db)) == ["nudenet", f"faces:{db}"]
    code, out, _ = run(capsys, "persons", "remove", "Eileen Collins", "--store", str(db))
    assert code == 0 and "and 1 face embedding(s)" in out
    assert face_rows(db) == 0
    assert not store_has_faces(str(db))
    assert with_face_backend(["nudenet"], str(db)) == ["nudenet"]


@pytest.mark.parametrize(
    ("photo", "why"),
    [("coffee", "no face found"), ("pair", "2 faces found")],
)
def test_a_photo_without_exactly_one_face_is_one_line_naming_it_and_nothing_is_stored(
    tmp_path: Path, portraits: dict[str, Path], capsys, photo: str, why: str
) -> None:
    db = tmp_path / "faces.db"
    code, out, err = run(
        capsys, "persons", "add", "Eileen Collins",
        "--photo", str(portraits["astronaut"]), "--photo", str(portraits[photo]),
        "--store", str(db),
    )  # fmt: skip
    assert code == 2
    assert err.startswith("error: reference photo ") and str(portraits[photo]) in err
    assert why in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert out == ""
    # All or nothing: the good photo is not stored, nor the name.
    code, out, _ = run(capsys, "persons", "list", "--json", "--store", str(db))
    assert json.loads(out) == []
    assert face_rows(db) == 0


def test_unreadable_or_missing_photos_are_one_line_naming_the_file(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    for path in (broken, tmp_path / "missing.jpg"):
        code, _, err = run(capsys, "persons", "add", "X Person", "--photo", str(path))
        assert code == 2 and f"reference photo {path}" in err


@pytest.mark.parametrize("edit", ["grey", "cmyk", "exif_rotated"])
def test_grey_cmyk_and_exif_rotated_reference_photos_work(
    tmp_path: Path, portraits: dict[str, Path], edit: str
) -> None:
    path = tmp_path / f"{edit}.jpg"
    path.write_bytes(samples.AUGMENTATIONS[edit](samples.astronaut()))
    original = reference_face(portraits["astronaut"]).embedding
    edited = reference_face(path).embedding
    assert float(np.linalg.norm(original - edited)) < 0.3


@pytest.mark.slow
def test_tiny_and_huge_reference_photos_work(tmp_path: Path, portraits: dict[str, Path]) -> None:
    original = reference_face(portraits["astronaut"]).embedding
    tiny = tmp_path / "tiny.png"
    samples.astronaut().resize((160, 160)).save(tiny)  # the face is ~28 px wide
    huge = tmp_path / "huge.jpg"
    samples.astronaut().resize((4096, 4096)).save(huge, quality=85)
    for path in (tiny, huge):
        face = reference_face(path)
        assert max(face.box[2:]) <= REFERENCE_SIDE
        assert float(np.linalg.norm(original - face.embedding)) < 0.45, path


def test_no_database_means_no_faces(tmp_path: Path) -> None:
    assert not store_has_faces()
    assert len(load_index_from()) == 0
    assert not (tmp_path / "genguard-data").exists()  # reading created nothing

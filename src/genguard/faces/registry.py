"""Face embeddings of protected persons in the store, and when images must be matched.

``genguard persons add NAME --photo a.jpg`` stores one embedding per photo next to the
person's name (the name still protects prompts). Only embeddings are stored, never the
photos. :func:`with_face_backend` is how every image surface (``Guard.from_policy``, the
CLI, the engines, the gateway) adds the ``faces`` backend exactly when the store holds
face entries, so a registered likeness is protected wherever images are checked, and a
deployment without any pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select

from genguard import settings
from genguard.faces.index import FaceIndex
from genguard.faces.model import EMBEDDING_SIZE, MODEL_ID
from genguard.store import FaceEmbeddingRow, PersonRow, Store

if TYPE_CHECKING:  # the photo side (image decoding) is only needed when adding photos
    from genguard.detectors.base import ImageDetector
    from genguard.faces.reference import ReferenceFace

#: Name of the detector backend that matches faces (``--backend faces[:STORE]``).
BACKEND = "faces"


def add_person_faces(
    store: Store, name: str, photos: Sequence[str | Path], aliases: Sequence[str] = ()
) -> tuple[str, int]:
    """Protect ``name`` (with ``aliases``) and store one embedding per photo.

    All or nothing: every photo is checked (exactly one face) before anything is written.
    Returns the person's stored name and how many new embeddings were added (a photo
    already stored for that person, same bytes, is not added twice).
    """
    from genguard.faces.reference import reference_faces
    from genguard.text.persons import add_person

    faces = reference_faces(photos)
    person = add_person(store, name, aliases)
    return person.name, store_faces(store, person.name, faces)


def store_faces(store: Store, name: str, faces: Sequence[ReferenceFace]) -> int:
    """Store the embeddings of ``faces`` for the existing person ``name``; returns how
    many were new (same photo bytes for the same person: stored once)."""
    with store.session() as session:
        person_id = session.scalar(select(PersonRow.id).where(PersonRow.name == name))
        if person_id is None:  # removed between the two sessions
            raise LookupError(f"person {name!r} vanished while adding faces")
        known = set(
            session.scalars(
                select(FaceEmbeddingRow.photo_sha256).where(FaceEmbeddingRow.person_id == person_id)
            )
        )
        added = 0
        for face in faces:
            if face.sha256 in known:
                continue
            known.add(face.sha256)
            vector = np.asarray(face.embedding, dtype="<f4").reshape(EMBEDDING_SIZE)
            session.add(
                FaceEmbeddingRow(
                    person_id=person_id,
                    model=MODEL_ID,
                    embedding=vector.tobytes(),
                    photo_sha256=face.sha256,
                )
            )
            added += 1
    return added


def resolve_person(store: Store, name: str) -> str | None:
    """The stored name of the person called ``name`` or with that alias (None: no one)."""
    wanted = " ".join(name.split()).casefold()
    with store.session() as session:
        for row in session.scalars(select(PersonRow)):
            if wanted in {n.casefold() for n in (row.name, *row.aliases)}:
                return str(row.name)
    return None


def face_counts(store: Store) -> dict[str, int]:
    """Number of stored face embeddings per person name (persons without any omitted)."""
    with store.session() as session:
        rows = session.execute(
            select(PersonRow.name, func.count(FaceEmbeddingRow.id))
            .join(FaceEmbeddingRow, FaceEmbeddingRow.person_id == PersonRow.id)
            .group_by(PersonRow.name)
        )
        return {str(name): int(count) for name, count in rows}


def load_face_index(store: Store) -> FaceIndex:
    """Every stored embedding of the current model, with its person's name."""
    with store.session() as session:
        rows = session.execute(
            select(PersonRow.name, FaceEmbeddingRow.embedding)
            .join(PersonRow, FaceEmbeddingRow.person_id == PersonRow.id)
            .where(FaceEmbeddingRow.model == MODEL_ID)
            .order_by(FaceEmbeddingRow.id)
        ).all()
    names = [str(name) for name, _ in rows]
    vectors = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4")
    return FaceIndex(names, vectors.reshape(len(names), EMBEDDING_SIZE))


def remove_person_faces(store: Store, name: str) -> int:
    """Delete the face embeddings of the person called ``name``; returns how many.

    The database's ON DELETE CASCADE does this when the person is deleted; doing it
    explicitly as well keeps a database opened without foreign keys from keeping them.
    """
    with store.session() as session:
        person_id = session.scalar(select(PersonRow.id).where(PersonRow.name == name))
        if person_id is None:
            return 0
        rows = list(
            session.scalars(select(FaceEmbeddingRow).where(FaceEmbeddingRow.person_id == person_id))
        )
        for row in rows:
            session.delete(row)
        return len(rows)


def _location(store: str | Path | None) -> str | Path | None:
    """The store to read: ``store``, else ``$GENGUARD_STORE``, else the default file
    (None: there is no database file, so no face entries)."""
    from genguard.store import DEFAULT_DB_PATH

    location = store if store is not None else settings.store_location()
    if location is None:
        return DEFAULT_DB_PATH if DEFAULT_DB_PATH.is_file() else None
    text = str(location)
    if text.startswith("sqlite:///") and text != "sqlite:///:memory:":
        text = text[len("sqlite:///") :].partition("?")[0]
    elif "://" in text:
        return location  # a server database: ask it
    # A SQLite file that does not exist holds no faces; reading must not create it.
    return location if Path(text).expanduser().is_file() else None


def load_index_from(store: str | Path | None = None) -> FaceIndex:
    """The face index of a store location (an empty one when there is no database)."""
    from genguard.store import open_store

    location = _location(store)
    if location is None:
        return FaceIndex([], np.zeros((0, EMBEDDING_SIZE), dtype=np.float32))
    with open_store(location) as opened:
        return load_face_index(opened)


def store_has_faces(store: str | Path | None = None) -> bool:
    """Whether the store (see :func:`load_index_from`) holds any face embedding."""
    from genguard.store import open_store

    location = _location(store)
    if location is None:
        return False
    with open_store(location) as opened, opened.session() as session:
        return session.scalar(select(FaceEmbeddingRow.id).limit(1)) is not None


def with_face_backend(backends: Sequence[str], store: str | Path | None = None) -> list[str]:
    """``backends`` plus the ``faces`` backend when the store holds face entries.

    A ``faces`` backend already named stays (pointed at ``store`` when it names none).
    The added spec names the store explicitly when one was given, so the detector reads
    the same database.
    """
    names = list(backends)
    if any(spec.partition(":")[0] == BACKEND for spec in names):
        if store is None:
            return names
        return [_with_store(spec, store) for spec in names]
    if not store_has_faces(store):
        return names
    return [*names, f"{BACKEND}:{store}" if store is not None else BACKEND]


def face_detectors(backends: Sequence[str], store: Store | None) -> list[ImageDetector]:
    """For a surface that holds an open store (the gateway): a ``faces`` detector reading
    that store when it has face entries and ``backends`` names none, else nothing."""
    if store is None or any(spec.partition(":")[0] == BACKEND for spec in backends):
        return []
    index = load_face_index(store)
    if not len(index):
        return []
    from genguard.detectors.faces import FaceMatchDetector

    return [FaceMatchDetector(index=index)]


def _with_store(spec: str, store: str | Path) -> str:
    """A ``faces`` spec that names no store (``faces``, ``faces:@0.55``) pointed at one."""
    name, _, argument = spec.partition(":")
    if name != BACKEND or (argument and not argument.startswith("@")):
        return spec
    return f"{BACKEND}:{store}{argument}"

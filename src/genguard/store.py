"""genguard's small database: one SQLAlchemy ``Base`` that every subsystem adds tables to.

A self-hosted safety layer needs a little state (protected persons, later the gateway's
keys and audit records). Keeping it in one SQLAlchemy metadata lets a deployment point
everything at one database: a local SQLite file by default (WAL mode, so the gateway can
read while the CLI writes), or any SQLAlchemy URL (PostgreSQL, MySQL) in production.

Subsystems declare their tables on :class:`Base` *before* calling :func:`open_store`;
``open_store`` creates whatever tables are missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, String, Text, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from genguard.errors import ConfigError

#: Default database location, relative to the working directory.
DEFAULT_DB_PATH = Path("genguard-data") / "genguard.db"


class Base(DeclarativeBase):
    """Declarative base shared by every genguard table."""


class PersonRow(Base):
    """A protected person: a canonical name and the aliases people write instead."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    aliases_json: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )

    @property
    def aliases(self) -> list[str]:
        return list(json.loads(self.aliases_json or "[]"))

    @aliases.setter
    def aliases(self, values: list[str]) -> None:
        self.aliases_json = json.dumps(list(values), ensure_ascii=False)


class PersonExclusionRow(Base):
    """A built-in protected person the operator chose not to protect."""

    __tablename__ = "person_exclusions"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )


def _to_url(url_or_path: str | Path | None) -> tuple[str, Path | None]:
    """SQLAlchemy URL for a path or URL; also the SQLite file path when there is one."""
    if url_or_path is None:
        url_or_path = DEFAULT_DB_PATH
    text = str(url_or_path)
    if "://" in text:
        if text.startswith("sqlite:///") and text != "sqlite:///:memory:":
            return text, Path(text[len("sqlite:///") :])
        return text, None
    path = Path(text).expanduser()
    return f"sqlite:///{path}", path


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL stays consistent after any crash and only risks the last commits on
    # power loss; FULL would sync on every audit row (1-2 ms per moderated image).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    """An open database: an engine plus a session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_store(url_or_path: str | Path | None = None) -> Store:
    """Open (creating if needed) the database at a path or SQLAlchemy URL.

    ``None`` means ``./genguard-data/genguard.db``. SQLite files get WAL journaling.
    """
    url, path = _to_url(url_or_path)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise ConfigError(f"cannot use database {url_or_path!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        raise ConfigError(f"cannot open database {url_or_path!r}: {exc.orig}") from exc
    return Store(engine)

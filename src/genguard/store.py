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
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from genguard.errors import ConfigError, StoreUnavailable

log = logging.getLogger("genguard.store")

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
            # ``?timeout=10`` and the like are driver options, not part of the file name.
            return text, Path(text[len("sqlite:///") :].partition("?")[0])
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


#: Words of a driver's message -> the short reason code a client and a dashboard see.
_REASONS = (
    ("readonly", "read_only"),
    ("read-only", "read_only"),
    ("unable to open", "cannot_open"),
    ("disk i/o", "io_error"),
    ("locked", "locked"),
    ("is full", "disk_full"),
    ("no space", "disk_full"),
    ("not a database", "corrupt"),
    ("malformed", "corrupt"),
    ("connect", "unreachable"),  # PostgreSQL: refused, timed out, closed by the server
)


def unavailable_reason(exc: SQLAlchemyError) -> str | None:
    """A reason code when ``exc`` means the database cannot be used now, else None.

    Only faults of the database itself count (unreachable, read-only, locked, disk full,
    corrupt file, pool exhausted): an IntegrityError or a ProgrammingError is a bug or a
    conflict in the query and must stay one rather than hide behind a 503.
    """
    if isinstance(exc, PoolTimeoutError):
        return "pool_timeout"
    # DatabaseError itself (not its subclasses) is SQLite's "file is not a database".
    if not isinstance(exc, OperationalError | InterfaceError) and type(exc) is not DatabaseError:
        return None
    message = str(getattr(exc, "orig", None) or exc).lower()
    for words, reason in _REASONS:
        if words in message:
            return reason
    return "unreachable" if isinstance(exc, InterfaceError) else "driver_error"


def _file_id(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _rollback_quietly(session: Session) -> None:
    """Roll back; a rollback on a dead connection must not mask the error that killed it."""
    try:
        session.rollback()
    except SQLAlchemyError as exc:
        log.debug("rollback failed: %s", exc)


class Store:
    """An open database: an engine plus a session factory.

    Database faults surface as :class:`StoreUnavailable`, never as a driver exception
    or, worse, as a success: see :meth:`session`.
    """

    def __init__(self, engine: Engine, path: Path | None = None) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        #: The SQLite file and its (device, inode) when opened; None for other databases.
        self.path = path.absolute() if path is not None else None
        self._file_id = self._opened_file_id()
        #: Reason of the last failed operation; None once one succeeds again.
        self.last_error: str | None = None

    def _opened_file_id(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            return _file_id(self.path)
        except OSError:  # a URI filename SQLite resolves itself: nothing to compare
            return None

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def check_file(self) -> None:
        """StoreUnavailable when the SQLite file was deleted or replaced since it was opened.

        SQLite keeps writing into a deleted file through the descriptors it holds and
        reports success: after ``rm genguard.db`` every decision would be acknowledged and
        lost. One ``stat`` tells, so every session pays it before and after its work.
        """
        if self.path is None or self._file_id is None:
            return
        try:
            current = _file_id(self.path)
        except FileNotFoundError:
            raise StoreUnavailable("file_missing", f"{self.path} was deleted") from None
        except OSError as exc:
            raise StoreUnavailable("cannot_open", f"cannot stat {self.path}: {exc}") from None
        if current != self._file_id:
            raise StoreUnavailable(
                "file_replaced",
                f"{self.path} is another file than the one opened; restart to use it",
            )

    def check_writable(self) -> None:
        """StoreUnavailable when the SQLite file is read-only for this process.

        Reads keep working then (so ``SELECT 1`` passes), but every new connection fails
        its first write: a load balancer should stop sending traffic before that.
        """
        if self.path is None or self._file_id is None:
            return
        if not os.access(self.path, os.W_OK):
            raise StoreUnavailable("read_only", f"{self.path} is not writable")

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """Driver faults -> StoreUnavailable, and a fresh connection pool after one.

        A connection opened while the file was read-only (or the server down) stays
        broken in the pool after the cause is fixed; disposing the pool means the next
        request connects anew and works without restarting the process.
        """
        try:
            yield
        except StoreUnavailable as exc:
            self.last_error = exc.reason
            raise
        except SQLAlchemyError as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            self.last_error = reason
            detail = str(getattr(exc, "orig", None) or exc)
            log.warning("database unavailable (%s): %s; connections recycled", reason, detail)
            self.engine.dispose()
            raise StoreUnavailable(reason, detail) from exc
        self.last_error = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error.

        Database faults raise :class:`StoreUnavailable`. For a SQLite file its identity
        is checked before the work (so a deleted file is not recreated empty) and after
        the commit (so a commit into a file deleted meanwhile is not reported as done).
        """
        with self._guarded():
            self.check_file()
            session = self._sessions()
            try:
                yield session
                session.commit()
            except Exception:
                _rollback_quietly(session)
                raise
            finally:
                session.close()
            self.check_file()

    def ping(self) -> None:
        """Readiness: StoreUnavailable unless the file is intact, writable and answers."""
        with self._guarded():
            self.check_file()
            self.check_writable()
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

    def problem(self) -> str | None:
        """Why the store is unusable, without a query: the file check or the last failure."""
        try:
            self.check_file()
        except StoreUnavailable as exc:
            return exc.reason
        return self.last_error

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
        # pre-ping: a connection the server dropped (restart, failover) is replaced on
        # checkout instead of failing the request that drew it.
        engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise ConfigError(f"cannot use database {url_or_path!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
        _add_missing_columns(engine)
    except (OperationalError, ConfigError) as exc:
        engine.dispose()
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot open database {url_or_path!r}: {exc.orig}") from exc
    return Store(engine, path)


def _add_missing_columns(engine: Engine) -> None:
    """Bring tables made by an older genguard up to date, in place.

    ``create_all`` makes missing tables but never touches existing ones, so a column added
    in a release (always nullable, for this reason) would break every query on a database
    from before it. Each such column is added with ``ALTER TABLE ... ADD COLUMN`` (SQLite
    and PostgreSQL both do this without rewriting the table), with its indexes; a missing
    column that is not nullable cannot be filled in, and says so.
    """
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    quote = engine.dialect.identifier_preparer.quote
    for table in Base.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        if not missing:
            continue
        with engine.begin() as connection:
            for column in missing:
                if not column.nullable:
                    raise ConfigError(
                        f"table {table.name} lacks column {column.name}, which cannot be added "
                        "in place; back up the database and recreate it"
                    )
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(
                    text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}")
                )
                log.info("database upgraded: added %s.%s", table.name, column.name)
        names = {column.name for column in missing}
        for index in table.indexes:
            if names & {column.name for column in index.columns}:
                index.create(engine, checkfirst=True)


class FaceEmbeddingRow(Base):
    """One face embedding of a protected person (``genguard persons add NAME --photo``).

    Only the embedding is kept (128 float32, 512 bytes), never the photo or any pixels;
    it is still biometric data about the person (treat the database accordingly), and
    deleting the person deletes it (ON DELETE CASCADE).
    ``photo_sha256`` lets the same photo be added twice without a second row.
    """

    __tablename__ = "person_faces"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    photo_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )

"""Opening a database: URL handling, engine set-up, migrations to head, crash recovery on open.

It owns the `Database` handle everything else in storage takes, and it is the one place that
reads `$COACHLAB_DB`. A URL is `sqlite:///path`, `postgresql://user@host:port/db` (driven by
psycopg 3) or a bare file path (SQLite). Without one, the `COACHLAB_DB` environment variable
decides, else a SQLite file under the user's data dir (`configured_url` and `resolve_url` answer
which, without opening). Connection problems become one-sentence `StorageError`s, never tracebacks.

`DatabaseConfig(readonly=True)` is how commands that only read open (listing, showing, distilling):
no folder or file is created, no migration, no crash recovery, no WAL set-up, so a database on a
read-only mount (or one the user may not write) can be read; a SQLite file that does not exist is a
`StorageError`, never created; writing through such a handle raises `ReadOnlyDatabase` at once.
A writable open of a file that cannot be written raises `ReadOnlyDatabase` too, in one sentence.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import platformdirs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from storage.errors import ReadOnlyDatabase, StorageError, first_line, is_disk_full, is_read_only

ENV_VAR = "COACHLAB_DB"
# Any constant works; it only has to be the same in every coachlab process.
_MIGRATION_LOCK_KEY = 0x636F6163  # "coac"
_READONLY = "coachlab_readonly"


@dataclass
class DatabaseConfig:
    """How to open. `stale_after_s`: a running episode whose writer has not committed for this
    long is considered crashed, even if a process with its pid exists (pids get reused)."""

    migrate: bool = True
    recover: bool = True
    stale_after_s: float = 30.0
    sqlite_busy_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    readonly: bool = False  # only read: create, migrate, recover and set up nothing (see the module docstring)


READ_ONLY = DatabaseConfig(migrate=False, recover=False, readonly=True)


def default_sqlite_path() -> Path:
    return Path(platformdirs.user_data_dir("coachlab")) / "coachlab.db"


def configured_url(url: str | None = None) -> str | None:
    """The database a user asked for: `url`, else `$COACHLAB_DB`, else None (no default applied).

    For commands that record only when asked to; open_database(url) opens the same one.
    """
    return (url or "").strip() or (os.environ.get(ENV_VAR) or "").strip() or None


def resolve_url(url: str | None = None) -> str:
    """The full URL open_database(url) would open (password included, as `Database.url` gives it):
    `url`, else `$COACHLAB_DB`, else the default SQLite file. Raises StorageError if it is not one
    storage can open."""
    return _sa_url(url).render_as_string(hide_password=False)


def _sa_url(url: str | None) -> URL:
    """The SQLAlchemy URL for `url`, `$COACHLAB_DB`, or the default SQLite file, with our drivers."""
    raw = configured_url(url) or f"sqlite:///{default_sqlite_path()}"
    if "://" not in raw:  # a bare path means a SQLite file
        raw = f"sqlite:///{Path(raw).expanduser().absolute()}"
    hint = "use sqlite:///path/to/file.db or postgresql://user@host:port/dbname"
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise StorageError(f"'{raw}' is not a database URL: {hint}.") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or (parsed.database or "").startswith("file:"):
            raise StorageError(f"'{raw}' is an in-memory SQLite database, which the recorder's writer thread "
                               f"cannot share: give a file path instead.")
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        if parsed.database in (None, ""):
            raise StorageError(f"'{_display(parsed)}' names no database: add it at the end, "
                               f"e.g. postgresql://user@host:5432/coachlab.")
        return parsed.set(drivername="postgresql+psycopg")
    raise StorageError(f"'{_display(parsed)}' uses the unsupported database '{backend}': {hint}.")


def _display(url: URL) -> str:
    """The URL as a user would write it: password masked, no driver suffix."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


class Database:
    """An open database. Use `session()` for ORM work; `engine` for bulk Core statements."""

    def __init__(self, url: URL, engine: Engine, config: DatabaseConfig) -> None:
        self._url = url
        self.engine = engine
        self.config = config

    @property
    def url(self) -> str:
        """The full URL (with any password), fit to hand to another process's open_database."""
        return self._url.render_as_string(hide_password=False)

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for messages."""
        return _display(self._url)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name  # "sqlite" | "postgresql"

    @contextlib.contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        On SQLite a writing session starts with BEGIN IMMEDIATE, so concurrent writers queue on
        the busy timeout instead of failing when a read lock cannot be upgraded. `readonly`
        sessions take no write lock. A writing session on a read-only handle raises ReadOnlyDatabase.
        """
        if not readonly:
            self._check_writable()
        bind = self.engine.execution_options(**{_READONLY: True}) if readonly else self.engine
        session = Session(bind=bind, expire_on_commit=False)
        try:
            yield session
            if readonly:
                session.rollback()
            else:
                session.commit()
        except DBAPIError as err:  # includes IntegrityError, e.g. a policy id that does not exist
            session.rollback()
            raise self.error(err) from err
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[sa.Connection]:
        """A Core connection in one writing transaction (for bulk inserts)."""
        self._check_writable()
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as err:
            raise self.error(err) from err

    @property
    def readonly(self) -> bool:
        """True when opened only to read (DatabaseConfig.readonly)."""
        return self.config.readonly

    def _check_writable(self) -> None:
        if self.config.readonly:
            raise ReadOnlyDatabase(f"The database at {self.display_url} was opened read-only, so nothing can be "
                                   f"written to it: use a writable copy or location (--db or {ENV_VAR}).")

    def error(self, err: BaseException) -> StorageError:
        """One sentence for a database failure during work (as opposed to at connect time): a read-only
        file or a full disk is named as such, with what to do."""
        if is_read_only(err):
            return ReadOnlyDatabase(f"The database at {self.display_url} is read-only ({first_line(err)}): use a "
                                    f"writable copy or location (--db or {ENV_VAR}), or a command that only reads.")
        if is_disk_full(err):
            return StorageError(f"The disk holding the database at {self.display_url} is full ({first_line(err)}): "
                                f"free space on it and try again; everything already committed is kept.")
        return StorageError(f"The database at {self.display_url} failed: {first_line(err)}.")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"


def _sqlite_engine(url: URL, config: DatabaseConfig, immutable: bool = False) -> Engine:
    """The engine for the SQLite file `url` names. Read-only: opened as `file:...?mode=ro` (or, when
    its folder cannot hold WAL's shared-memory file, `immutable=1`: a read-only mount nobody writes)."""
    path = Path(url.database or "")
    if config.readonly:
        if not path.is_file():
            raise StorageError(f"There is no database at {path}: record episodes there first (coachlab coach --db, "
                               f"or the app), or name the right one with --db or {ENV_VAR}.")
        flags = "immutable=1" if immutable else "mode=ro"
        # pysqlite takes `uri=true` to read the path as a URI with its flags; the path is quoted for it.
        url = url.set(database=f"file:{quote(str(path.absolute()))}?{flags}", query={"uri": "true"})
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"Cannot create the folder for the database {path}: {err.strerror}. "
                               f"Choose a writable location with --db or {ENV_VAR}.") from None
    # check_same_thread=False: the recorder's writer thread uses pooled connections too.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False,
                                                 "timeout": config.sqlite_busy_timeout_s})
    busy_ms = int(config.sqlite_busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not config.readonly:  # switching to WAL writes the file; a reader takes the mode it finds
            cur.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL loses nothing when a process is killed (only on power loss).
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        readonly = config.readonly or conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL, config: DatabaseConfig) -> Engine:
    args: dict[str, Any] = {"connect_timeout": max(1, int(config.connect_timeout_s)), "application_name": "coachlab"}
    if config.readonly:  # the server refuses any write in these sessions
        args["options"] = "-c default_transaction_read_only=on"
    return sa.create_engine(url, pool_pre_ping=True, connect_args=args)


def _migrate(db: Database) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with db.connection() as conn:
        # Serialize first opens: on SQLite BEGIN IMMEDIATE already holds the write lock; on
        # PostgreSQL a transaction-scoped advisory lock does the same until commit.
        if db.backend == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_database(url: str | None = None, config: DatabaseConfig | None = None) -> Database:
    """Open (creating and migrating as needed) the database at `url`; see resolve_url for defaults.

    Running episodes whose writer process is gone are marked `interrupted` (see recovery.py). With
    `config.readonly` (e.g. `READ_ONLY`) nothing is created, migrated or recovered: see the module
    docstring. StorageError in one sentence if it cannot be opened; ReadOnlyDatabase if a writable
    open finds it read-only.
    """
    config = config or DatabaseConfig()
    if config.readonly:
        config = replace(config, migrate=False, recover=False)
    sa_url = _sa_url(url)
    is_sqlite = sa_url.get_backend_name() == "sqlite"
    db = _connect(sa_url, config, is_sqlite, immutable=False)
    if config.readonly:
        if is_sqlite and not _can_read(db):  # a WAL file in a folder that cannot hold its -shm
            db.close()
            db = _connect(sa_url, config, is_sqlite, immutable=True)
        _check_schema(db)
        return db
    engine = db.engine
    try:
        if config.migrate:
            _migrate(db)
        if config.recover:
            from storage.recovery import recover_interrupted

            recover_interrupted(db, stale_after_s=config.stale_after_s)
    except StorageError:
        engine.dispose()
        raise
    except DBAPIError as err:
        engine.dispose()
        if is_read_only(err):
            raise db.error(err) from None
        raise StorageError(f"Cannot set up the schema in the database at {db.display_url}: "
                           f"{first_line(err)}. Check that the user may create tables there.") from None
    return db


def _connect(sa_url: URL, config: DatabaseConfig, is_sqlite: bool, immutable: bool) -> Database:
    engine = _sqlite_engine(sa_url, config, immutable) if is_sqlite else _postgres_engine(sa_url, config)
    db = Database(sa_url, engine, config)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as err:
        engine.dispose()
        if is_read_only(err) or (is_sqlite and not config.readonly and _unwritable(Path(sa_url.database or ""))):
            raise ReadOnlyDatabase(f"The database at {db.display_url} is read-only (its file or folder cannot be "
                                   f"written): use a writable copy or location (--db or {ENV_VAR}), or a command "
                                   f"that only reads (coachlab episodes, coachlab distill).") from None
        what = "open the SQLite file" if is_sqlite else "reach the database"
        fix = "Check the path and its permissions." if is_sqlite else "Check the URL or start the server."
        raise StorageError(f"Cannot {what} at {db.display_url}: {first_line(err)}. {fix}") from None
    return db


def _unwritable(path: Path) -> bool:
    """An existing SQLite file that this process may not write, or whose folder it may not write
    (SQLite needs the folder for its journal); a read-only mount refuses even root."""
    return path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _can_read(db: Database) -> bool:
    """Whether a read-only SQLite handle can read the schema (False: WAL cannot set up its -shm file)."""
    try:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
        return True
    except DBAPIError:
        return False


def _check_schema(db: Database) -> None:
    """A read-only open cannot migrate: say so when the file is not a coachlab database at this schema."""
    from alembic.script import ScriptDirectory
    from alembic.config import Config

    try:
        with db.engine.connect() as conn:
            have = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except DBAPIError as err:
        db.close()
        raise StorageError(f"The database at {db.display_url} cannot be read as a coachlab database "
                           f"({first_line(err)}): check --db or {ENV_VAR}.") from None
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if have != head:
        db.close()
        raise StorageError(f"The database at {db.display_url} has schema {have}, not this coachlab's {head}, and "
                           f"reading does not migrate it: open it once with a command that records (coachlab coach "
                           f"--db, or the app) where it is writable.")

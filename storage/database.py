"""Opening a database: URL handling, engine set-up, migrations to head, crash recovery on open.

It owns the `Database` handle everything else in storage takes, and it is the one place that
reads `$COACHLAB_DB`. A URL is `sqlite:///path`, `postgresql://user@host:port/db` (driven by
psycopg 3) or a bare file path (SQLite). Without one, the `COACHLAB_DB` environment variable
decides, else a SQLite file under the user's data dir (`configured_url` and `resolve_url` answer
which, without opening). Connection problems become one-sentence `StorageError`s, never tracebacks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from storage.errors import StorageError, first_line

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
        sessions take no write lock.
        """
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
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as err:
            raise self.error(err) from err

    def error(self, err: BaseException) -> StorageError:
        """One sentence for a database failure during work (as opposed to at connect time)."""
        return StorageError(f"The database at {self.display_url} failed: {first_line(err)}.")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"


def _sqlite_engine(url: URL, config: DatabaseConfig) -> Engine:
    path = Path(url.database or "")
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
        cur.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL loses nothing when a process is killed (only on power loss).
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL, config: DatabaseConfig) -> Engine:
    return sa.create_engine(url, pool_pre_ping=True,
                            connect_args={"connect_timeout": max(1, int(config.connect_timeout_s)),
                                          "application_name": "coachlab"})


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

    Running episodes whose writer process is gone are marked `interrupted` (see recovery.py).
    """
    config = config or DatabaseConfig()
    sa_url = _sa_url(url)
    is_sqlite = sa_url.get_backend_name() == "sqlite"
    engine = _sqlite_engine(sa_url, config) if is_sqlite else _postgres_engine(sa_url, config)
    db = Database(sa_url, engine, config)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as err:
        engine.dispose()
        what = "open the SQLite file" if is_sqlite else "reach the database"
        fix = "Check the path and its permissions." if is_sqlite else "Check the URL or start the server."
        raise StorageError(f"Cannot {what} at {db.display_url}: {first_line(err)}. {fix}") from None
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
        raise StorageError(f"Cannot set up the schema in the database at {db.display_url}: "
                           f"{first_line(err)}. Check that the user may create tables there.") from None
    return db

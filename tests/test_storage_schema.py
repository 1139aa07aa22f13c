"""Storage schema and opening: migrations from empty on real SQLite files and a real PostgreSQL
server, models == migrations, WAL mode, the default location, and one-sentence URL errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage import StorageError, open_database, resolve_url
from storage.local_postgres import shared_server
from storage.models import Base

TABLES = {"tasks", "policies", "episodes", "segments", "subgoal_images", "steps", "frames", "events"}


def test_migrations_from_empty_match_the_models(db_url):
    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            assert TABLES <= set(sa.inspect(conn).get_table_names())
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.close()


def test_downgrade_to_empty_and_back(db_url):
    from alembic import command
    from alembic.config import Config

    import storage.database as database

    db = open_database(db_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(database.Path(database.__file__).with_name("migrations")))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        with db.engine.connect() as conn:
            assert not TABLES & set(sa.inspect(conn).get_table_names())
    finally:
        db.close()
    db = open_database(db_url)  # reopening migrates to head again
    with db.engine.connect() as conn:
        assert TABLES <= set(sa.inspect(conn).get_table_names())
    db.close()


def test_reopening_is_idempotent(db_url):
    for _ in range(2):
        open_database(db_url).close()


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    db = open_database(str(tmp_path / "plain path.db"))  # a bare path means SQLite
    try:
        assert db.backend == "sqlite"
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.close()
    assert (tmp_path / "plain path.db").exists()


def test_default_url_is_a_sqlite_file_in_the_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("COACHLAB_DB", raising=False)
    url = resolve_url(None)
    assert url.get_backend_name() == "sqlite"
    assert url.database.endswith("coachlab/coachlab.db")
    monkeypatch.setenv("COACHLAB_DB", str(tmp_path / "from_env.db"))
    assert resolve_url(None).database == str(tmp_path / "from_env.db")
    assert resolve_url("postgresql://u@h/db").drivername == "postgresql+psycopg"


def _one_sentence(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text and len(text) < 400
    return text


@pytest.mark.parametrize("url, words", [
    ("mysql://root@localhost/x", "unsupported database 'mysql'"),
    ("sqlite://", "in-memory"),
    ("not a url://", "not a database URL"),
    ("postgresql://u@127.0.0.1:5432", "names no database"),
])
def test_wrong_urls_give_one_sentence(url, words):
    with pytest.raises(StorageError) as err:
        open_database(url)
    assert words in _one_sentence(err)


def test_unreachable_postgres_gives_one_sentence():
    with pytest.raises(StorageError) as err:
        open_database("postgresql://coach:secret@127.0.0.1:1/coachlab")
    text = _one_sentence(err)
    assert text.startswith("Cannot reach the database at postgresql://coach:***@127.0.0.1:1/coachlab: ")
    assert "secret" not in text and text.endswith("Check the URL or start the server.")


def test_missing_postgres_database_gives_one_sentence():
    url = shared_server().url("no_such_db")
    with pytest.raises(StorageError) as err:
        open_database(url)
    assert 'database "no_such_db" does not exist' in _one_sentence(err)


def test_a_file_that_is_not_a_database_gives_one_sentence(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StorageError) as err:
        open_database(str(path))
    assert "not a database" in _one_sentence(err)
    assert path.read_text().startswith("these are my notes")


def test_storage_stays_out_of_the_upper_layers():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, storage.recorder, storage.queries, storage.local_postgres, storage.database\n"
            "bad = {'torch', 'gradio', 'sim', 'coaching', 'distill', 'app'} & {m.split('.')[0] for m in sys.modules}\n"
            "assert not bad, bad\n"
            "import storage.errors, storage.vocab\n")
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, env={"PYTHONPATH": str(repo)})
    light = subprocess.run([sys.executable, "-c", "import sys, storage.errors, storage.vocab; "
                            "print('sqlalchemy' in sys.modules)"], cwd=repo, capture_output=True, text=True,
                           env={"PYTHONPATH": str(repo)})
    assert light.stdout.strip() == "False"  # the CLI can catch StorageError without loading SQLAlchemy

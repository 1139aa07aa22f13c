"""Storage schema and opening: migrations from empty on real SQLite files and a real PostgreSQL
server, models == migrations, upgrading a database with data in it, WAL mode, the default
location, and one-sentence URL errors."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

import storage.database
from storage import (DatabaseConfig, StorageError, configured_url, list_episodes, load_episode, open_database,
                     resolve_url)
from storage.local_postgres import shared_server
from storage.models import Base, JSONType, UTCDateTime

TABLES = {"tasks", "policies", "episodes", "segments", "subgoal_images", "steps", "frames", "events"}


def test_migrations_from_empty_match_the_models(db_url):
    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            assert TABLES <= set(sa.inspect(conn).get_table_names())
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.close()


def _alembic(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(storage.database.__file__).with_name("migrations")))
    cfg.attributes["connection"] = conn
    return cfg


def test_downgrade_to_empty_and_back(db_url):
    db = open_database(db_url)
    try:
        with db.engine.begin() as conn:
            command.downgrade(_alembic(conn), "base")
        with db.engine.connect() as conn:
            assert not TABLES & set(sa.inspect(conn).get_table_names())
    finally:
        db.close()
    db = open_database(db_url)  # reopening migrates to head again
    with db.engine.connect() as conn:
        assert TABLES <= set(sa.inspect(conn).get_table_names())
    db.close()


def test_a_database_at_0001_keeps_its_episodes_and_their_task_family(db_url):
    """0002 renames episodes.family to task_family in place: the value moves with it, and no child row
    is lost (a SQLite table copy-and-swap would cascade-delete them when it drops the old table); 0003
    adds discarded_at in place too (null: kept)."""
    old = open_database(db_url, DatabaseConfig(migrate=False, recover=False))
    now = datetime.now(timezone.utc)
    episodes = sa.table("episodes", *(sa.column(c) for c in ("id", "task_id", "family", "mode", "status",
                                                             "num_steps")),
                        sa.column("robot", JSONType), sa.column("extra", JSONType),
                        sa.column("started_at", UTCDateTime()), sa.column("ended_at", UTCDateTime()))
    try:
        with old.engine.begin() as conn:
            command.upgrade(_alembic(conn), "0001")
            conn.execute(sa.table("tasks", sa.column("id"), sa.column("text"), sa.column("text_sha256"),
                                  sa.column("created_at", UTCDateTime())).insert(),
                         {"id": 1, "text": "bus the table", "text_sha256": "0" * 64, "created_at": now})
            conn.execute(episodes.insert(), [
                {"id": 1, "task_id": 1, "family": "bussing", "mode": "coached", "status": "success", "num_steps": 2,
                 "robot": {"name": "arm"}, "extra": {}, "started_at": now, "ended_at": now},
                {"id": 2, "task_id": 1, "family": None, "mode": "coached", "status": "failure", "num_steps": 0,
                 "robot": {}, "extra": {}, "started_at": now, "ended_at": now}])
            conn.execute(sa.table("segments", *(sa.column(c) for c in ("id", "episode_id", "ordinal", "text", "source",
                                                                     "issued_at", "first_step", "last_step",
                                                                     "mistake", "subgoal_sent")),
                                  sa.column("issued_wall", UTCDateTime())).insert(),
                         {"id": 1, "episode_id": 1, "ordinal": 0, "text": "pick up the cup", "source": "coach",
                          "issued_at": 0.0, "first_step": 0, "last_step": 1, "mistake": False, "subgoal_sent": False,
                          "issued_wall": now})
            conn.execute(sa.table("steps", *(sa.column(c) for c in ("episode_id", "step_index", "t", "state",
                                                                  "segment_id"))).insert(),
                         [{"episode_id": 1, "step_index": i, "t": i / 10, "state": bytes(16), "segment_id": 1}
                          for i in range(2)])
    finally:
        old.close()

    db = open_database(db_url)  # the current code migrates it to head
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"
            columns = {c["name"] for c in sa.inspect(conn).get_columns("episodes")}
        assert "task_family" in columns and "family" not in columns
        ep = load_episode(db, 1)
        assert ep.summary.task_family == "bussing" and ep.summary.to_dict()["task_family"] == "bussing"
        assert load_episode(db, 2).summary.task_family is None
        assert list(ep.steps().segment_id) == [1, 1] and [g.text for g in ep.segments] == ["pick up the cup"]
        assert [e.id for e in list_episodes(db, task="bussing")] == [1]
        # 0003: an episode from before discarding existed is kept, and selected
        assert {e.id for e in list_episodes(db)} == {1, 2} and not ep.summary.discarded
    finally:
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
    assert configured_url(None) is None
    url = resolve_url(None)
    assert url.startswith("sqlite+pysqlite:///") and url.endswith("coachlab/coachlab.db")
    monkeypatch.setenv("COACHLAB_DB", str(tmp_path / "from_env.db"))
    assert configured_url(None) == str(tmp_path / "from_env.db")
    assert resolve_url(None) == f"sqlite+pysqlite:///{tmp_path}/from_env.db"
    assert configured_url("given.db") == "given.db"  # an explicit URL wins over the variable
    assert resolve_url("postgresql://u:pw@h/db") == "postgresql+psycopg://u:pw@h/db"  # what Database.url gives
    db = open_database(None)
    try:
        assert db.url == resolve_url(None)
    finally:
        db.close()


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

    code = ("import sys, storage.recorder, storage.writer, storage.episodes, storage.curation, storage.checkpoints,"
            " storage.local_postgres, storage.database\n"
            "bad = {'torch', 'gradio', 'sim', 'coaching', 'distill', 'app'} & {m.split('.')[0] for m in sys.modules}\n"
            "assert not bad, bad\n"
            "import storage.errors, storage.vocab\n")
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, env={"PYTHONPATH": str(repo)})
    light = subprocess.run([sys.executable, "-c", "import sys, storage.errors, storage.vocab; "
                            "print('sqlalchemy' in sys.modules)"], cwd=repo, capture_output=True, text=True,
                           env={"PYTHONPATH": str(repo)})
    assert light.stdout.strip() == "False"  # the CLI can catch StorageError without loading SQLAlchemy

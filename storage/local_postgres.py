"""A throwaway PostgreSQL server in a temp dir, for the tests and the storage benchmark.

It runs the distribution's server binaries (`/usr/lib/postgresql/<ver>/bin`, or `$COACHLAB_PG_BIN`)
with trust auth on a free 127.0.0.1 port, its socket in the temp dir. PostgreSQL refuses to run
as root, so as root the server runs as the `postgres` system user and the temp dir is handed to
it. `stop()` kills the server and deletes everything.
"""

from __future__ import annotations

import atexit
import functools
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError


@dataclass
class LocalPostgresConfig:
    """`durable=False` turns off fsync and synchronous commit: fine for tests (a killed client
    process loses nothing either way), wrong for measuring real write cost."""

    durable: bool = True
    bin_dir: str | None = None
    start_timeout_s: int = 60


def find_bin_dir(explicit: str | None = None) -> Path:
    candidates = [explicit, os.environ.get("COACHLAB_PG_BIN")]
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p)], reverse=True)
    candidates += versions
    which = shutil.which("pg_ctl")
    candidates.append(str(Path(which).resolve().parent) if which else None)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise StorageError("PostgreSQL server binaries (initdb, pg_ctl) were not found: install them "
                       "(apt-get install postgresql) or point COACHLAB_PG_BIN at their folder.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """`with LocalPostgres() as pg: url = pg.create_database()`."""

    def __init__(self, config: LocalPostgresConfig | None = None) -> None:
        self.config = config or LocalPostgresConfig()
        self.bin_dir = find_bin_dir(self.config.bin_dir)
        self.root: Path | None = None
        self.port: int | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)

    def start(self) -> LocalPostgres:
        self.root = Path(tempfile.mkdtemp(prefix="coachlab-pg-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise StorageError("PostgreSQL cannot run as root and there is no 'postgres' user to run it as: "
                                   "install the postgresql package, which creates it.") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        res = self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                        "--locale=C", "--no-sync")
        if res.returncode != 0:
            self.stop()
            raise StorageError(f"initdb failed: {(res.stderr or res.stdout).strip().splitlines()[-1]}.")
        opts = f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c max_connections=60"
        if not self.config.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for _ in range(3):  # another process may grab the free port between probe and bind
            self.port = _free_port()
            res = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"), "-w",
                            "-t", str(self.config.start_timeout_s), "-o", f"-p {self.port} {opts}", "start")
            if res.returncode == 0:
                return self
        log = (self.root / "server.log").read_text(errors="replace").strip().splitlines()[-3:]
        self.stop()
        raise StorageError(f"The local PostgreSQL server did not start: {' '.join(log) or res.stderr.strip()}.")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh, empty database and return its URL."""
        import psycopg

        name = name or f"coachlab_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@functools.cache
def shared_server() -> LocalPostgres:
    """One non-durable server per process, stopped at exit: what the test modules share."""
    server = LocalPostgres(LocalPostgresConfig(durable=False)).start()
    atexit.register(server.stop)
    return server

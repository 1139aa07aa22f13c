"""Run a policy server in a child process on loopback, so every local run goes through the real wire,
and keep it alive: the parent supervises the child it started.

`LocalPolicyServer("package.module:factory", options)` starts `python -m policy_client.local_server`,
which imports the factory, builds the policy with the JSON options, binds a free loopback port and
prints it; the parent reads that line and connects. The child exits when its parent dies, so no
server outlives the app that started it. With `supervise=True` (the default) a watcher thread
restarts a child that dies (crash, OOM killer, SIGKILL) on the same address, so clients reconnect
by themselves, and keeps a one-sentence `note` of what happened for the page.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from policy_client.errors import PolicyError
from policy_client.server import PolicyServer

READY = "POLICY_SERVER_READY "
FAILED = "POLICY_SERVER_FAILED "  # then the child's error as one line, so the parent can say it in one sentence
MAX_RESTART_TRIES = 3  # in a row; a child that cannot come up again is reported, not retried forever


class LocalServerFailed(PolicyError, RuntimeError):
    """The child could not start; the message carries its own error (e.g. a graphics backend's)."""


class _Child:
    """One started child process, its ready line and the thread passing on its output."""

    def __init__(self, factory: str, options: dict[str, Any], address: str):
        cmd = [sys.executable, "-m", "policy_client.local_server", "--factory", factory, "--address", address,
               "--options", json.dumps(options), "--parent-pid", str(os.getpid())]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.ready = threading.Event()
        self.address: list[str] = []
        self.failure: str | None = None  # the child's one-line error, if it failed to start
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()

    def _read_output(self) -> None:
        """Find the ready line, and pass on whatever else the policy prints for as long as it runs: a pipe
        nobody reads fills up and would block the server at its next print."""
        for line in self.process.stdout:
            if not self.address and line.startswith(READY):
                self.address.append(line[len(READY):].strip())
                self.ready.set()
            elif not self.address and line.startswith(FAILED):
                self.failure = line[len(FAILED):].strip()
            else:
                sys.stdout.write(line)
        self.ready.set()  # end of output: the child has exited

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)  # it ends at the end of output, once the child is gone
        if self.process.stdout is not None and not self.reader.is_alive():
            self.process.stdout.close()


class LocalPolicyServer:
    """A policy server in a child process. `address` (tcp://...) is where it serves; `restarts` counts
    how often the supervisor brought it back; `note` says the last thing the supervisor did (or None)."""

    def __init__(self, factory: str, options: dict[str, Any] | None = None, address: str = "tcp://127.0.0.1:0",
                 start_timeout_s: float = 120.0, supervise: bool = True):
        self.factory, self.options, self.start_timeout_s = factory, options or {}, start_timeout_s
        self.restarts = 0
        self.note: str | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()  # guards the swap of `_child` against close()
        self._on_restart: list[Callable[[str], None]] = []
        self._child = self._start(address)
        self.address: str = self._child.address[0]
        self._watcher: threading.Thread | None = None
        if supervise:
            self._watcher = threading.Thread(target=self._supervise, name="vla-supervisor", daemon=True)
            self._watcher.start()

    @property
    def process(self) -> subprocess.Popen:
        """The current child process (a new one after each restart)."""
        return self._child.process

    @property
    def zmq_address(self) -> str:
        return self.address.replace("tcp://", "zmq://")

    @property
    def up(self) -> bool:
        """Whether the child is running (False between a death and its restart)."""
        return self._child.process.poll() is None and not self._closing.is_set()

    def on_restart(self, callback: Callable[[str], None]) -> None:
        """Call `callback(address)` after each restart (the address changes only if the old port was taken)."""
        self._on_restart.append(callback)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self._child.stop()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=10)

    def __enter__(self) -> "LocalPolicyServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _start(self, address: str) -> _Child:
        child = _Child(self.factory, self.options, address)
        child.ready.wait(self.start_timeout_s)
        if child.address:
            return child
        exited = child.ready.is_set()
        if exited:
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        child.stop()
        if exited and child.process.returncode is not None:
            said = f" ({child.failure})" if child.failure else " (its error is printed above)"
            raise LocalServerFailed(f"The local policy server ({self.factory}) exited at start with code "
                                    f"{child.process.returncode}{said}; run `coachlab vla-server` by hand to see why.")
        raise LocalServerFailed(f"The local policy server ({self.factory}) did not start within "
                                f"{self.start_timeout_s:.0f} s; run `coachlab vla-server` by hand to see why.")

    def _supervise(self) -> None:
        """Wait for the child to die; unless we are closing, start it again (same address first)."""
        while not self._closing.is_set():
            code = self._child.process.wait()
            if self._closing.is_set():
                return
            cause = _exit_cause(code)
            when = time.strftime("%H:%M:%S")
            self.note = f"The VLA process {cause} at {when}; restarting it."
            for attempt in range(MAX_RESTART_TRIES):
                # the same port first, so connected clients simply reconnect; then any free port
                address = self.address if attempt == 0 else "tcp://127.0.0.1:0"
                try:
                    child = self._start(address)
                except LocalServerFailed as e:
                    error = e
                    continue
                with self._lock:
                    if self._closing.is_set():
                        child.stop()
                        return
                    self._child.stop()  # joins the old reader, closes its pipe
                    self._child = child
                self.restarts += 1
                moved = child.address[0] != self.address
                self.address = child.address[0]
                self.note = (f"The VLA process {cause} at {when}; the app restarted it "
                             f"(restart {self.restarts}{', on a new port' if moved else ''}).")
                for callback in list(self._on_restart):
                    callback(self.address)
                break
            else:
                self.note = (f"The VLA process {cause} at {when} and could not be restarted ({error}); "
                             "restart the app.")
                return


def _exit_cause(code: int) -> str:
    """'was killed by SIGKILL' / 'exited with code 3': how a child ended, for one sentence."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def load_factory(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _exit_with_parent(parent_pid: int, server: PolicyServer) -> None:
    """An orphaned child (its parent was killed) is re-parented; stop serving when that happens."""
    while os.getppid() == parent_pid:
        threading.Event().wait(1.0)
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a policy factory on a free loopback port.")
    parser.add_argument("--factory", required=True, help="module:callable returning the policy object")
    parser.add_argument("--options", default="{}", help="JSON keyword arguments for the factory")
    parser.add_argument("--address", default="tcp://127.0.0.1:0")
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args()
    try:
        policy = load_factory(args.factory)(**json.loads(args.options))
        server = PolicyServer(policy, args.address)
    except Exception as e:  # said to the parent in one line; the traceback only when asked for
        if os.environ.get("COACHLAB_DEBUG"):
            raise
        print(FAILED + f"{type(e).__name__}: {e}".replace("\n", " "), flush=True)
        sys.exit(1)
    if args.parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid, server), daemon=True).start()
    print(READY + server.address, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

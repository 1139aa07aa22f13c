"""Run a policy server in a child process on loopback, so every local run goes through the real wire.

`LocalPolicyServer("package.module:factory", options)` starts `python -m policy_client.local_server`,
which imports the factory, builds the policy with the JSON options, binds a free loopback port and
prints it; the parent reads that line and connects. The child exits when its parent dies, so no
server outlives the app that started it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import threading
from typing import Any

from policy_client.server import PolicyServer

READY = "POLICY_SERVER_READY "


class LocalPolicyServer:
    def __init__(self, factory: str, options: dict[str, Any] | None = None, address: str = "tcp://127.0.0.1:0",
                 start_timeout_s: float = 120.0):
        self.factory = factory
        cmd = [sys.executable, "-m", "policy_client.local_server", "--factory", factory, "--address", address,
               "--options", json.dumps(options or {}), "--parent-pid", str(os.getpid())]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self._ready = threading.Event()
        self._address: list[str] = []
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        self.address = self._wait_ready(start_timeout_s)

    def _read_output(self) -> None:
        """Find the ready line, and pass on whatever else the policy prints for as long as it runs: a pipe
        nobody reads fills up and would block the server at its next print."""
        for line in self.process.stdout:
            if not self._address and line.startswith(READY):
                self._address.append(line[len(READY):].strip())
                self._ready.set()
            else:
                sys.stdout.write(line)
        self._ready.set()  # end of output: the child has exited

    def _wait_ready(self, timeout_s: float) -> str:
        self._ready.wait(timeout_s)
        if self._address:
            return self._address[0]
        exited = self._ready.is_set()
        if exited:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.close()
        if exited and self.process.returncode is not None:
            raise RuntimeError(f"The local policy server ({self.factory}) exited at start with code "
                               f"{self.process.returncode} (its error is printed above); "
                               "run `coachlab vla-server` by hand to see why.")
        raise RuntimeError(f"The local policy server ({self.factory}) did not start within {timeout_s:.0f} s; "
                           "run `coachlab vla-server` by hand to see why.")

    @property
    def zmq_address(self) -> str:
        return self.address.replace("tcp://", "zmq://")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)  # it ends at the end of output, once the child is gone
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()

    def __enter__(self) -> "LocalPolicyServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    policy = load_factory(args.factory)(**json.loads(args.options))
    server = PolicyServer(policy, args.address)
    if args.parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid, server), daemon=True).start()
    print(READY + server.address, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

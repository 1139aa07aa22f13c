"""openpi's official client (`openpi-client` from PyPI), in a cached virtual environment of its own.

`openpi-client` 0.1.2 pins numpy below 2 and this project runs numpy 2, so pip cannot install it
beside the project (`pip install --dry-run openpi-client` would downgrade numpy to 1.26). The checks
of `coachlab vla-server --format openpi` therefore run openpi's own `WebsocketClientPolicy` in a
small virtual environment under the user's cache dir, with openpi-client, the dependencies it
declares and `typing_extensions` (which it imports without declaring), and talk to it through a
relay (`bench/openpi_relay.py`).

`ensure()` builds it once (under a minute; install.sh calls it) and `python -m bench.openpi_client_env`
does the same from a shell. `OfficialClient(uri)` starts the relay, which connects openpi's client to
`uri`; `infer(obs)` sends one observation through it and returns what openpi's client returned.
"""

from __future__ import annotations

import select
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.side_env import SideEnv
from policy_client import msgpack_numpy

OPENPI_CLIENT_VERSION = "0.1.2"
# openpi-client 0.1.2 imports typing_extensions (websocket_client_policy.py) without declaring it.
ENV = SideEnv(f"openpi-client-{OPENPI_CLIENT_VERSION}",
              ((f"openpi-client=={OPENPI_CLIENT_VERSION}", "typing_extensions"),), "COACHLAB_OPENPI_CLIENT_ENV")
_SCRIPT = Path(__file__).with_name("openpi_relay.py")  # runs inside the environment: no coachlab imports


class ClientUnavailable(RuntimeError):
    """The relay did not run or answer; the message says why in one sentence."""


class OfficialClientError(RuntimeError):
    """openpi's client raised; `kind` is its exception's class name, the message its text."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def ensure(quiet: bool = True) -> Path:
    """The environment's python, built first if need be (see `bench.side_env.SideEnv.ensure`)."""
    return ENV.ensure(quiet)


class OfficialClient:
    """openpi's `WebsocketClientPolicy(uri, api_key=...)` in the environment's python, one request at a time.

    The relay speaks length-prefixed msgpack on its stdin and stdout (openpi's numpy encoding), so the
    observation openpi's client sends is exactly the dict given to `infer`.
    """

    def __init__(self, uri: str, api_key: str | None = None, timeout_s: float = 60.0):
        self.timeout_s = timeout_s
        self._process = subprocess.Popen([str(ensure()), str(_SCRIPT), uri, api_key or ""],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.metadata: dict[str, Any] = self._read()["metadata"]

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """What openpi's `WebsocketClientPolicy.infer(obs)` returned; OfficialClientError if it raised."""
        payload = msgpack_numpy.packb(obs)
        self._process.stdin.write(struct.pack("<I", len(payload)) + payload)
        self._process.stdin.flush()
        return self._read()["reply"]

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for pipe in (self._process.stdout, self._process.stderr):
            pipe.close()

    def __enter__(self) -> "OfficialClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        # A deadline on the first byte only: the relay writes one whole message per request, so once
        # it has begun the rest follows (and openpi's client itself has no timeout to rely on).
        if not select.select([self._process.stdout], [], [], self.timeout_s)[0]:
            self._process.kill()
            raise ClientUnavailable(f"openpi's client got no answer within {self.timeout_s:.0f} s.")
        head = self._process.stdout.read(4)
        if len(head) < 4:
            err = self._process.stderr.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ClientUnavailable(f"openpi's client relay exited: {err[0]}")
        message = msgpack_numpy.unpackb(self._process.stdout.read(struct.unpack("<I", head)[0]))
        if "error" in message:
            raise OfficialClientError(message["error"], message["message"])
        return message


if __name__ == "__main__":
    print(ensure(quiet="--verbose" not in sys.argv))

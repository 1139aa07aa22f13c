"""Small helpers the test files share: a free loopback port, waiting for a condition, a small real
filesystem (tmpfs) to fill up or make read-only."""

from __future__ import annotations

import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that need one named)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Poll `predicate` every 50 ms until it holds (True) or `timeout_s` passes (False)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def chatty_echo_policy(lines: int = 1000):
    """The echo policy, printing as some labs' policies do: on loading and `lines` lines per reply."""
    from policy_client.echo_policy import EchoPolicy

    class ChattyEchoPolicy(EchoPolicy):
        def infer(self, observation, prompt):
            for i in range(lines):
                print(f"chatty reply {prompt.get('subtask')} line {i}")
            sys.stdout.flush()  # a pipe is block-buffered: without this the last lines wait in the child
            return super().infer(observation, prompt)

    print("loading the chatty policy ...", flush=True)
    return ChattyEchoPolicy()


@contextmanager
def small_filesystem(folder: Path, size: str = "8m") -> Iterator[Path]:
    """A real, small tmpfs mounted at `folder` (needs root and mount rights: CI containers, this
    machine); pytest skips when it cannot be mounted. Unmounted on leaving."""
    import os
    import subprocess

    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs a small filesystem: run as root where tmpfs can be mounted")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount_read_only(folder: Path) -> None:
    """Make the tmpfs `small_filesystem` mounted at `folder` read-only: what a read-only mount is."""
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)

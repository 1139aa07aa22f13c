"""Issue 22, fault 7: an error the machine's set-up causes (graphics backend, missing system library,
port in use, unusable data dir) is one sentence naming the fix, for every command: exit code 2,
one line on stderr, no traceback. Each case is caused for real in a real `coachlab` process."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.environment import explain

ROOT = Path(__file__).resolve().parents[1]


def _coachlab(*args: str, **env: str) -> subprocess.CompletedProcess:
    if "MUJOCO_GL" in env:
        # importing mujoco in this process (earlier tests) set PYOPENGL_PLATFORM to egl, which would let a
        # child with another MUJOCO_GL fall back to egl; a user's shell that sets MUJOCO_GL has none
        env.setdefault("PYOPENGL_PLATFORM", None)
    full_env = {**os.environ, **env}
    for key in [k for k, v in env.items() if v is None]:
        full_env.pop(key)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def _one_sentence(r: subprocess.CompletedProcess, *needles: str) -> str:
    err = "\n".join(line for line in r.stderr.strip().splitlines() if "%|" not in line)  # progress bars aside
    assert r.returncode == 2, (r.returncode, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("command", [["coach", "--task", "sort_blocks", "--episodes", "1"], ["bench", "sim"],
                                     ["app", "--port", "0"], ["vla-server", "--port", "0"]])
def test_a_wrong_graphics_backend_is_one_sentence(command):
    _one_sentence(_coachlab(*command, MUJOCO_GL="vulkan"), "MUJOCO_GL='vulkan'", "egl")


@pytest.mark.parametrize("command", [["coach", "--task", "sort_blocks", "--episodes", "1"],
                                     ["robot-server", "--port", "0"]])  # the bridge renders only at a reset: it checks at start
def test_a_display_backend_without_a_display_is_one_sentence(command):
    r = _coachlab(*command, MUJOCO_GL="glx", DISPLAY=None)
    _one_sentence(r, "glx", "MUJOCO_GL=egl")


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="OSMesa is installed here")
def test_a_backend_whose_library_is_missing_is_one_sentence():
    _one_sentence(_coachlab("vla-server", "--port", "0", MUJOCO_GL="osmesa"), "osmesa", "libosmesa6")


def test_a_missing_system_library_names_it():
    with pytest.raises(OSError) as caught:
        ctypes.CDLL("libcoachlab-missing.so.1")  # what loading a library that is not installed raises
    sentence = explain(caught.value)
    assert sentence is not None and "libcoachlab-missing.so.1" in sentence and "install" in sentence


@pytest.mark.parametrize("command", ["vla-server", "robot-server", "app"])
def test_a_port_in_use_is_one_sentence(command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        extra = ["--detector", "none"] if command == "app" else []
        port = taken.getsockname()[1]
        err = _one_sentence(_coachlab(command, "--port", str(port), *extra))
        assert err == (f"coachlab {command}: Port {port} on 127.0.0.1 is already in use: choose another --port, "
                       "or stop whatever holds it."), err


def test_an_unusable_data_dir_is_one_sentence(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    data = str(tmp_path / "a-file" / "data")
    _one_sentence(_coachlab("coach", "--task", "sort_blocks", "--episodes", "1", "--db", f"{data}/c.db"), "--db")
    _one_sentence(_coachlab("episodes", XDG_DATA_HOME=data), "--db")


def test_a_reader_that_stops_early_is_not_an_error():
    """`coachlab episodes | head -5` ended in a BrokenPipeError traceback once head had its lines."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before coachlab writes a byte
    try:
        r = subprocess.run([sys.executable, "-m", "app.cli", "tasks"], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    finally:
        os.close(write_end)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]

"""Issue 22, Security: the robot bridge and the VLA server use ZMQ CURVE keys. Bound beyond loopback
they refuse to start without keys; a client without the server's public key, with a wrong one, or
(when the server lists its clients) not listed, is refused, and the robot does not move."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from policy_client import PolicyUnreachable
from policy_client.zmq_client import ZmqRequester
from support import free_port

ROOT = Path(__file__).resolve().parents[1]
MOVE = np.array([0.3, 0.1, 0.15, 0.0, 0.0, 1.0])


def _keys(folder: Path, name: str = "server") -> None:
    """A key pair made as a user makes it: `coachlab keys`."""
    assert main(["keys", "--dir", str(folder), "--name", name, "--json"]) == 0


def test_keys_makes_a_pair_and_never_overwrites_it(tmp_path, capsys):
    assert main(["keys", "--dir", str(tmp_path / "k"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["public_key"]) == 40 and Path(out["secret_key_file"]).stat().st_mode & 0o077 == 0
    assert "--keys" in out["use"]
    # the key as a real shell passes it on when the printed advice is pasted (Z85 keys hold $, (, *, ...)
    as_printed = out["use"].split("--vla-key ", 1)[1].split(" (or ", 1)[0]
    pasted = subprocess.run(["sh", "-c", f"printf %s {as_printed}"], capture_output=True, text=True).stdout
    assert pasted == out["public_key"], as_printed
    assert main(["keys", "--dir", str(tmp_path / "k")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["robot-server", "vla-server"])
def test_servers_refuse_to_listen_beyond_loopback_without_keys(command, capsys, monkeypatch):
    monkeypatch.delenv("COACHLAB_KEYS", raising=False)
    assert main([command, "--host", "0.0.0.0", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without keys" in err and "coachlab keys" in err, err


@pytest.fixture(scope="module")
def secured_bridge(tmp_path_factory):
    """`coachlab robot-server` on all interfaces with keys, in its own process; (address, key folder)."""
    folder = tmp_path_factory.mktemp("keys")
    assert main(["keys", "--dir", str(folder), "--json"]) == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "robot-server", "--host", "0.0.0.0", "--port", str(port),
                             "--keys", str(folder)], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stderr.readline()
    assert "robot bridge for the sim" in line and "public key" in line, line
    yield f"tcp://127.0.0.1:{port}", folder
    proc.terminate()
    proc.wait(timeout=10)


def _robot(address: str, key: str, **kw):
    from coaching.robot_bridge import BridgeRobot

    return BridgeRobot(address, server_key=key, **kw)


def test_a_client_without_or_with_a_wrong_key_cannot_move_the_robot(secured_bridge, monkeypatch):
    from policy_client.curve import make_keys

    monkeypatch.delenv("COACHLAB_ROBOT_KEY", raising=False)
    address, folder = secured_bridge
    owner = _robot(address, str(folder / "server.key"))  # the key as its file
    before = owner.reset("sort_blocks", 0).state.copy()

    wrong_public, _ = make_keys(folder / "other", "server")
    for key in (None, wrong_public.read_text().split('"')[1]):  # no key; another server's key (40 characters)
        start = time.monotonic()
        with pytest.raises(PolicyUnreachable, match="public key"):
            _robot(address, key, timeout_s=1.0)
        raw = ZmqRequester(address, timeout_s=1.0, server_key=key.encode() if key else None)
        with pytest.raises(PolicyUnreachable):
            raw.request("act", {"action": MOVE, "mode": "ee"})  # straight at the wire: no handshake, no act
        raw.close()
        assert time.monotonic() - start < 5
    np.testing.assert_array_equal(owner.observe().state, before)  # the robot did not move

    for _ in range(5):  # the owner, with the right key, does move it: the check above can fail
        owner.act(MOVE, "ee")
    assert np.abs(owner.observe().state - before).max() > 1e-3
    owner.close()


def test_a_server_that_lists_its_clients_admits_only_those(tmp_path, monkeypatch):
    """Keys folder with authorized_clients/: knowing the server's key is not enough."""
    import shutil

    from policy_client import connect
    from policy_client.curve import load_server_keys, make_keys
    from policy_client.echo_policy import EchoPolicy
    from policy_client.server import PolicyServer

    _keys(tmp_path)
    assert main(["keys", "--dir", str(tmp_path / "clients"), "--name", "ana"]) == 0
    (tmp_path / "authorized_clients").mkdir()
    shutil.copy(tmp_path / "clients" / "ana.key", tmp_path / "authorized_clients" / "ana.key")
    make_keys(tmp_path / "clients", "eve")  # a client key pair the server does not list
    server = PolicyServer(EchoPolicy(action_dim=6), "tcp://0.0.0.0:0", keys=load_server_keys(tmp_path)).start()
    address = server.address.replace("0.0.0.0", "127.0.0.1").replace("tcp://", "zmq://")
    try:
        for client_key in (None, tmp_path / "clients" / "eve.key_secret"):
            if client_key is None:
                monkeypatch.delenv("COACHLAB_CLIENT_KEY", raising=False)  # a fresh key pair per connection
            else:
                monkeypatch.setenv("COACHLAB_CLIENT_KEY", str(client_key))
            with pytest.raises(PolicyUnreachable, match="does not list this client"):
                connect(address, timeout_s=1.0, server_key=str(tmp_path / "server.key"))
        monkeypatch.setenv("COACHLAB_CLIENT_KEY", str(tmp_path / "clients" / "ana.key_secret"))
        client = connect(address, timeout_s=5.0, server_key=str(tmp_path / "server.key"))
        reply = client.infer({"images": {}, "state": np.ones(6, np.float32), "timestamp": 0.0}, {"subtask": "s"})
        assert reply["actions"].shape == (50, 6) and server.served == 2  # hello and infer: only ana got through
        client.close()
    finally:
        server.stop()


def test_a_vla_client_without_the_key_is_told_how_to_give_it(tmp_path, monkeypatch):
    from policy_client import connect
    from policy_client.curve import load_server_keys
    from policy_client.echo_policy import EchoPolicy
    from policy_client.server import PolicyServer

    monkeypatch.delenv("COACHLAB_CLIENT_KEY", raising=False)
    _keys(tmp_path)
    server = PolicyServer(EchoPolicy(action_dim=6), "tcp://127.0.0.1:0", keys=load_server_keys(tmp_path)).start()
    try:
        with pytest.raises(PolicyUnreachable, match=r"--vla-key or \$COACHLAB_VLA_KEY"):
            connect(server.address, timeout_s=1.0)
        assert server.served == 0
        client = connect(server.address, timeout_s=5.0, server_key=str(tmp_path / "server.key"))
        assert client.metadata["action_dim"] == 6
        client.close()
    finally:
        server.stop()

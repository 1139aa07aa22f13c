"""Choose a low-level policy backend by address: `zmq://host:port` or `openpi://host:port[?layout=droid]`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from policy_client.base_policy import BasePolicy


class BadAddress(ValueError):
    """An address no backend understands."""


def connect(address: str, timeout_s: float = 5.0, server_key: str | None = None) -> BasePolicy:
    """Connect to the low-level policy at `address` and shake hands; raises PolicyError subclasses.
    `server_key` (a ZMQ server's CURVE public key, 40 characters or a .key file) secures the wire;
    curve.KeysError if it is unreadable, BadAddress if given for openpi (which has no CURVE)."""
    scheme, hostport, query = parse_address(address)
    if scheme == "openpi":
        from policy_client.openpi_client import OpenPIPolicyClient

        if server_key:
            raise BadAddress("An openpi server has no CURVE keys: drop the VLA key, or serve it with coachlab's ZMQ server.")
        return OpenPIPolicyClient(hostport, layout=query.get("layout", "libero"), timeout_s=timeout_s)
    from policy_client.curve import read_public_key
    from policy_client.zmq_client import ZmqPolicyClient

    key = read_public_key(server_key) if server_key else None
    return ZmqPolicyClient(f"tcp://{hostport}", timeout_s=timeout_s, server_key=key)


def parse_address(address: str) -> tuple[str, str, dict[str, str]]:
    parts = urlsplit(address.strip())
    scheme = {"zmq": "zmq", "tcp": "zmq", "openpi": "openpi", "ws": "openpi"}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    if scheme is None or not parts.hostname or port is None:
        raise BadAddress(f"{address!r} is not a policy address; write zmq://host:port or openpi://host:port.")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, f"{host}:{port}", {k: v[-1] for k, v in parse_qs(parts.query).items()}

"""Choose a low-level policy backend by address: `zmq://host:port` or `openpi://host:port[?layout=droid]`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from policy_client.base_policy import BasePolicy


class BadAddress(ValueError):
    """An address no backend understands."""


def connect(address: str, timeout_s: float = 5.0) -> BasePolicy:
    """Connect to the low-level policy at `address` and shake hands; raises PolicyError subclasses."""
    scheme, hostport, query = parse_address(address)
    if scheme == "openpi":
        from policy_client.openpi_client import OpenPIPolicyClient

        return OpenPIPolicyClient(hostport, layout=query.get("layout", "libero"), timeout_s=timeout_s)
    from policy_client.zmq_client import ZmqPolicyClient

    return ZmqPolicyClient(f"tcp://{hostport}", timeout_s=timeout_s)


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

"""Choose a low-level policy backend by address: `zmq://host:port`, or an openpi server as
`openpi://host:port`, `ws://host:port[/path]` or `wss://host[:port][/path]`, each with `?layout=droid`."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from policy_client.base_policy import BasePolicy

API_KEY_ENV = "COACHLAB_VLA_API_KEY"  # an openpi server's API key (sent as `Authorization: Api-Key KEY`)
_SCHEMES = {"zmq": "zmq", "tcp": "zmq", "openpi": "openpi", "ws": "openpi", "wss": "openpi"}
_DEFAULT_PORTS = {"ws": 80, "wss": 443}  # a websocket URI may leave the port out, as a browser's may


class BadAddress(ValueError):
    """An address no backend understands."""


def connect(address: str, timeout_s: float = 5.0, server_key: str | None = None,
            api_key: str | None = None) -> BasePolicy:
    """Connect to the low-level policy at `address` and shake hands; raises PolicyError subclasses.
    `server_key` (a ZMQ server's CURVE public key, 40 characters or a .key file) secures the wire;
    curve.KeysError if it is unreadable, BadAddress if given for openpi (which has no CURVE).
    `api_key` (else $COACHLAB_VLA_API_KEY) is sent to an openpi server; BadAddress if given for ZMQ."""
    scheme, hostport, query = parse_address(address)
    if scheme == "openpi":
        from policy_client.openpi_client import OpenPIPolicyClient

        if server_key:
            raise BadAddress("An openpi server has no CURVE keys: drop the VLA key, or serve it with coachlab's ZMQ server.")
        from policy_client.openpi_robot_layout import read_options

        try:
            options = read_options(query)
            client = OpenPIPolicyClient(websocket_uri(address), layout=query.get("layout"), timeout_s=timeout_s,
                                        api_key=api_key or os.environ.get(API_KEY_ENV) or None, options=options,
                                        handshake=False)
        except ValueError as e:  # an unknown layout or layout option: the address is wrong, say so before connecting
            raise BadAddress(f"{address!r}: {e}") from None
        client.connect()
        return client
    from policy_client.curve import read_public_key
    from policy_client.zmq_client import ZmqPolicyClient

    if api_key:  # only an argument: the variable may be set for the openpi runs of the same shell
        raise BadAddress("A ZMQ VLA server takes CURVE keys, not an API key: pass --vla-key, or give an openpi:// address.")
    key = read_public_key(server_key) if server_key else None
    return ZmqPolicyClient(f"tcp://{hostport}", timeout_s=timeout_s, server_key=key)


def parse_address(address: str) -> tuple[str, str, dict[str, str]]:
    """`(backend, "host:port", query)` for a policy address; BadAddress (one sentence) if it is not one."""
    parts = urlsplit(address.strip())
    scheme = _SCHEMES.get(parts.scheme)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    if scheme is None or not parts.hostname or port is None:
        raise BadAddress(f"{address!r} is not a policy address; write zmq://host:port or openpi://host:port "
                         "(or ws:// / wss:// for an openpi server).")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, f"{host}:{port}", {k: v[-1] for k, v in parse_qs(parts.query).items()}


def websocket_uri(address: str) -> str:
    """The ws:// or wss:// URI an openpi address connects to: `openpi://` is plain `ws://`; a ws(s) address
    keeps its path; the query (coachlab's `layout`) is not sent."""
    parts = urlsplit(address.strip())
    _, hostport, _ = parse_address(address)
    scheme = "wss" if parts.scheme == "wss" else "ws"
    return f"{scheme}://{hostport}{parts.path if parts.scheme in ('ws', 'wss') else ''}"

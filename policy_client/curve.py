"""ZMQ CURVE keys for the VLA server and the robot bridge: making them, loading them, securing sockets.

A server bound to anything but loopback must have a key pair (`coachlab keys`): its socket is then
a CURVE server, and only clients that know its public key complete the handshake; with a folder of
authorized client public keys (`DIR/authorized_clients/*.key`), only those clients do (checked by
pyzmq's ZAP authenticator). A client gets the server's public key by option or from an
environment variable (the 40 characters or the path of the `.key` file), and its own key pair
from `$COACHLAB_CLIENT_KEY` (a `.key_secret` file) or, when none is given, a fresh one per
connection. Without keys on loopback nothing changes: the plain ZMQ wire.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

KEYS_ENV = "COACHLAB_KEYS"  # a server's keys folder
CLIENT_KEY_ENV = "COACHLAB_CLIENT_KEY"  # a client's own .key_secret file (needed when the server lists clients)
SERVER_KEY_NAME = "server"
CLIENTS_DIR = "authorized_clients"
_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


class KeysError(ValueError):
    """A key or keys folder that cannot be used; the message says what to do."""


class InsecureBind(ValueError):
    """A server asked to listen beyond loopback without keys."""


@dataclass(frozen=True)
class ServerKeys:
    public: bytes  # Z85, 40 bytes
    secret: bytes
    authorized_clients: str | None  # a folder of client public keys, or None: any client with the server key


def make_keys(folder: str | Path, name: str = SERVER_KEY_NAME) -> tuple[Path, Path]:
    """Write a new key pair `folder/name.key` (public) and `folder/name.key_secret` (private, mode 600).
    Returns both paths. Refuses (KeysError) to overwrite an existing pair."""
    folder = Path(folder)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise KeysError(f"{secret} already exists; choose another --dir or --name, or delete the old pair first.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        zmq.auth.create_certificates(str(folder), name)
    except OSError as e:
        raise KeysError(f"Cannot write keys into {folder} ({e.strerror}); choose a folder you can write.") from None
    os.chmod(secret, 0o600)
    return public, secret


def load_server_keys(folder: str | Path) -> ServerKeys:
    """The server key pair in `folder` (as `coachlab keys` wrote it) and its authorized clients, if any."""
    folder = Path(folder)
    secret_file = folder / f"{SERVER_KEY_NAME}.key_secret"
    try:
        public, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as e:
        raise KeysError(f"No readable server key pair in {folder} ({e}); make one with `coachlab keys --dir {folder}`.") \
            from None
    if secret is None:
        raise KeysError(f"{secret_file} holds no secret key; make a pair with `coachlab keys --dir {folder}`.")
    clients = folder / CLIENTS_DIR
    listed = clients.is_dir() and any(clients.glob("*.key"))
    return ServerKeys(public, secret, str(clients) if listed else None)


def read_public_key(value: str) -> bytes:
    """A server public key given as its 40 Z85 characters or as a path to its `.key` file."""
    value = value.strip()
    if _Z85_KEY.match(value):
        return value.encode()
    try:
        public, _ = zmq.auth.load_certificate(value)
    except (OSError, ValueError):
        raise KeysError(f"{value[:60]!r} is neither a 40-character server public key nor a readable .key file; "
                        "copy the key `coachlab keys` printed on the server, in single quotes (keys hold characters "
                        "such as $ that a shell replaces), or give the path of its .key file.") from None
    return public


def client_key_pair() -> tuple[bytes, bytes]:
    """This client's key pair: from `$COACHLAB_CLIENT_KEY` (a .key_secret file), else a fresh one."""
    path = os.environ.get(CLIENT_KEY_ENV)
    if not path:
        return zmq.curve_keypair()
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError):
        public, secret = None, None
    if secret is None:
        raise KeysError(f"${CLIENT_KEY_ENV} ({path}) is not a readable .key_secret file; make one with "
                        "`coachlab keys --name NAME` and add its .key to the server's authorized_clients folder.")
    return public, secret


def is_loopback(address: str) -> bool:
    """Whether a tcp://host:port address only listens on this machine."""
    host = address.split("://", 1)[-1].rpartition(":")[0].strip("[]")
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except (OSError, ValueError):
            return False


def check_bind(address: str, keys: ServerKeys | None, what: str) -> None:
    """InsecureBind (one sentence) when `what` would listen beyond loopback without keys."""
    if keys is None and not is_loopback(address):
        raise InsecureBind(f"Refusing to serve the {what} on {address} without keys: anyone who reaches that port "
                           f"could use it. Make keys with `coachlab keys --dir DIR` and pass --keys DIR "
                           f"(or ${KEYS_ENV}), or bind 127.0.0.1.")


def secure_server(sock: zmq.Socket, context: zmq.Context, keys: ServerKeys) -> ThreadAuthenticator | None:
    """Make `sock` (before it binds) a CURVE server; with authorized clients, start the authenticator
    that admits only them (the caller stops it after closing the socket)."""
    auth = None
    if keys.authorized_clients is not None:
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain="*", location=keys.authorized_clients)
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    return auth


def secure_client(sock: zmq.Socket, server_key: bytes) -> None:
    """Make `sock` (before it connects) a CURVE client of the server whose public key is `server_key`."""
    public, secret = client_key_pair()
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_key

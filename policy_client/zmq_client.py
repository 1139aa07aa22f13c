"""The ZMQ client of a low-level policy server: request ids, a timeout per request, reconnection.

`ZmqRequester` is the generic part (also used by the robot bridge's client). A DEALER socket with `IMMEDIATE` set queues nothing while no server is connected, so a request
to a dead address fails as unreachable instead of being replayed to whichever server comes up
later. After a timeout the socket is thrown away and rebuilt (ZMQ's "lazy pirate" pattern), so a
restarted server starts from a clean connection; replies whose id is not the awaited one (a
request that already timed out) are discarded.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import zmq

from policy_client import protocol
from policy_client.base_policy import BasePolicy
from policy_client.curve import secure_client
from policy_client.errors import PolicyServerError, PolicyTimeout, PolicyUnreachable, ProtocolMismatch
from policy_client.protocol import Message, ProtocolError


class ZmqRequester:
    """One request at a time to a `ZmqServer` at `tcp://host:port`, with a timeout each."""

    peer = "low-level policy server"  # how error messages name the other side
    start_hint = "start one (coachlab vla-server) or pass the right --vla address"
    timeout_hint = "Check the server or raise the timeout"

    def __init__(self, address: str, timeout_s: float = 5.0, server_key: bytes | None = None):
        """`server_key` (Z85, policy_client.curve) makes every connection a CURVE client of that server."""
        self.address = address
        self.timeout_s = timeout_s
        self.server_key = server_key
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # ZMQ sockets are not thread-safe; one request at a time
        self.last_round_trip_ms: float | None = None

    def retarget(self, address: str) -> None:
        """Send the next requests to `address` (a supervised server restarted on another port)."""
        with self._lock:
            self.address = address
            self._drop_socket()

    def close(self) -> None:
        with self._lock:
            self._drop_socket()
            if not self._context.closed:
                self._context.term()

    # -- one request ------------------------------------------------------------------------
    def request(self, kind: str, body: dict[str, Any], timeout_s: float | None = None) -> Message:
        timeout_ms = int(1000 * (self.timeout_s if timeout_s is None else timeout_s))
        with self._lock:
            sock = self._connected_socket()
            msg_id = next(self._ids)
            start = time.perf_counter()
            # Blocking calls with socket timeouts rather than poll-then-act: pyzmq's poll builds a
            # Poller per call, about a tenth of a loopback round trip. With IMMEDIATE set, a send
            # with no server connected waits for one, then times out.
            sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
            try:
                protocol.send(sock, protocol.encode(Message(kind, msg_id, body)))
            except zmq.Again:
                self._drop_socket()
                raise PolicyUnreachable(f"No {self.peer} answers at {self.address}; {self.start_hint}"
                                        f"{self._key_hint()}.") from None
            reply = self._await_reply(sock, msg_id, start, timeout_ms)
            self.last_round_trip_ms = (time.perf_counter() - start) * 1e3
        if reply.kind == "error":
            code, text = reply.body.get("code", "policy_error"), reply.body.get("message", "")
            if code == "protocol_mismatch":
                raise ProtocolMismatch(f"The {self.peer} at {self.address} rejected the request: {text}")
            raise PolicyServerError(f"The {self.peer} at {self.address} answered with an error: {text}", code)
        return reply

    def _await_reply(self, sock: zmq.Socket, msg_id: int, start: float, timeout_ms: int) -> Message:
        while True:
            left = timeout_ms - (time.perf_counter() - start) * 1e3
            try:
                if left <= 0:
                    raise zmq.Again()
                sock.setsockopt(zmq.RCVTIMEO, max(1, int(left)))
                reply = protocol.decode(sock.recv_multipart(copy=False))
            except zmq.Again:
                self._drop_socket()  # a fresh socket next time: nothing stale can arrive on it
                raise PolicyTimeout(f"The {self.peer} at {self.address} did not answer within "
                                    f"{timeout_ms / 1000:.1f} s; the robot holds. {self.timeout_hint}.") from None
            except ProtocolError as e:
                self._drop_socket()
                raise ProtocolMismatch(f"The {self.peer} at {self.address} does not speak the coachlab protocol: {e}") from None
            if reply.id == msg_id:
                return reply
            # a reply to an earlier request that timed out: discard it and keep waiting

    def _key_hint(self) -> str:
        # A CURVE handshake that fails (no key, a wrong one, a client not listed) looks like silence.
        if self.server_key is None:
            return f" (a server bound beyond loopback has keys: pass its public key, {self.key_hint})"
        return " (or the server's public key you gave is not this server's, or it does not list this client)"

    key_hint = "--vla-key or $COACHLAB_VLA_KEY"  # where a user gives the server's public key

    def _connected_socket(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            if self.server_key is not None:
                secure_client(sock, self.server_key)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.RECONNECT_IVL, 50)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
            sock.connect(self.address)
            self._socket = sock
        return self._socket

    def _drop_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None


class ZmqPolicyClient(ZmqRequester, BasePolicy):
    """`infer(observation, prompt)` against a `policy_client.serve` server at `tcp://host:port`."""

    def __init__(self, address: str, timeout_s: float = 5.0, handshake: bool = True, server_key: bytes | None = None):
        super().__init__(address, timeout_s, server_key)
        self.server_hello: dict[str, Any] = {}
        if handshake:
            try:
                self.hello()
            except BaseException:
                self.close()
                raise

    # -- the policy interface ---------------------------------------------------------------
    def infer(self, observation: dict[str, Any], prompt: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        reply = self.request("infer", {"observation": observation, "prompt": prompt}, timeout_s)
        return reply.body

    def reset(self, seed: int | None = None) -> None:
        self.request("reset", {"seed": seed})

    @property
    def metadata(self) -> dict[str, Any]:
        return self.server_hello

    def hello(self) -> dict[str, Any]:
        reply = self.request("hello", {"client": "coachlab"})
        if reply.body.get("protocol") != protocol.PROTOCOL_VERSION:
            raise ProtocolMismatch(f"The server at {self.address} speaks protocol {reply.body.get('protocol')}, "
                                   f"this client {protocol.PROTOCOL_VERSION}; upgrade the older one.")
        self.server_hello = reply.body
        return reply.body

    def ping(self) -> float:
        """Round trip of an empty message in milliseconds."""
        start = time.perf_counter()
        self.request("ping", {})
        return (time.perf_counter() - start) * 1e3


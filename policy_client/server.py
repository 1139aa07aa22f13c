"""The server harness: serve any object with `infer(observation, prompt) -> dict` over ZMQ.

`ZmqServer` is the generic part: one ROUTER socket serves any number of clients, requests are
answered one at a time in arrival order (one policy, one accelerator; one robot), and a bad
request (malformed frames, an oversized message, a wrong protocol version, a handler that
raises) gets an `error` reply while the server keeps serving. `PolicyServer` answers the policy
messages (hello, infer, reset, ping); the robot bridge (`coaching/robot_bridge.py`) answers robot ones.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from policy_client import protocol
from policy_client.curve import ServerKeys, check_bind, secure_server
from policy_client.protocol import Message, ProtocolError

log = logging.getLogger(__name__)


class AddressInUse(OSError):
    """The server cannot listen at its address (taken, or not this machine's)."""


@dataclass
class ServerConfig:
    name: str = "coachlab-policy-server"
    version: str = "0.1.0"
    max_request_bytes: int = 64 << 20  # larger requests get a `too_large` error reply
    poll_ms: int = 100  # how often the loop checks whether it should stop


class ZmqServer:
    """Binds `address` (e.g. tcp://127.0.0.1:5555, or port 0 for any free port) and serves `answer`."""

    failure_code, failure_text = "handler_error", "The request failed"  # when `answer` raises

    what = "VLA server"  # how the refusal to bind without keys names this server

    def __init__(self, address: str, config: ServerConfig | None = None, keys: ServerKeys | None = None):
        """`keys` (policy_client.curve) makes it a CURVE server; without them it refuses (InsecureBind)
        any address but loopback, before binding."""
        self.config = config or ServerConfig()
        check_bind(address, keys, self.what)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._auth = secure_server(self._socket, self._context, keys) if keys is not None else None
        self._socket.setsockopt(zmq.LINGER, 0)
        # A blocking receive with a timeout rather than poll-then-receive: pyzmq's poll builds a
        # Poller per call, which costs about a tenth of a loopback round trip.
        self._socket.setsockopt(zmq.RCVTIMEO, self.config.poll_ms)
        # A hard cap far above the soft one: ZMQ drops the connection of a peer past it, before
        # the bytes are buffered; between the two the client gets a readable `too_large` reply.
        self._socket.setsockopt(zmq.MAXMSGSIZE, 4 * self.config.max_request_bytes)
        host, _, port = address.rpartition(":")
        try:
            self._socket.bind(f"{host}:*" if port == "0" else address)  # port 0: any free port
        except zmq.ZMQError as e:
            self._close_socket()
            raise AddressInUse(f"Cannot listen on {address} ({e.strerror}); choose another --port or stop "
                               "whatever holds it.") from None
        self.address: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.served = 0
        self.errors = 0

    # -- lifecycle --------------------------------------------------------------------------
    def serve_forever(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frames = self._socket.recv_multipart(copy=False)
                except zmq.Again:
                    continue  # no request within poll_ms: check whether to stop
                self._handle(frames)
        finally:
            self._close_socket()

    def _close_socket(self) -> None:
        self._socket.close()
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

    def start(self) -> "ZmqServer":
        """Serve on a background thread (tests, benchmarks, embedding in another process)."""
        self._thread = threading.Thread(target=self.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- one request ------------------------------------------------------------------------
    def _handle(self, frames: list[zmq.Frame]) -> None:
        identity, payload = frames[0], frames[1:]
        request: Message | None = None
        try:
            size = sum(f.buffer.nbytes for f in payload)
            if size > self.config.max_request_bytes:
                raise ProtocolError("too_large", f"A request of {size} bytes is over this server's limit of "
                                                 f"{self.config.max_request_bytes}; send smaller images.")
            request = protocol.decode(payload)
            frames = protocol.encode(self.answer(request))
            self.served += 1
        except ProtocolError as e:
            frames = protocol.encode(protocol.error_message(self._reply_id(request, payload), e.code, str(e)))
            self.errors += 1
        except Exception as e:  # the handler raised, or answered something unsendable: say so, keep serving
            msg_id = self._reply_id(request, payload)
            log.exception("request %s failed", msg_id)
            frames = protocol.encode(protocol.error_message(msg_id, self.failure_code,
                                                            f"{self.failure_text}: {type(e).__name__}: {e}"))
            self.errors += 1
        protocol.send(self._socket, frames, prefix=[identity])

    @staticmethod
    def _reply_id(request: Message | None, payload: list[zmq.Frame]) -> int:
        """The id an error reply must carry; the header is parsed again only when decoding failed."""
        return request.id if request is not None else protocol.peek_id(payload)

    def serve_until_interrupted(self) -> None:
        """Serve in the foreground until Ctrl+C (the command-line servers)."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass

    def answer(self, request: Message) -> Message:
        """The reply to one decoded request; raise ProtocolError("unknown_kind", ...) for kinds not served."""
        raise NotImplementedError


class PolicyServer(ZmqServer):
    """Serves a policy object: hello, infer, reset, ping."""

    failure_code, failure_text = "policy_error", "The policy failed"

    def __init__(self, policy: Any, address: str, config: ServerConfig | None = None, keys: ServerKeys | None = None):
        self.policy = policy
        super().__init__(address, config, keys)

    def answer(self, request: Message) -> Message:
        if request.kind == "hello":
            return Message("hello", request.id, self.hello())
        if request.kind == "ping":
            return Message("pong", request.id, {"time": time.time()})
        if request.kind == "reset":
            if hasattr(self.policy, "reset"):
                self.policy.reset(request.body.get("seed"))
            return Message("reset", request.id, {})
        if request.kind == "infer":
            observation, prompt = request.body.get("observation"), request.body.get("prompt")
            if not isinstance(observation, dict) or not isinstance(prompt, dict):
                raise ProtocolError("malformed", "An infer request needs an 'observation' object and a 'prompt' object.")
            start = time.perf_counter()
            result = self.policy.infer(observation, prompt)
            infer_ms = (time.perf_counter() - start) * 1e3
            if not isinstance(result, dict) or "actions" not in result:
                raise ProtocolError("policy_error", "The policy returned no 'actions'; infer must return a dict with them.")
            body = {"actions": np.asarray(result["actions"], dtype=np.float32), "info": result.get("info", {}),
                    "server_timing": {"infer_ms": round(infer_ms, 3)}}
            return Message("actions", request.id, body)
        raise ProtocolError("unknown_kind", f"A server does not accept {request.kind!r} messages.")

    def hello(self) -> dict[str, Any]:
        meta = dict(getattr(self.policy, "metadata", {}) or {})
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "server": self.config.name,
            "version": self.config.version,
            "policy": meta.pop("name", type(self.policy).__name__),
            "action_dim": meta.pop("action_dim", None),
            "chunk_length": meta.pop("chunk_length", None),
            "control_modes": meta.pop("control_modes", ["ee"]),
            "cameras": meta.pop("cameras", None),
            "image_size": meta.pop("image_size", None),
            "takes_subgoal_images": meta.pop("takes_subgoal_images", False),
            "takes_metadata": meta.pop("takes_metadata", False),
            "extra": meta,
        }


def serve(policy: Any, address: str = "tcp://127.0.0.1:5555", config: ServerConfig | None = None,
          keys: ServerKeys | None = None) -> None:
    """Serve `policy` at `address` until interrupted: the few lines a lab needs around its VLA. Beyond
    loopback pass `keys=policy_client.curve.load_server_keys(DIR)` (InsecureBind without them)."""
    server = PolicyServer(policy, address, config, keys)
    log.info("serving %s at %s", type(policy).__name__, server.address)
    server.serve_until_interrupted()

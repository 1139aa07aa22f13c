"""Run inside openpi-client's environment (bench/openpi_client_env.py), never imported by coachlab: connect
openpi's own `WebsocketClientPolicy` to a server and pass observations to it.

Usage: python openpi_relay.py URI [API_KEY]

Messages on stdin and stdout are a 4-byte little-endian length and a msgpack body in openpi's numpy
encoding. First out: `{"metadata": ...}` (what `get_server_metadata()` returned). Then per observation
in: `{"reply": ...}` (what `infer(obs)` returned), or `{"error": class name, "message": text}` if it raised.
"""

import struct
import sys

from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy


def _write(message):
    body = msgpack_numpy.packb(message)
    sys.stdout.buffer.write(struct.pack("<I", len(body)) + body)
    sys.stdout.buffer.flush()


def main():
    uri, api_key = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)
    try:
        client = WebsocketClientPolicy(uri, api_key=api_key)
    except Exception as e:  # said to the caller, who decides whether it is what the test expected
        _write({"error": type(e).__name__, "message": str(e)})
        return
    _write({"metadata": client.get_server_metadata()})
    while True:
        head = sys.stdin.buffer.read(4)
        if len(head) < 4:
            return
        obs = msgpack_numpy.unpackb(sys.stdin.buffer.read(struct.unpack("<I", head)[0]))
        try:
            _write({"reply": client.infer(obs)})
        except Exception as e:
            _write({"error": type(e).__name__, "message": str(e)})


if __name__ == "__main__":
    main()

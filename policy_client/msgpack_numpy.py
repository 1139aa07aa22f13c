"""openpi's msgpack encoding of numpy values, implemented from its wire format.

An array travels as a map `{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}`, a numpy scalar as `{b"__npgeneric__": True, b"data": value, b"dtype": ...}`.
openpi's own `openpi-client` package pins numpy below 2, so coachlab carries this small codec
instead of depending on it. Only plain numeric dtypes are accepted in either direction.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from policy_client.protocol import ALLOWED_DTYPES


def _pack(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.str not in ALLOWED_DTYPES:
            raise ValueError(f"Cannot send a {obj.dtype} array; use a plain numeric dtype.")
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"Cannot encode {type(obj).__name__} in an openpi message.")


def _unpack(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = obj[b"dtype"]
        dtype = dtype.decode() if isinstance(dtype, bytes) else dtype
        if dtype not in ALLOWED_DTYPES:
            raise ValueError(f"Refusing an array of dtype {dtype!r}: only plain numeric dtypes are accepted.")
        return np.frombuffer(obj[b"data"], dtype=np.dtype(dtype)).reshape(obj[b"shape"])
    if b"__npgeneric__" in obj:
        dtype = obj[b"dtype"]
        return np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_pack, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_unpack, raw=False, strict_map_key=False)

"""Frame encoding: camera images (RGB uint8, HxWx3) to JPEG or PNG bytes and back, via OpenCV.

OpenCV works in BGR order, so every encode and decode swaps channels here and nowhere else.
JPEG is the default (small, lossy); PNG is lossless and several times larger.
"""

from __future__ import annotations

import cv2
import numpy as np

FORMATS = ("jpeg", "png")
_EXT = {"jpeg": ".jpg", "png": ".png"}


def check_image(name: str, image: np.ndarray) -> None:
    """Raise ValueError unless `image` is an HxWx3 uint8 array (cheap: attribute checks only)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}".strip()
        raise ValueError(f"Camera '{name}' must give an HxWx3 uint8 RGB image, got {got}.")


def encode_image(image: np.ndarray, fmt: str = "jpeg", jpeg_quality: int = 90, png_compression: int = 1) -> bytes:
    """Encode one RGB image. `png_compression` 0-9: low levels are much faster and only a bit larger."""
    if fmt not in _EXT:
        raise ValueError(f"Unknown image format '{fmt}': use one of {', '.join(FORMATS)}.")
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)  # views like img[::-1] are fine too
    if fmt == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
    ok, buf = cv2.imencode(_EXT[fmt], bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {fmt}.")
    return buf.tobytes()


_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"  # the IEND chunk with its CRC


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG or PNG bytes (the format is in the bytes themselves) to an RGB uint8 HxWx3 array.

    ValueError if the bytes are not a whole image: OpenCV decodes a JPEG cut short without an error,
    grey where the data ran out, so a missing end marker is checked first.
    """
    data = bytes(data)
    whole = (data.startswith(_JPEG_START) and data.rstrip(b"\x00").endswith(_JPEG_END)) or \
        (data.startswith(_PNG_START) and data.endswith(_PNG_END))
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if whole else None
    if bgr is None:
        raise ValueError("The stored frame is not a readable JPEG or PNG image.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

"""One camera's frames as an mp4 video stream, encoded with PyAV (FFmpeg's libraries in a wheel).

Frames are numbered on the dataset's clock (pts = frame number, time base 1/fps), with no B-frames
so decode order is display order, and a keyframe every `gop` frames so a loader that seeks to one
frame decodes at most `gop` of them. Episodes follow one another in a file; a new file starts when
one passes the size limit (LeRobot's writers cap video files at 200 MB).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


class VideoLibraryMissing(RuntimeError):
    """PyAV is not installed or cannot encode with the asked-for codec."""


def load_av():
    """The `av` module, or VideoLibraryMissing in one sentence."""
    try:
        import av
    except ImportError:
        raise VideoLibraryMissing("Exporting videos needs PyAV (the `av` package), which is not installed: "
                                  "run ./install.sh or pip install av.") from None
    return av


class CameraVideo:
    """An mp4 file being written: `add(frame)` appends one RGB uint8 H x W x 3 frame; `close()` ends it.

    `frames` counts what was added (the next frame's number); raises VideoLibraryMissing if the codec
    is not in this PyAV build and ValueError for a frame of another size.
    """

    def __init__(self, path: Path, fps: int, height: int, width: int, vcodec: str = "libx264", crf: int = 23,
                 gop: int = 2):
        av = load_av()
        try:
            av.codec.Codec(vcodec, "w")
        except Exception:
            raise VideoLibraryMissing(f"This PyAV build has no '{vcodec}' video encoder: pip install a PyAV wheel "
                                      "(they ship libx264) or choose another codec.") from None
        if height % 2 or width % 2:  # yuv420p halves the chroma planes
            raise ValueError(f"Camera images of {height}x{width} cannot be encoded as yuv420p video: "
                             "the height and width must be even.")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.height, self.width, self.fps = path, height, width, fps
        self._container = av.open(str(path), mode="w")
        self._stream = self._container.add_stream(vcodec, rate=fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.time_base = Fraction(1, fps)
        options = {"g": str(gop), "bf": "0"}
        if vcodec in ("libx264", "libx265", "libsvtav1"):
            options["crf"] = str(crf)
        self._stream.options = options
        self._av = av
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        if rgb.shape != (self.height, self.width, 3):
            raise ValueError(f"A frame of {rgb.shape} does not fit this {self.height}x{self.width} video.")
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = self.frames, Fraction(1, self.fps)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        for packet in self._stream.encode(None):  # flush the encoder's queued frames
            self._container.mux(packet)
        self._container.close()

"""A video's display orientation: the rotation (and mirroring) its display matrix asks players to apply.

Phones record portrait video as landscape frames plus a display matrix saying "turn me 90 degrees" (ffprobe:
"displaymatrix: rotation of -90.00 degrees", the mp4 ``rotate=90`` tag). Decoders hand out the stored frames;
players, ffmpeg and ComfyUI previews show them turned. The pipeline works on the frames as they are displayed:
``VideoFileSource`` and ``read_video`` turn every decoded frame upright (the face is detected on upright faces, and
the output, written without a matrix, displays like the source).

The turn is exactly what the ffmpeg command line's autorotation applies (fftools: ``transpose`` clock / cclock /
clock_flip / cclock_flip, ``hflip`` / ``vflip``): right angles only; a matrix of another angle (very rare) is
snapped to the nearest right angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Orientation:
    """``turns`` quarter turns counter-clockwise (np.rot90's k), then a vertical flip (rows reversed) if
    ``vflip``, then a horizontal flip if ``hflip``. The identity is ``Orientation()``."""

    turns: int = 0
    vflip: bool = False
    hflip: bool = False

    @property
    def identity(self) -> bool:
        return self.turns % 4 == 0 and not self.vflip and not self.hflip

    @property
    def swaps_axes(self) -> bool:
        return self.turns % 2 == 1

    def size(self, height: int, width: int):
        """(H, W) of a stored (height, width) frame once displayed."""
        return (width, height) if self.swaps_axes else (height, width)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """One stored (H, W, C) frame as displayed (a view where possible; callers copy into their buffer)."""
        if self.turns % 4:
            frame = np.rot90(frame, self.turns % 4)
        if self.vflip:
            frame = frame[::-1]
        if self.hflip:
            frame = frame[:, ::-1]
        return frame

    def describe(self) -> str:
        parts = []
        if self.turns % 4:
            parts.append({1: "turned 90 degrees counter-clockwise", 2: "turned 180 degrees",
                          3: "turned 90 degrees clockwise"}[self.turns % 4])
        if self.vflip:
            parts.append("flipped vertically")
        if self.hflip:
            parts.append("mirrored")
        return ", ".join(parts) or "as stored"


def from_display_matrix(matrix: Optional[Sequence[int]]) -> Orientation:
    """The turn ffmpeg's autorotation applies for a 3x3 display matrix (FFmpeg's AV_PKT_DATA_DISPLAYMATRIX layout:
    9 int32, 16.16 fixed point, row-major), None meaning no matrix."""
    if matrix is None or len(matrix) < 9:
        return Orientation()
    m = [int(v) for v in matrix]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return Orientation()
    # av_display_rotation_get, negated and wrapped to [0, 360) as fftools' get_rotation does
    theta = math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))
    theta = round(theta)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    quarter = int(round(theta / 90.0)) % 4
    if quarter == 1:   # transpose: cclock_flip (the main diagonal) if m[3] > 0, else clock
        return Orientation(turns=1, vflip=True) if m[3] > 0 else Orientation(turns=3)
    if quarter == 2:
        return Orientation(turns=0, vflip=m[4] < 0, hflip=m[0] < 0)
    if quarter == 3:   # transpose: clock_flip (the anti-diagonal) if m[3] < 0, else cclock
        return Orientation(turns=3, vflip=True) if m[3] < 0 else Orientation(turns=1)
    return Orientation(vflip=m[4] < 0)


def of_frame(frame) -> Orientation:
    """The orientation a decoded PyAV VideoFrame's display matrix (side data) asks for."""
    try:
        data = frame.side_data.get("DISPLAYMATRIX")
    except Exception:  # noqa: BLE001 - PyAV without frame side data: nothing to turn
        return Orientation()
    if data is None:
        return Orientation()
    raw = bytes(data)
    if len(raw) < 36:
        return Orientation()
    return from_display_matrix(np.frombuffer(raw[:36], dtype=np.int32).tolist())


def of_file(file) -> Orientation:
    """The orientation of the first video stream of ``file`` (a path or a seekable file object), read from its
    first decoded frame; as stored where nothing decodes."""
    import io

    import av

    try:
        if isinstance(file, io.IOBase):
            file.seek(0)
            container = av.open(file, mode="r")
        else:
            container = av.open(str(file), mode="r")
    except (av.error.FFmpegError, OSError):
        return Orientation()
    try:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            return of_frame(frame)
    except (av.error.FFmpegError, IndexError):
        pass
    finally:
        container.close()
    return Orientation()

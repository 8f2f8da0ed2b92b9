"""Opening media files for reading with PyAV (no system ffmpeg): the checks and messages every reader shares.

- ``check_readable``: the path is a file this process may read, else an InputError saying which;
- ``open_media``: ``av.open`` for reading, a file ffmpeg cannot open being an InputError;
- ``stream_fps``: a video stream's exact frame rate as a ``Fraction`` (29.97 fps stays 30000/1001).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Union

from ..errors import InputError

PathLike = Union[str, os.PathLike]


def check_readable(path: PathLike, what: str) -> Path:
    """``path`` as a Path if it is a file this process may read, else an InputError naming the ``what`` file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file '{path}' does not exist. Check the path.")
    if not path.is_file():
        raise InputError(f"{what} path '{path}' is not a file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} file '{path}' cannot be read (permission denied).")
    return path


def open_media(path: Path, what: str):
    """``av.open`` for reading, a file that will not open being an InputError that says what to give instead."""
    import av

    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} file '{path}' could not be opened as a media file ({exc}). "
                         f"Give a video/audio file that ffmpeg can read (mp4, mov, mkv, webm, wav, mp3, m4a...).") from None


def stream_fps(stream) -> Fraction:
    """The exact frame rate of a video stream: average rate, else guessed rate, else base rate."""
    for rate in (stream.average_rate, getattr(stream, "guessed_rate", None), stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    raise InputError("the video stream declares no frame rate; re-encode it or give --fps with an image.")

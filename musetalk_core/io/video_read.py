"""Reading video files with PyAV: all frames at once, lazily (``open_video``), or only their counts (``probe``).

Frames are uint8 RGB tensors (N, H, W, 3) as displayed (a display matrix is applied: musetalk_core.io.orientation);
the frame rate is exact (media_open.stream_fps); audio is ComfyUI's AUDIO mapping (audio_file). Used by the command
line and the batch jobs; the graph reads through ComfyUI's LoadVideo.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import numpy as np
import torch

from ..errors import InputError, NoFramesError
from .audio_file import decode_audio
from .media_open import PathLike, check_readable, open_media, stream_fps
from .sources import VideoFileSource


@dataclass(frozen=True)
class VideoData:
    frames: torch.Tensor  # uint8 (N, H, W, 3) RGB
    fps: Fraction
    audio: Optional[dict]  # AUDIO mapping of the file's first audio stream, or None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _first_video_stream(container, path):
    """The file's first video stream, or an InputError saying what the file is instead."""
    if not container.streams.video:
        kind = "an audio-only file" if container.streams.audio else "a file without a video stream"
        raise InputError(f"Video file '{path}' is {kind}. Give a video with --video "
                         f"(or a still image with --image), and the sound with --audio.")
    return container.streams.video[0]


def read_video(path: PathLike, with_audio: bool = True) -> VideoData:
    """All frames of the first video stream (uint8 RGB, as displayed: a display matrix is applied), its exact fps,
    and its audio (if any)."""
    import av

    from .orientation import of_frame

    path = check_readable(path, "Video")
    with open_media(path, "Video") as container:
        stream = _first_video_stream(container, path)
        fps = stream_fps(stream)
        stream.thread_type = "AUTO"
        frames = []
        orientation = None
        try:
            for frame in container.decode(stream):
                if orientation is None:  # the display matrix (portrait phone videos): frames as displayed
                    orientation = of_frame(frame)
                frames.append(np.ascontiguousarray(orientation.apply(frame.to_ndarray(format="rgb24"))))
        except av.error.FFmpegError as exc:
            if not frames:
                raise InputError(f"Video file '{path}' could not be decoded ({exc}).") from None
            # A damaged tail: keep what decoded, as players do.
    if not frames:
        raise InputError(f"Video file '{path}' has no frames. Give a video with at least one frame.")
    audio = None
    if with_audio:
        with open_media(path, "Video") as container:
            audio = decode_audio(container, path, "Video")
    return VideoData(torch.from_numpy(np.stack(frames)), fps, audio)


def open_video(path: PathLike):
    """The first video stream of a file as a lazy ``sources.VideoFileSource`` (nothing decoded yet)."""
    path = check_readable(path, "Video")
    with open_media(path, "Video") as container:
        stream_fps(_first_video_stream(container, path))
    try:
        return VideoFileSource(path, name="--video")
    except NoFramesError:
        raise InputError(f"Video file '{path}' has no frames. Give a video with at least one frame.") from None


def probe(path: PathLike) -> dict:
    """Frame count, fps and audio duration of a written file (for tests and the CLI's final report)."""
    path = check_readable(path, "Video")
    with open_media(path, "Video") as container:
        info = {"frames": 0, "fps": None, "audio_seconds": None, "audio_samples": 0, "sample_rate": None}
        if container.streams.video:
            vs = container.streams.video[0]
            info["fps"] = stream_fps(vs)
            info["frames"] = sum(1 for _ in container.decode(vs))
    with open_media(path, "Video") as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            declared = stream.duration * stream.time_base if stream.duration is not None else None
            audio = decode_audio(container, path, "Video")
            info["audio_samples"] = int(audio["waveform"].shape[-1])
            info["sample_rate"] = audio["sample_rate"]
            # The stream's declared duration: AAC decoders hand back whole 1024-sample frames, the container
            # records the exact length that was encoded.
            info["audio_seconds"] = (float(declared) if declared is not None
                                     else info["audio_samples"] / audio["sample_rate"])
    return info

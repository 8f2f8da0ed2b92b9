"""ComfyUI's VIDEO interface for the videos the pack hands out where comfy_api is absent (tests, plain Python, the
benchmarks); inside ComfyUI, comfy_bridge returns comfy_api's own VideoFromFile / VideoFromComponents instead.

- ``FileVideo``: a video file (core VideoFromFile): ``get_stream_source()`` gives its path, so MuseTalk nodes read
  it lazily; ``get_components()`` decodes everything.
- ``ComponentsVideo``: frames in memory (core VideoFromComponents), the IMAGE path's VIDEO output.
- ``AvatarVideo``: a saved avatar's frames (LoadMuseTalkAvatar's VIDEO, in ComfyUI too: there is no core class for
  it). It is a FrameSource, so MuseTalk nodes read its frames.u8 lazily; ComfyUI's video nodes get the methods
  above (``get_components`` reads every frame, as VideoFromComponents holds them).

The library takes any object with this interface, duck-typed (musetalk_core.io.sources.as_source), so neither
class belongs to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from musetalk_core.io import media_open, video_read, video_write
from musetalk_core.realtime.avatar import AvatarFrames


@dataclass
class VideoParts:
    """What ComfyUI's VideoComponents holds: IMAGE frames, AUDIO, exact frame rate."""

    images: torch.Tensor
    frame_rate: Fraction
    audio: Optional[dict] = None
    metadata: Optional[dict] = None


class FileVideo:
    """A video file with ComfyUI's VIDEO methods."""

    def __init__(self, path):
        self.path = Path(path)

    def get_stream_source(self) -> str:
        return str(self.path)

    def get_components(self) -> VideoParts:
        video = video_read.read_video(self.path)
        return VideoParts(video.frames.float() / 255.0, video.fps, video.audio)

    def _stream(self):
        from musetalk_core.io.orientation import of_file

        with media_open.open_media(self.path, "Video") as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            fps = media_open.stream_fps(stream)
        height, width = of_file(self.path).size(height, width)  # as displayed (portrait phone videos)
        return width, height, fps

    def get_dimensions(self) -> tuple:
        w, h, _ = self._stream()
        return w, h

    def get_frame_rate(self) -> Fraction:
        return self._stream()[2]

    def get_frame_count(self) -> int:
        from musetalk_core.io.sources import VideoFileSource

        source = VideoFileSource(self.path)
        source.close()
        return source.num_frames

    def get_duration(self) -> float:
        return self.get_frame_count() / float(self.get_frame_rate())

    def get_container_format(self) -> str:
        with media_open.open_media(self.path, "Video") as container:
            return container.format.name

    def save_to(self, path, format: Any = None, codec: Any = None, metadata: Optional[dict] = None) -> None:
        import shutil

        shutil.copyfile(self.path, path)


class ComponentsVideo:
    """Frames in memory with ComfyUI's VIDEO methods."""

    def __init__(self, images: torch.Tensor, audio: Optional[dict], frame_rate: Fraction):
        self.parts = VideoParts(images, Fraction(frame_rate), audio)

    def get_components(self) -> VideoParts:
        return self.parts

    def get_dimensions(self) -> tuple:
        return int(self.parts.images.shape[2]), int(self.parts.images.shape[1])

    def get_frame_rate(self) -> Fraction:
        return self.parts.frame_rate

    def get_frame_count(self) -> int:
        return int(self.parts.images.shape[0])

    def get_duration(self) -> float:
        return self.get_frame_count() / float(self.parts.frame_rate)

    def save_to(self, path, format: Any = None, codec: Any = None, metadata: Optional[dict] = None) -> None:
        video_write.write_video(path, self.parts.images, self.parts.frame_rate, self.parts.audio)


class AvatarVideo(AvatarFrames):
    """An avatar's frames.u8 as a VIDEO and a FrameSource (see the module docstring)."""

    def get_components(self) -> VideoParts:
        frames = torch.from_numpy(np.ascontiguousarray(self.avatar.frames))
        return VideoParts(frames.float() / 255.0, self.fps, None)

    def get_dimensions(self) -> tuple:
        h, w = self.frame_size
        return int(w), int(h)

    def get_frame_rate(self) -> Fraction:
        return self.fps

    def get_frame_count(self) -> int:
        return int(self.num_frames)

    def get_duration(self) -> float:
        return self.num_frames / float(self.fps)

    def get_container_format(self) -> str:
        return "mp4"

    def get_stream_source(self) -> str:
        """An H.264 file of the frames (written once, removed with this object): for nodes that want a file."""
        if getattr(self, "_file", None) is None:
            import tempfile
            import weakref

            handle, name = tempfile.mkstemp(prefix="musetalk-avatar-", suffix=".mp4")
            os.close(handle)
            self.save_to(name)
            self._file = name
            weakref.finalize(self, _remove_quietly, name)
        return self._file

    def save_to(self, path, format: Any = None, codec: Any = None, metadata: Optional[dict] = None) -> None:
        """H.264 (crf 18) of the frames, written chunk by chunk; ``path`` a file name or a writable binary
        buffer (ComfyUI's API nodes upload from one)."""
        if hasattr(path, "write"):
            import tempfile

            with tempfile.TemporaryDirectory(prefix="musetalk-avatar-") as folder:
                target = Path(folder) / "video.mp4"
                self.save_to(target)
                path.write(target.read_bytes())
            return
        from musetalk_core.realtime.avatar import FRAME_CHUNK_PIXELS

        h, w = self.frame_size
        step = max(1, FRAME_CHUNK_PIXELS // (h * w))  # 64 frames at 720p: memory bounded at any size
        with video_write.VideoWriter(path, self.fps, w, h) as writer:
            for start in range(0, self.num_frames, step):
                writer.write(self.read(range(start, min(start + step, self.num_frames))))
            writer.finish(None)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass

"""ComfyUI's VIDEO interface for the videos the pack hands out where comfy_api is absent (tests, plain Python, the
benchmarks); inside ComfyUI, comfy_bridge returns comfy_api's own VideoFromFile / VideoFromComponents instead.

- ``FileVideo``: a video file (core VideoFromFile): ``get_stream_source()`` gives its path, so MuseTalk nodes read
  it lazily; ``get_components()`` decodes everything.
- ``ComponentsVideo``: frames in memory (core VideoFromComponents), the IMAGE path's VIDEO output.

The library takes any object with this interface, duck-typed (musetalk_core.io.sources.as_source), so neither
class belongs to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import torch

from musetalk_core.io import media_open, video_read, video_write


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

"""Where the blend loop's frames come from and go to (ChunkBlender.blend_into).

- ``ImageFrames``: an in-memory IMAGE batch as a frame source that reads the caller's values as they are (float
  pixels are not rounded to uint8 on the way in, as io.sources.TensorSource does);
- ``ImageSink``: the blended chunks collected into one float32 IMAGE; pixels no face touches keep those values;
- ``VideoSink``: the blended chunks as uint8 frames to an open VideoWriter, keeping evenly sampled preview frames.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from ..io.sources import FrameSource


class ImageFrames(FrameSource):
    """An RGB IMAGE batch (B, H, W, 3) read as it is: each read is a fresh copy, the batch is never modified."""

    def __init__(self, images: torch.Tensor, name: str = "images"):
        self.images = images
        self.name = name
        self.num_frames = int(images.shape[0])
        self.frame_size = (int(images.shape[1]), int(images.shape[2]))

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        return self.images[torch.as_tensor(list(indices), dtype=torch.long)]


class ImageSink:
    """float32 IMAGE (T, H, W, 3) on ``device``, filled chunk by chunk (``frames`` once every chunk is in)."""

    float_frames = True

    def __init__(self, num_frames: int, height: int, width: int, device: torch.device):
        self.frames = torch.empty((num_frames, height, width, 3), dtype=torch.float32, device=device)

    def put(self, start: int, stop: int, frames: torch.Tensor) -> None:
        self.frames[start:stop] = frames.to(self.frames.device)


class VideoSink:
    """uint8 chunks to ``writer`` (io.video_write.VideoWriter), in order; ``preview()``: up to 16 output frames of the
    ``num_frames`` sampled evenly, kept already at preview size."""

    float_frames = False

    def __init__(self, writer, num_frames: int):
        from ..io.previews import Downscaled, sample_indices

        self.writer = writer
        self.shown = sample_indices(num_frames)
        self.kept: Dict[int, np.ndarray] = Downscaled()

    def put(self, start: int, stop: int, frames: torch.Tensor) -> None:
        self.writer.write(frames)
        for i in self.shown:
            if start <= i < stop:
                self.kept[i] = frames[i - start].numpy()

    def preview(self) -> torch.Tensor:
        from ..io.previews import strip

        return strip(self.kept, self.shown)

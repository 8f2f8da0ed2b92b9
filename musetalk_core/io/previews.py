"""Small previews of long videos: a few frames sampled evenly over the video, downscaled.

A preview that copied every frame as float32 IMAGE (12 bytes per pixel) would cost more memory than the rest of
the pipeline; this one costs at most PREVIEW_FRAMES frames of at most PREVIEW_SIDE pixels on the longer side.
Clips of up to PREVIEW_FRAMES frames show every frame; frames up to PREVIEW_SIDE keep their size.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

PREVIEW_FRAMES = 16
PREVIEW_SIDE = 768


def sample_indices(n: int, count: int = PREVIEW_FRAMES) -> List[int]:
    """Every frame when n <= count, else ``count`` frames spread evenly from the first to the last."""
    if n <= count:
        return list(range(n))
    return sorted(set(int(round(v)) for v in np.linspace(0, n - 1, count)))


def downscale(frame: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    h, w = frame.shape[:2]
    if max(h, w) <= side:
        return frame
    import cv2

    scale = side / max(h, w)
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)


class Downscaled(dict):
    """{frame index: uint8 frame} holding each frame as ``strip`` shows it (downscaled, and a copy: never a view
    of a bigger array): 16 preview frames of a 4K video cost 28 MB instead of 400 MB while the video streams."""

    def __setitem__(self, index, frame) -> None:
        if frame is not None:
            small = downscale(frame)
            frame = np.array(frame, copy=True) if small is frame else small
        super().__setitem__(index, frame)


def strip(frames: Dict[int, np.ndarray], order: Sequence[int]) -> torch.Tensor:
    """IMAGE float (k, h, w, 3) of the given uint8 frames, downscaled alike."""
    picked = [downscale(frames[i]) for i in order]
    return torch.from_numpy(np.stack(picked)).to(torch.float32).div_(255.0)

"""The reference's 256x256 VAE crop of a face box (spec §4.1), and whether a box can be cropped at all."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

CROP_SIZE = 256


def crop_face(frame: np.ndarray, box: Sequence[int]) -> Optional[np.ndarray]:
    """The reference's VAE crop: cv2.resize(frame[y1:y2, x1:x2], (256, 256), INTER_LANCZOS4).

    Numpy slicing clips a box that leaves the frame at x2/y2 (the crop is then smaller than the box and the resize
    stretches it, exactly as the reference). Returns None when nothing of the box is inside the frame.
    """
    import cv2

    region = box_region(frame, box)
    if region is None:
        return None
    return cv2.resize(np.ascontiguousarray(region), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)


def box_region(frame: np.ndarray, box: Sequence[int]) -> Optional[np.ndarray]:
    """The part of ``frame`` the reference crops for ``box`` (a view), or None when nothing of it can be cropped."""
    x1, y1, x2, y2 = (int(v) for v in box)
    region = frame[y1:y2, x1:x2]
    if region.shape[0] == 0 or region.shape[1] == 0 or x1 < 0 or y1 < 0:
        return None
    return region

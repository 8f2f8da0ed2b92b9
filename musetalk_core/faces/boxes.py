"""The crop box from 68 face landmarks, exactly as the reference's get_landmark_and_bbox (pipeline spec §3.3-3.4).

Pure integer logic on numpy int32 landmarks, one frame at a time (there is nothing to vectorise worth the risk of
drifting from the reference's integer semantics). Also the "adjustable range" report as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

PLACEHOLDER = (0, 0, 0, 0)  # the reference's coord_placeholder for frames without a face


@dataclass(frozen=True)
class FrameBox:
    """The box of one frame with a face, and what the reference collects on the way."""

    box: Tuple[int, int, int, int]  # final crop box (after the v1.5 extra_margin when asked)
    landmark_box: Tuple[int, int, int, int]  # the landmark box before the fallback check
    used_fallback: bool  # True when the S3FD box replaced an unusable landmark box ("error bbox")
    range_minus: int  # lm[30].y - lm[29].y, before the shift
    range_plus: int  # lm[29].y - lm[28].y, before the shift


def landmark_box(landmarks: np.ndarray, detector_box: Sequence[int], bbox_shift: int = 0,
                 extra_margin: Optional[int] = None, frame_height: Optional[int] = None) -> FrameBox:
    """The reference's box for one frame whose S3FD box is ``detector_box``.

    ``landmarks``: (68, 2) int32 (iBUG-68 order, already truncated with astype(np.int32)); not modified.
    ``bbox_shift`` follows the reference's in-place semantics: landmark 29 itself is moved, so the shifted point
    takes part in max(y) (a large positive shift can make it the lowest point).
    ``extra_margin`` (v1.5): y2 = min(y2 + extra_margin, frame_height) on the final box, fallback included, as the
    reference applies it after the fact when cropping and blending.
    """
    lm = np.array(landmarks, dtype=np.int32, copy=True).reshape(68, 2)
    range_minus = int(lm[30, 1] - lm[29, 1])
    range_plus = int(lm[29, 1] - lm[28, 1])
    half = lm[29]  # a view: the shift mutates lm[29], as in the reference
    if bbox_shift != 0:
        half[1] = int(bbox_shift) + half[1]
    half_face_dist = np.max(lm[:, 1]) - half[1]
    upper = max(0, half[1] - half_face_dist)
    box = (int(np.min(lm[:, 0])), int(upper), int(np.max(lm[:, 0])), int(np.max(lm[:, 1])))
    x1, y1, x2, y2 = box
    fallback = y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0
    final = tuple(int(v) for v in detector_box) if fallback else box
    if extra_margin is not None:
        if frame_height is None:
            raise ValueError("frame_height is needed with extra_margin")
        final = (final[0], final[1], final[2], min(final[3] + int(extra_margin), int(frame_height)))
    return FrameBox(final, box, bool(fallback), range_minus, range_plus)


def bbox_range_text(num_frames: int, range_minus: Sequence[int], range_plus: Sequence[int], bbox_shift: int) -> str:
    """The reference's report: ``Total frame:「N」 Manually adjust range : [ -A~B ] , the current value: S``.

    A = int(mean(range_minus)), B = int(mean(range_plus)) over frames with a face (Python float mean, then int()
    truncation toward zero, as the reference). With no face in any frame the reference divides by zero; we say so.
    """
    if len(range_minus) == 0:
        return (f"Total frame:「{num_frames}」 No face was found in any frame, so there is no adjustable range "
                f"(the current value: {bbox_shift}).")
    a = int(sum(int(v) for v in range_minus) / len(range_minus))
    b = int(sum(int(v) for v in range_plus) / len(range_plus))
    return (f"Total frame:「{num_frames}」 Manually adjust range : [ -{a}~{b} ] , "
            f"the current value: {bbox_shift}")

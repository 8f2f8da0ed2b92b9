"""The face preview: box, blend square, landmarks and mask drawn over a frame, and the no-face message."""

from __future__ import annotations

import numpy as np


def _line_width(h: int, w: int) -> int:
    return max(1, int(round(min(h, w) / 320)))


def draw_preview(frame: np.ndarray, box, crop_box, landmarks, mask) -> np.ndarray:
    """One preview frame: the blend mask (upper half cut at ratio 0.5, unblurred) tinted green, the expanded
    blend box in blue, the VAE crop box in red, its middle line (where the masked lower half starts: bbox_shift
    moves it) in yellow, and the 68 landmarks as white dots."""
    import cv2

    out = frame.copy()
    h, w = out.shape[:2]
    lw = _line_width(h, w)
    xs, ys, xe, ye = (int(v) for v in crop_box)
    if mask is not None and mask.size:
        m = mask.copy()
        m[: int(m.shape[0] * 0.5)] = 0
        fx0, fx1, fy0, fy1 = max(xs, 0), min(xe, w), max(ys, 0), min(ye, h)
        if fx1 > fx0 and fy1 > fy0:
            a = m[fy0 - ys:fy1 - ys, fx0 - xs:fx1 - xs, None].astype(np.float32) * (0.45 / 255.0)
            region = out[fy0:fy1, fx0:fx1].astype(np.float32)
            tint = np.array([0, 255, 0], np.float32)
            out[fy0:fy1, fx0:fx1] = np.clip(region * (1 - a) + tint * a + 0.5, 0, 255).astype(np.uint8)
    cv2.rectangle(out, (xs, ys), (xe - 1, ye - 1), (60, 120, 255), lw)
    x1, y1, x2, y2 = (int(v) for v in box)
    cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), (255, 40, 40), lw)
    mid = y1 + (y2 - y1) // 2
    cv2.line(out, (x1, mid), (x2 - 1, mid), (255, 230, 0), lw)
    for x, y in np.asarray(landmarks).reshape(-1, 2):
        if x >= 0 and y >= 0:
            cv2.circle(out, (int(x), int(y)), lw, (255, 255, 255), -1)
    return out


def no_face_warning(num_frames: int, detected: bool = False, detector_scale: float = 1.0) -> str:
    """The one message for a video without a usable face: what happens (the video passes through unchanged, with
    the new audio, which is normal for cutaways) and what to check. ``detected``: the detector found faces but
    none could be cropped."""
    if detected:
        why = ("faces were detected but every face box lay outside the frame or was too small to crop "
               "(check bbox_shift / extra_margin and the preview)")
    else:
        why = ("the face detector (S3FD) found none: faces that are very small, turned away (profile or back of "
               "the head), covered or very dark are not detected")
        if float(detector_scale) < 1.0:
            why += f"; detector_scale is {float(detector_scale):g}: set it to 1 so that small faces are seen"
        else:
            why += "; for small faces, upscale the frames before this node"
    what = "no usable face was found" if detected else "no face was found"
    return (f"FaceDetectAndParse: {what} in any of the {num_frames} frames, so the video is passed "
            f"through unchanged (every frame, with the new audio). Why: {why}.")

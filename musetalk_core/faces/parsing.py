"""Blend-mask material from BiSeNet face parsing, exactly as the reference builds it (spec §6.2, §7.1-7.3).

Per source frame with a face box (x, y, x1, y1):
1. the expanded square crop box [xc-s, yc-s, xc+s, yc+s], s = int(max(w, h) // 2 * expand) (``crop_box``);
2. that 2s x 2s crop of the frame, black where it leaves the frame (``expanded_crop``, = PIL ``Image.crop``);
3. PIL's antialiased BILINEAR resize to 512x512, ImageNet normalisation, BiSeNet, argmax (``parser_input`` and
   ``BiSeNet.parse``; batched on the device);
4. the mode mask on the 512 label map: raw / neck / jaw (``labels_to_mask``);
5. PIL BICUBIC resize back to 2s x 2s and only the face-box rectangle kept (``mask_material``).
The result is what MuseTalkFaces.masks stores. The blend stage then zeroes the rows above the upper boundary and
blurs (``finish_mask`` reproduces that for tests and the preview).

All image arrays here are numpy uint8 RGB on the CPU: the resamplers that must match bit for bit are PIL's and cv2's.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ..errors import InputError

PARSING_MODES = ("auto", "jaw", "raw", "neck")
EXPAND = 1.5  # HEAD uses 1.5 for both versions (v1.0-original used 1.2)
PARSE_SIZE = 512

SKIN, NOSE = 1, 10
MOUTH_AND_LIPS = (11, 12, 13)
RAW_CLASSES = (1, 11, 12, 13)
NECK_CLASSES = (1, 11, 12, 13, 14)


def resolve_mode(mode: str, version: str) -> str:
    """auto -> jaw for v15, raw for v1 (the reference's defaults)."""
    if mode not in PARSING_MODES:
        raise InputError(f"parsing_mode '{mode}' is unknown: choose one of {', '.join(PARSING_MODES)}.")
    if mode == "auto":
        return "jaw" if version == "v15" else "raw"
    return mode


def jaw_kernel() -> np.ndarray:
    """The 33x33 dilation element of jaw mode: empty top 10 rows, a cone widening downward, then a 21-wide tail."""
    size, cone, centre = 33, 21, 16
    kernel = np.zeros((size, size), np.uint8)
    for row in range(cone // 2, cone):
        half = row - cone // 2
        kernel[row, centre - half:centre + half + 1] = 1
    half = (cone - 1) - cone // 2  # the widest cone row
    kernel[cone:, centre - half:centre + half + 1] = 1
    return kernel


_KERNELS = {}


def _mask_kernels() -> dict:
    """{"cheek", "jaw"} structuring elements, made once. Filled in a new dict that replaces the cache in one
    assignment: pool threads that call this at the same time never see one kernel without the other."""
    global _KERNELS
    if not _KERNELS:
        import cv2

        _KERNELS = {"jaw": jaw_kernel(), "cheek": cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))}
    return _KERNELS


def cheek_mask(left_cheek_width: int, right_cheek_width: int) -> np.ndarray:
    """512x512: 255 on the outer cheek columns 0..256-left and 256+right..511 (filled, inclusive rectangles)."""
    import cv2

    mask = np.zeros((PARSE_SIZE, PARSE_SIZE), np.uint8)
    c = PARSE_SIZE // 2
    cv2.rectangle(mask, (0, 0), (c - int(left_cheek_width), PARSE_SIZE), 255, -1)
    cv2.rectangle(mask, (c + int(right_cheek_width), 0), (PARSE_SIZE, PARSE_SIZE), 255, -1)
    return mask


def labels_to_mask(labels: np.ndarray, mode: str, left_cheek_width: int = 90,
                   right_cheek_width: int = 90) -> np.ndarray:
    """One 512x512 label map -> uint8 mask (255 = blend region, 0 elsewhere) for mode raw / neck / jaw."""
    labels = np.asarray(labels)
    if mode == "raw":
        keep = np.isin(labels, RAW_CLASSES)
    elif mode == "neck":
        keep = np.isin(labels, NECK_CLASSES)
    elif mode == "jaw":
        import cv2

        kernels = _mask_kernels()
        skin = (labels == SKIN).astype(np.uint8) * 255
        dilated = cv2.dilate(skin, kernels["jaw"], iterations=1)
        eroded = cv2.erode(dilated, kernels["cheek"], iterations=2)
        cheeks = cheek_mask(left_cheek_width, right_cheek_width)
        region = (eroded & cheeks) | (dilated & ~cheeks)
        keep = ((region == 255) & (labels != NOSE)) | np.isin(labels, MOUTH_AND_LIPS)
    else:
        raise InputError(f"parsing mode '{mode}' is unknown: use raw, jaw or neck.")
    return keep.astype(np.uint8) * 255


def crop_box(box: Sequence[int], expand: float = EXPAND) -> Tuple[list, int]:
    """The reference's get_crop_box: square [xc-s, yc-s, xc+s, yc+s], s = int(max(w, h) // 2 * expand)."""
    x, y, x1, y1 = (int(v) for v in box)
    xc, yc = (x + x1) // 2, (y + y1) // 2
    s = int(max(x1 - x, y1 - y) // 2 * expand)
    return [xc - s, yc - s, xc + s, yc + s], s


def _overlap(start: int, stop: int, limit: int) -> Tuple[int, int]:
    return max(start, 0), min(stop, limit)


def expanded_crop(frame: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """``frame[y0:y1, x0:x1]`` for a box that may leave the frame; outside pixels are black (PIL Image.crop)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = frame.shape[:2]
    out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)) + frame.shape[2:], frame.dtype)
    sx0, sx1 = _overlap(x0, x1, w)
    sy0, sy1 = _overlap(y0, y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return out


def parser_input(crop_rgb: np.ndarray) -> np.ndarray:
    """2s x 2s RGB crop -> 512x512 RGB with PIL's antialiased BILINEAR (the reference's exact resampler)."""
    from PIL import Image

    return np.asarray(Image.fromarray(crop_rgb).resize((PARSE_SIZE, PARSE_SIZE), Image.BILINEAR))


def mask_material(mask512: np.ndarray, crop: Sequence[int], face_box: Sequence[int]) -> np.ndarray:
    """512 mode mask -> uint8 (2s, 2s): PIL BICUBIC resize to the crop size, keep only the face-box rectangle."""
    from PIL import Image

    xs, ys, xe, ye = (int(v) for v in crop)
    side = xe - xs
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(mask512, np.uint8)).resize((side, side),
                                                                                        Image.BICUBIC))
    x, y, x1, y1 = (int(v) for v in face_box)
    out = np.zeros((side, side), np.uint8)
    cx0, cx1 = _overlap(x - xs, x1 - xs, side)
    cy0, cy1 = _overlap(y - ys, y1 - ys, side)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0:cy1, cx0:cx1] = resized[cy0:cy1, cx0:cx1]
    return out


def blur_kernel_size(side: int, blur_factor: float) -> int:
    """The reference's k = int(blur_factor * side // 2 * 2) + 1 (left to right: (f*side)//2*2)."""
    return int(blur_factor * side // 2 * 2) + 1


def finish_mask(mask: np.ndarray, upper_boundary_ratio: float = 0.5, blur_factor: float = 0.1) -> np.ndarray:
    """Reference steps 4-5 on a stored mask: zero the rows above int(2s * ratio), then cv2.GaussianBlur(k, k, 0).

    The blend stage owns this step; it lives here too so tests and the preview can reproduce
    get_image_prepare_material (blur 0.1) or get_image (blur 0.05).
    """
    import cv2

    side = mask.shape[0]
    top = int(side * upper_boundary_ratio)
    cut = np.zeros_like(mask)
    cut[top:] = mask[top:]
    k = blur_kernel_size(side, blur_factor)
    return cv2.GaussianBlur(cut, (k, k), 0)


def parse_labels(net, inputs: Sequence[np.ndarray], device=None, one_by_one=None):
    """BiSeNet argmax labels for a batch of 512x512 RGB uint8 inputs -> uint8 numpy (B, 512, 512).

    On an accelerator the batch runs as one call. On the CPU frames go one at a time (``one_by_one=None`` = auto):
    CPU convolution kernels change their summation order with the batch size, which flips the argmax at rare
    near-tie pixels; one at a time the label maps are identical to the reference's (which parses one crop per
    call), and batching gains nothing on the CPU anyway.
    """
    import torch

    batch = torch.from_numpy(np.stack(inputs, 0))
    if device is not None:
        batch = batch.to(device)
    if one_by_one is None:
        one_by_one = batch.device.type == "cpu"
    with torch.inference_mode():
        if one_by_one:
            return np.stack([net.parse(batch[i:i + 1]).cpu().numpy()[0] for i in range(batch.shape[0])], 0)
        return net.parse(batch).cpu().numpy()


def face_masks(net, frames: Sequence[np.ndarray], face_boxes: Sequence[Sequence[int]], mode: str,
               left_cheek_width: int = 90, right_cheek_width: int = 90, expand: float = EXPAND, device=None,
               return_labels: bool = False, one_by_one=None):
    """Mask material for a batch of frames with face boxes (one parser batch).

    Returns (crop_boxes list, masks list of uint8 (2s, 2s)[, labels (B, 512, 512)]). A box too small for a crop
    (s == 0) gets an empty mask and no parser input.
    """
    from ..cpu_pool import map_frames

    boxes, keep = [], []
    for i, box in enumerate(face_boxes):
        cbox, s = crop_box(box, expand)
        boxes.append(cbox)
        if s > 0:
            keep.append(i)
    inputs = map_frames(lambda i: parser_input(expanded_crop(frames[i], boxes[i])), keep)
    masks = [np.zeros((2 * max(crop_box(b, expand)[1], 0),) * 2, np.uint8) for b in face_boxes]
    labels = parse_labels(net, inputs, device, one_by_one) if inputs else np.zeros((0, PARSE_SIZE, PARSE_SIZE), np.uint8)

    def material(j: int, i: int) -> np.ndarray:
        m512 = labels_to_mask(labels[j], mode, left_cheek_width, right_cheek_width)
        return mask_material(m512, boxes[i], face_boxes[i])

    for i, mask in zip(keep, map_frames(material, range(len(keep)), keep)):
        masks[i] = mask
    if return_labels:
        return boxes, masks, labels
    return boxes, masks

"""MuseTalk's paste-back: the 256 px generated face into the face box, through the parsing mask (``Blender``).

Per output frame i (source frame j = generated.source_index[i]) this is the reference's compositing
(musetalk-pipeline.md §4.6, §7.2, §7.3), batched on the device:

1. the 256x256 generated face resized to the face box with cv2 INTER_LINEAR on uint8 (blend_ops.resize_linear);
2. the parsing mask of frame j (faces.masks[j], already limited to the face box) with every row above
   ``int(2s * upper_boundary_ratio)`` zeroed, then cv2.GaussianBlur with ``k = int(blur_factor * 2s // 2 * 2) + 1``
   (computed once per source frame and cached for the run);
3. face_large = the crop box of the frame (black outside it) with the face pasted into the box, then pasted into
   the frame through the mask with PIL's integer arithmetic, clipped to the frame (blend_ops.compose).

Output pixels that the mask does not touch are the caller's float values unchanged, so frames without a face (and
silent frames with silence handling on) are the input frames bit for bit.

Streamed uint8 frames (the command line, the VIDEO path, batch jobs: ``Blender.stream``) take a shorter way to the
same pixels: only each face's blend square (its crop box within the frame) goes to the device and only the
composited pixels come back into the uint8 frame; the frames are never converted to float.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from . import kernels as blend_ops
from ..errors import InputError
from ..io.spill import mask_shape
from ..types import MuseTalkFaces
from .chunk_loop import ChunkBlender, FacesOf

log = logging.getLogger(__name__)

Geometry = Tuple[Tuple[int, ...], Tuple[int, ...]]  # (face box, crop box) of a source frame, x1 y1 x2 y2


def _face_geometry(faces: MuseTalkFaces, j: int) -> Optional[Geometry]:
    box = tuple(int(v) for v in faces.boxes[j].tolist())
    crop = tuple(int(v) for v in faces.crop_boxes[j].tolist())
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box, crop


class Blender(ChunkBlender):
    """ChunkBlender with MuseTalk's box paste-back.

    The face box and crop box of every source frame used are checked once here; blurred masks are cached for the
    source frames of recent chunks only, so memory does not grow with the video (re-blurring is exact, so the
    cache never changes a pixel).
    """

    MASK_CACHE = 64  # blurred masks kept (source frames); ping-pong revisits recompute the rest
    MASK_CACHE_BYTES = 64 << 20  # ... and at most this many bytes of them (close-ups in 4K have 5 MB masks)
    COMPOSE_PIXELS = 2_000_000  # mask pixels per compose call (a 4K close-up's mask alone is 2000 x 2000)

    def __init__(self, faces: MuseTalkFaces, source_index: torch.Tensor, generated_has_face: torch.Tensor,
                 device: torch.device, *, silent: Optional[torch.Tensor] = None, blur_factor: float = 0.05,
                 upper_boundary_ratio: float = 0.5, silence_handling: bool = False, silence_fade_frames: int = 3):
        super().__init__(source_index, generated_has_face, device, silent=silent, silence_handling=silence_handling,
                         silence_fade_frames=silence_fade_frames)
        self.faces = faces
        self.blur_factor = float(blur_factor)
        self.upper_boundary_ratio = float(upper_boundary_ratio)
        source = self.source
        active = self.active & faces.has_face.detach().to("cpu").bool()[source].numpy()
        self.geometry = self._check_geometry(source[torch.from_numpy(active)].tolist())
        self.active = active & np.array([int(j) in self.geometry for j in source.tolist()], dtype=bool)
        self._blurred: "OrderedDict[int, torch.Tensor]" = OrderedDict()
        self._blurred_bytes = 0

    def _check_geometry(self, used) -> Dict[int, Geometry]:
        geometry: Dict[int, Geometry] = {}
        for j in sorted(set(int(v) for v in used)):
            geo = _face_geometry(self.faces, j)
            if geo is None:
                log.warning("BlendAndAssemble: source frame %d has an empty face box; it is passed through.", j)
                continue
            box, crop = geo
            side = crop[2] - crop[0]
            shape = mask_shape(self.faces.masks, j)
            if side != crop[3] - crop[1] or side < 0:
                raise InputError(f"'faces': the blend box of frame {j} is not square ({crop}); "
                                 "re-run FaceDetectAndParse.")
            if shape is None or tuple(shape) != (side, side):
                raise InputError(f"'faces': frame {j} has a face but its blend mask is {shape}, expected "
                                 f"({side}, {side}). Re-run FaceDetectAndParse.")
            geometry[j] = geo
        return geometry

    def _masks_for(self, js: List[int]) -> None:
        todo = [j for j in dict.fromkeys(js) if j not in self._blurred]
        for j in dict.fromkeys(js):
            if j in self._blurred:
                self._blurred.move_to_end(j)
        if not todo:
            return
        cut, ks = [], []
        for j in todo:
            m = self.faces.masks[j].to(device=self.device, dtype=torch.uint8)
            side = int(m.shape[0])
            top = int(side * self.upper_boundary_ratio)
            if top > 0:
                m = m.clone()
                m[:top] = 0
            cut.append(m)
            ks.append(blend_ops.blur_kernel_size(self.blur_factor, side))
        for j, m in zip(todo, blend_ops.gaussian_blur_masks(cut, ks)):
            self._blurred[j] = m
            self._blurred_bytes += m.numel() * m.element_size()
        # the oldest go first; the masks of this call (the newest) always stay
        while len(self._blurred) > len(js) and (len(self._blurred) > self.MASK_CACHE
                                                or self._blurred_bytes > self.MASK_CACHE_BYTES):
            _, old = self._blurred.popitem(last=False)
            self._blurred_bytes -= old.numel() * old.element_size()

    def blend_uint8(self, start: int, stop: int, raw: torch.Tensor, generated_faces: FacesOf) -> torch.Tensor:
        """uint8 (stop - start, H, W, 3) on the CPU: ``blend`` rounded as the video writer rounds it.

        Source frames as uint8 RGB on the CPU (what every FrameSource reads; the chunk is written in place) take
        the short way with the same pixels: only the blend squares (crop box within the frame) go to the device,
        and only the composited pixels come back. The frames are never converted to float (16 float 1080p frames
        are 400 MB) and a GPU never sees the rest of the frame. The pixels are the same because the float way
        changes no pixel outside the masks (round(x / 255 * 255) = x for every uint8 x) and converts the
        composite exactly back (see tests/test_blend.py)."""
        if raw.dtype == torch.uint8 and raw.ndim == 4 and raw.shape[-1] == 3 and raw.device.type == "cpu":
            for group in self._compose_groups(self.rows(start, stop)):
                self._compose_squares(raw, start, group, generated_faces)
            return raw
        return super().blend_uint8(start, stop, raw, generated_faces)

    def paste(self, chunk: torch.Tensor, start: int, rows: List[int], generated_faces: FacesOf) -> None:
        for group in self._compose_groups(rows):
            self._compose(chunk, start, group, generated_faces)

    def _compose_groups(self, rows: List[int]) -> List[List[int]]:
        """rows in groups of at most COMPOSE_PIXELS mask pixels (at least one frame each)."""
        groups, group, pixels = [], [], 0
        for i in rows:
            crop = self.geometry[int(self.source[i])][1]
            side = max(0, crop[2] - crop[0])
            if group and pixels + side * side > self.COMPOSE_PIXELS:
                groups.append(group)
                group, pixels = [], 0
            group.append(i)
            pixels += side * side
        if group:
            groups.append(group)
        return groups

    def _compose_squares(self, frames_u8: torch.Tensor, start: int, rows: List[int], generated_faces) -> None:
        """``_compose`` for uint8 CPU frames (output frames start.., written in place): the blend squares are
        copied out, composited on the device, and the changed pixels written back."""
        device = self.device
        h, w = int(frames_u8.shape[1]), int(frames_u8.shape[2])
        js = [int(self.source[i]) for i in rows]
        squares = []  # (y0, y1, x0, x1): the crop box within the frame
        for j in js:
            cx1, cy1, cx2, cy2 = self.geometry[j][1]
            squares.append((max(cy1, 0), min(cy2, h), max(cx1, 0), min(cx2, w)))
        sh = max(max(0, y1 - y0) for y0, y1, _, _ in squares)
        sw = max(max(0, x1 - x0) for _, _, x0, x1 in squares)
        if sh == 0 or sw == 0:  # every crop box lies outside its frame: nothing to paste
            return
        batch = torch.zeros((len(rows), sh, sw, 3), dtype=torch.uint8)
        for k, (i, (y0, y1, x0, x1)) in enumerate(zip(rows, squares)):
            if y1 > y0 and x1 > x0:  # a crop box wholly outside its frame has nothing to copy
                batch[k, :y1 - y0, :x1 - x0] = frames_u8[i - start, y0:y1, x0:x1]
        origin = torch.tensor([[x0, y0, x0, y0] for y0, _, x0, _ in squares], dtype=torch.long)
        batch = batch.to(device)
        bi, py, px, vals = self._composite(batch, rows, js, generated_faces, origin.to(device))
        # the padding right and below a smaller square is not frame: a crop box leaving the frame reaches into it
        extent = torch.tensor([[y1 - y0, x1 - x0] for y0, y1, x0, x1 in squares], dtype=torch.long, device=device)
        inside = (py < extent[bi, 0]) & (px < extent[bi, 1])
        if not bool(inside.all()):
            bi, py, px, vals = bi[inside], py[inside], px[inside], vals[inside]
        if not bi.numel():
            return
        w_rows = torch.tensor([self.weights[i] for i in rows], dtype=torch.float32, device=device)[bi]
        fading = w_rows < 1.0
        if bool(fading.any()):  # the float way's cross-fade, rounded as to_uint8 rounds, on those pixels only
            old = batch[bi[fading], py[fading], px[fading]].to(torch.float32).div_(255.0)
            new = vals[fading].to(torch.float32) / 255.0
            mixed = old + w_rows[fading][:, None] * (new - old)
            vals = vals.clone()
            vals[fading] = mixed.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
        bi, py, px, vals = bi.cpu(), py.cpu(), px.cpu(), vals.cpu()
        oy = origin[:, 1][bi]
        ox = origin[:, 0][bi]
        local = torch.tensor([i - start for i in rows], dtype=torch.long)[bi]
        frames_u8[local, py + oy, px + ox] = vals

    def _composite(self, frames: torch.Tensor, rows: List[int], js: List[int], generated_faces,
                   origin: Optional[torch.Tensor] = None):
        """blend_ops.compose for output frames ``rows`` (source frames ``js``) over ``frames`` (one per row, on the
        device; ``origin`` (x, y, x, y) per row: where ``frames`` starts in the frame, for squares cut out)."""
        device = self.device
        geometry = self.geometry
        self._masks_for(js)
        gen = generated_faces(rows).to(device=device, dtype=torch.uint8)
        boxes = torch.tensor([geometry[j][0] for j in js], dtype=torch.long, device=device)
        crops = torch.tensor([geometry[j][1] for j in js], dtype=torch.long, device=device)
        if origin is not None:
            boxes, crops = boxes - origin, crops - origin
        sizes = [(b[2] - b[0], b[3] - b[1]) for b in (geometry[j][0] for j in js)]
        resized = blend_ops.resize_linear(gen, sizes)
        blurred = self._blurred
        smax = max(int(blurred[j].shape[0]) for j in js)
        mask_batch = torch.zeros((len(js), smax, smax), dtype=torch.uint8, device=device)
        for k, j in enumerate(js):  # per frame: place the cached mask (no pixel loop)
            s = int(blurred[j].shape[0])
            mask_batch[k, :s, :s] = blurred[j]
        try:
            return blend_ops.compose(frames, resized, boxes, crops, mask_batch)
        except blend_ops.NonFiniteError:
            raise InputError("'images' contains NaN or infinite pixel values inside a face area.") from None

    def _compose(self, chunk: torch.Tensor, start: int, rows: List[int], generated_faces) -> None:
        """Composite the generated mouths of output frames ``rows`` into ``chunk`` (frames start.., in place)."""
        device = self.device
        local = torch.tensor([i - start for i in rows], dtype=torch.long, device=device)
        js = [int(self.source[i]) for i in rows]
        # float; compose converts only the pixels it touches. Consecutive rows (the usual case) are a view, not a
        # copy of the chunk (at 1080p a chunk of 16 float frames is 400 MB)
        first = int(rows[0]) - start
        frames_sel = chunk[first:first + len(rows)] if rows[-1] - rows[0] == len(rows) - 1 else chunk[local]
        bi, py, px, vals = self._composite(frames_sel, rows, js, generated_faces)
        if bi.numel():
            target = local[bi]
            new = vals.to(torch.float32) / 255.0
            w = torch.tensor([self.weights[i] for i in rows], dtype=torch.float32, device=device)[bi]
            fading = w < 1.0
            if bool(fading.any()):  # cross-fade pixels only; full-weight pixels keep the exact composite
                old = chunk[target, py, px]
                new = torch.where(fading[:, None], old + w[:, None] * (new - old), new)
            chunk[target, py, px] = new

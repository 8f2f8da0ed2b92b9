"""BlendAndAssemble: the generated mouths back into the original frames, plus the audio cut to the clip's length.

Per output frame i (source frame j = generated.source_index[i]) this is the reference's compositing
(musetalk-pipeline.md §4.6, §7.2, §7.3), batched on the device:

1. the 256x256 generated face resized to the face box with cv2 INTER_LINEAR on uint8 (blend_ops.resize_linear);
2. the parsing mask of frame j (faces.masks[j], already limited to the face box) with every row above
   ``int(2s * upper_boundary_ratio)`` zeroed, then cv2.GaussianBlur with ``k = int(blur_factor * 2s // 2 * 2) + 1``
   (computed once per source frame and cached for the run);
3. face_large = the crop box of the frame (black outside it) with the face pasted into the box, then pasted into
   the frame through the mask with PIL's integer arithmetic, clipped to the frame (blend_ops.compose).

Output pixels that the mask does not touch are the caller's float values unchanged, so frames without a face (and
silent frames with silence handling on) are the input frames bit for bit. Output frames are produced in chunks.

Streamed uint8 frames (the command line, the VIDEO path, batch jobs: ``Blender.stream``) take a shorter way to the
same pixels: only each face's blend square (its crop box within the frame) goes to the device and only the
composited pixels come back into the uint8 frame; the frames are never converted to float.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from contextlib import closing
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from . import kernels as blend_ops
from ..errors import InputError
from ..io.frames import frames_fingerprint, image_to_uint8, rgb_frames, rgb_to_uint8
from ..hooks import NO_HOOKS, RunHooks
from ..io.spill import SpilledArray, mask_shape
from ..types import MuseTalkFaces, MuseTalkGenerated

log = logging.getLogger(__name__)

FACE_SIZE = 256
SILENT_AUDIO_RATE = 44100  # sample rate of the silent track produced when the generated clip carries no audio


def audio_length(num_frames: int, fps: float, sample_rate: int) -> int:
    """Samples in ``num_frames / fps`` seconds: ``floor(num_frames * sample_rate / fps + 0.5)`` (round half up)."""
    return int(math.floor(num_frames * float(sample_rate) / float(fps) + 0.5))


def assemble_audio(audio: Optional[Mapping[str, Any]], num_frames: int, fps: float) -> Dict[str, Any]:
    """The clip's AUDIO: the driving waveform trimmed or zero-padded to exactly T / fps seconds, on the CPU.

    Without audio (a MUSETALK_GENERATED built without MUSETALK_AUDIO) the result is mono silence at 44100 Hz."""
    if audio is None:
        n = audio_length(num_frames, fps, SILENT_AUDIO_RATE)
        return {"waveform": torch.zeros((1, 1, n), dtype=torch.float32), "sample_rate": SILENT_AUDIO_RATE}
    try:
        waveform = audio["waveform"]
        rate = int(audio["sample_rate"])
    except (KeyError, TypeError, ValueError):
        raise InputError("The audio inside 'generated' is not an AUDIO mapping with 'waveform' and 'sample_rate'; "
                         "connect WhisperAudioEncode's input audio from a standard audio node.") from None
    if not isinstance(waveform, torch.Tensor) or waveform.ndim not in (2, 3) or rate <= 0:
        raise InputError("The audio inside 'generated' must have a waveform of shape (batch, channels, samples) and "
                         f"a positive sample rate; got {getattr(waveform, 'shape', type(waveform).__name__)} at {rate}.")
    if waveform.ndim == 2:
        waveform = waveform.unsqueeze(0)
    n = audio_length(num_frames, fps, rate)
    wav = waveform.detach().to("cpu")
    if not wav.is_floating_point():
        wav = wav.float()
    have = wav.shape[-1]
    if have >= n:
        out = wav[..., :n].clone()
    else:
        out = torch.cat([wav, wav.new_zeros(wav.shape[:-1] + (n - have,))], dim=-1)
    return {"waveform": out.contiguous(), "sample_rate": rate}


def silence_weights(silent: torch.Tensor, fade_frames: int) -> np.ndarray:
    """Weight of the generated mouth per output frame: 0 on silent frames, rising linearly over ``fade_frames``
    frames on either side of each silent run (d / (fade_frames + 1) at distance d), 1 elsewhere."""
    flags = silent.detach().to("cpu").numpy().astype(bool).reshape(-1)
    t = flags.shape[0]
    weights = np.ones(t, dtype=np.float64)
    if not flags.any():
        return weights
    big = t + fade_frames + 2
    dist = np.full(t, big, dtype=np.int64)
    last = -big
    for i in range(t):  # O(T) scalar pass over per-frame flags (not pixels)
        if flags[i]:
            last = i
        dist[i] = i - last
    last = 2 * big + t
    for i in range(t - 1, -1, -1):
        if flags[i]:
            last = i
        dist[i] = min(dist[i], last - i)
    weights = np.where(dist <= fade_frames, dist / (fade_frames + 1.0), 1.0)
    weights[flags] = 0.0
    return weights


def _check_inputs(images, faces: MuseTalkFaces, generated: MuseTalkGenerated, replacement_faces,
                  blur_factor, upper_boundary_ratio, silence_fade_frames, chunk_size) -> None:
    n, h, w = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
    check_material(faces, generated, n, h, w, replacement_faces, blur_factor, upper_boundary_ratio,
                   silence_fade_frames, chunk_size, "images", "IMAGE")


def check_material(faces, generated, n, h, w, replacement_faces, blur_factor, upper_boundary_ratio,
                   silence_fade_frames, chunk_size, name: str = "images", kind: str = "IMAGE") -> None:
    """Checks shared by the IMAGE and the VIDEO path: the source (n frames of h x w) against faces/generated."""
    if not isinstance(faces, MuseTalkFaces):
        raise InputError(f"'faces' must be MUSETALK_FACES from FaceDetectAndParse, got {type(faces).__name__}.")
    if not isinstance(generated, MuseTalkGenerated):
        raise InputError("'generated' must be MUSETALK_GENERATED from MuseTalkUNetInpaint, "
                         f"got {type(generated).__name__}.")
    if n != faces.num_frames or (h, w) != tuple(int(v) for v in faces.frame_size):
        raise InputError(
            f"'{name}' ({n} frames of {w}x{h}) are not the frames the faces were computed from "
            f"({faces.num_frames} frames of {faces.frame_size[1]}x{faces.frame_size[0]}): connect the same {kind} "
            "to FaceDetectAndParse and BlendAndAssemble.")
    check_blend_settings(blur_factor, upper_boundary_ratio, silence_fade_frames, chunk_size)
    if (faces.frames_fingerprint and generated.frames_fingerprint
            and faces.frames_fingerprint != generated.frames_fingerprint):
        raise InputError("'generated' was made from another video than 'faces' (frame fingerprints differ): connect "
                         "the MUSETALK_FACES that fed VAEEncodeMasked -> MuseTalkUNetInpaint for this generation.")
    t = generated.num_frames
    if t == 0:
        raise InputError("'generated' has 0 frames: the audio was shorter than one video frame.")
    gf, size = generated.faces, generated.face_size
    if not isinstance(gf, (torch.Tensor, SpilledArray)) or tuple(gf.shape) != (t, size, size, 3) \
            or gf.dtype != torch.uint8:
        raise InputError(f"'generated' faces must be uint8 ({t}, {size}, {size}, 3); got "
                         f"{tuple(getattr(gf, 'shape', ()))}. Use the generator node's output unchanged.")
    idx = generated.source_index
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise InputError(f"'generated' refers to source frames {int(idx.min())}..{int(idx.max())}, but the video has "
                         f"{n} frames: it was generated from another video. Re-run MuseTalkUNetInpaint with these faces.")
    if replacement_faces is not None:
        if not isinstance(replacement_faces, torch.Tensor) or replacement_faces.ndim != 4:
            raise InputError("'replacement_faces' must be an IMAGE batch (frames, 256, 256, 3).")
        rgb_frames(replacement_faces, "replacement_faces")  # channels and value range, once
        rt, rh, rw = (int(v) for v in replacement_faces.shape[:3])
        if rt != t or (rh, rw) != (size, size):
            raise InputError(
                f"'replacement_faces' must hold {t} faces of {size}x{size} (one per generated frame, as the generator "
                f"node outputs them); got {rt} of {rw}x{rh}. Keep the batch size and resize back to {size}x{size} "
                "after face restoration.")


def _face_geometry(faces: MuseTalkFaces, j: int) -> Optional[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    box = tuple(int(v) for v in faces.boxes[j].tolist())
    crop = tuple(int(v) for v in faces.crop_boxes[j].tolist())
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box, crop


def check_blend_settings(blur_factor, upper_boundary_ratio, silence_fade_frames, chunk_size) -> None:
    if not (0.0 <= float(blur_factor) <= 1.0):
        raise InputError(f"'blur_factor' must be between 0 and 1 (0.05 = reference), got {blur_factor}.")
    if not (0.0 <= float(upper_boundary_ratio) <= 1.0):
        raise InputError(f"'upper_boundary_ratio' must be between 0 and 1 (0.5 = reference), got {upper_boundary_ratio}.")
    if int(silence_fade_frames) < 0:
        raise InputError(f"'silence_fade_frames' must be 0 or more, got {silence_fade_frames}.")
    if int(chunk_size) < 1:
        raise InputError(f"'chunk_size' must be at least 1, got {chunk_size}.")


class Blender:
    """The compositing of output frames start..stop-1, one chunk at a time, for any frame source.

    Everything per output frame that is not pixels (source frame, whether it is blended, silence weight, box
    geometry) is decided once here; blurred masks are cached for the source frames of recent chunks only, so
    memory does not grow with the video (re-blurring is exact, so the cache never changes a pixel).
    """

    MASK_CACHE = 64  # blurred masks kept (source frames); ping-pong revisits recompute the rest
    MASK_CACHE_BYTES = 64 << 20  # ... and at most this many bytes of them (close-ups in 4K have 5 MB masks)
    # Bounds that keep very large frames and faces in the memory of 1080p (none changes a pixel: frames and
    # pixels are composited independently of each other):
    CHUNK_PIXELS = 40_000_000  # frame pixels per output chunk (16 1080p frames; fewer frames above 1080p)
    COMPOSE_PIXELS = 2_000_000  # mask pixels per compose call (a 4K close-up's mask alone is 2000 x 2000)

    def __init__(self, faces: MuseTalkFaces, source_index: torch.Tensor, generated_has_face: torch.Tensor,
                 device: torch.device, *, silent: Optional[torch.Tensor] = None, blur_factor: float = 0.05,
                 upper_boundary_ratio: float = 0.5, silence_handling: bool = False, silence_fade_frames: int = 3):
        self.faces = faces
        self.device = torch.device(device)
        self.blur_factor = float(blur_factor)
        self.upper_boundary_ratio = float(upper_boundary_ratio)
        source = source_index.detach().to("cpu").long()
        t = int(source.numel())
        self.source = source
        src_face = faces.has_face.detach().to("cpu").bool()[source]
        gen_face = generated_has_face.detach().to("cpu").bool().reshape(-1)
        active = (src_face & gen_face).numpy()
        self.weights = np.ones(t, dtype=np.float64)
        if silence_handling:
            if silent is None:
                log.warning("BlendAndAssemble: silence handling is on but 'generated' carries no MUSETALK_AUDIO; "
                            "ignored.")
            else:
                if int(silent.numel()) != t:
                    raise InputError(f"'generated' has {t} frames but its audio marks silence for "
                                     f"{int(silent.numel())}; re-run MuseTalkUNetInpaint with this audio.")
                self.weights = silence_weights(silent, int(silence_fade_frames))
        self.geometry = self._check_geometry(source[torch.from_numpy(active)].tolist())
        self.active = active & np.array([int(j) in self.geometry for j in source.tolist()], dtype=bool)
        self._blurred: "OrderedDict[int, torch.Tensor]" = OrderedDict()
        self._blurred_bytes = 0

    def _check_geometry(self, used) -> Dict[int, Tuple[Tuple[int, ...], Tuple[int, ...]]]:
        geometry: Dict[int, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {}
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

    def stream(self, source, step: int, faces_of, before=None, first: int = 0, last: Optional[int] = None):
        """(start, stop, uint8 frames on the CPU) of every output chunk of ``step`` frames, in order: the source
        frames are read ahead on a thread (sources.prefetched) and blended. ``before(last_row)`` runs before a
        chunk with faces to composite (the streaming core generates them there). Close the generator (e.g.
        contextlib.closing) to stop the reader when the caller stops early.

        ``first``/``last``: only output frames first..last-1 (a segment of a split job); chunks start at ``first``,
        so a segment that starts on a multiple of ``step`` blends the very chunks of the whole run."""
        from ..io.sources import prefetched

        h, w = (int(v) for v in source.frame_size)
        t, step = int(self.source.numel()), max(1, min(int(step), self.CHUNK_PIXELS // max(1, h * w)))
        end = t if last is None else min(t, int(last))
        starts = range(int(first), end, step)
        reads = prefetched(source, [self.source[a:min(a + step, end)].tolist() for a in starts])
        try:
            for start, raw in zip(starts, reads):
                stop = min(end, start + step)
                rows = self.rows(start, stop)
                if rows and before is not None:
                    before(rows[-1])
                out = self.blend_uint8(start, stop, raw, faces_of)
                del raw  # before the next read-ahead starts: two source chunks alive at most
                yield start, stop, out
        finally:
            reads.close()  # waits for a read still running on the prefetch thread

    def rows(self, start: int, stop: int) -> List[int]:
        """Output frames of the chunk that get a generated mouth (face present, not fully silent)."""
        return [i for i in range(start, stop) if self.active[i] and self.weights[i] > 0.0]

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

    def blend_uint8(self, start: int, stop: int, raw: torch.Tensor, generated_faces) -> torch.Tensor:
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
        return to_uint8(self.blend(start, stop, raw, generated_faces), in_place=True).cpu()

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

    def blend(self, start: int, stop: int, raw: torch.Tensor, generated_faces) -> torch.Tensor:
        """float32 (stop - start, H, W, 3) on the device: source frames ``raw`` (float IMAGE values or uint8) of
        output frames start..stop-1 with their mouths composited. ``generated_faces(rows)`` gives the uint8
        256x256 faces of the output frames ``rows`` (absolute indices)."""
        device = self.device
        if raw.is_floating_point() and raw.shape[-1] == 3:
            chunk = raw.to(device=device, dtype=torch.float32)
        else:  # uint8, grayscale or RGBA input: through the standard conversion (divided in place: one copy)
            chunk = image_to_uint8(raw, "images", device=device).to(torch.float32).div_(255.0)
        for group in self._compose_groups(self.rows(start, stop)):
            self._compose(chunk, start, group, generated_faces)
        return chunk

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


def to_uint8(chunk: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """Blended float frames -> uint8 as the video writer rounds them (round(x * 255)). ``in_place``: ``chunk``
    (float32, not needed afterwards) is overwritten instead of two more float copies of it being made."""
    if in_place and chunk.dtype == torch.float32:
        return chunk.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return (chunk.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def blend_frames(images: torch.Tensor, faces: MuseTalkFaces, generated: MuseTalkGenerated, *,
                 blur_factor: float = 0.05, upper_boundary_ratio: float = 0.5, silence_handling: bool = False,
                 silence_fade_frames: int = 3, chunk_size: int = 16, replacement_faces: Optional[torch.Tensor] = None,
                 hooks: Optional[RunHooks] = None, output_device: Optional[torch.device] = None):
    """Compose the generated faces into the original frames; see the module docstring.

    Returns (frames float32 IMAGE (T, H, W, 3) on ``output_device`` (default: the device of ``images``),
    AUDIO {"waveform" (B, C, round(T / fps * rate)), "sample_rate"} on the CPU, fps float, T int)."""
    hooks = hooks or NO_HOOKS
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError("'images' must be an IMAGE batch (frames, height, width, 3): the same frames given to "
                         "FaceDetectAndParse.")
    images = rgb_frames(images, "images")  # RGB view (alpha dropped, gray expanded) exactly as the faces saw it
    _check_inputs(images, faces, generated, replacement_faces, blur_factor, upper_boundary_ratio,
                  silence_fade_frames, chunk_size)
    if faces.frames_fingerprint:
        if frames_fingerprint(images) != faces.frames_fingerprint:
            raise InputError("'images': these are not the frames the faces were computed from (same size and count, "
                             "different pixels). Connect the same IMAGE to FaceDetectAndParse and BlendAndAssemble.")
    n, height, width = (int(v) for v in images.shape[:3])
    t = generated.num_frames
    fps = _check_fps(generated)
    out_device = torch.device(output_device) if output_device is not None else images.device
    blender = make_blender(faces, generated, generated.faces.device, blur_factor, upper_boundary_ratio,
                           silence_handling, silence_fade_frames)
    faces_of = generated_faces_reader(generated, replacement_faces, blender.device)
    out = torch.empty((t, height, width, 3), dtype=torch.float32, device=out_device)
    for start in range(0, t, int(chunk_size)):
        stop = min(t, start + int(chunk_size))
        raw = images[blender.source[start:stop]]  # a fresh copy: the input is never modified
        out[start:stop] = blender.blend(start, stop, raw, faces_of).to(out_device)
        hooks.step(stop - start)
    audio_map = generated.audio.audio if generated.audio is not None else None
    return out, assemble_audio(audio_map, t, fps), fps, t


def _check_fps(generated: MuseTalkGenerated) -> float:
    fps = float(generated.fps)
    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"'generated' has an invalid fps ({fps}); re-run WhisperAudioEncode with fps > 0.")
    return fps


def make_blender(faces, generated, device, blur_factor, upper_boundary_ratio, silence_handling,
                 silence_fade_frames) -> Blender:
    silent = generated.audio.silent if generated.audio is not None else None
    if not bool(faces.has_face.any()):  # cutaway / face-less clip: normal footage, passed through
        t = generated.num_frames
        log.warning("BlendAndAssemble: the video has no usable face (see FaceDetectAndParse's warning and "
                    "preview); its %d output frames are the source frames unchanged, with the audio cut to "
                    "%d / %g s.", t, t, float(generated.fps))
    has_face = generated.has_face
    skipped = getattr(generated, "skipped", None)
    if skipped is not None and bool(skipped.any()):
        # frames MuseTalkUNetInpaint did not generate (skip_silent): weight 0 with silence handling, so the source
        # shows there; without silence handling they would be holes
        if not silence_handling or silent is None:
            raise InputError("'generated' skipped its silent frames (MuseTalkUNetInpaint skip_silent_frames), which "
                             "only BlendAndAssemble with silence_handling on can use: turn silence_handling on, or "
                             "turn skip_silent_frames off.")
        has_face = has_face.detach().to("cpu").bool().reshape(-1) & ~skipped.detach().to("cpu").bool().reshape(-1)
    if generated.restore is not None:  # a generator with its own paste-back (LatentSync: the inverse affine warp)
        return generated.restore.make_blender(faces, generated.source_index, has_face, device, silent=silent,
                                              silence_handling=silence_handling,
                                              silence_fade_frames=silence_fade_frames)
    return Blender(faces, generated.source_index, has_face, device, silent=silent,
                   blur_factor=blur_factor, upper_boundary_ratio=upper_boundary_ratio,
                   silence_handling=silence_handling, silence_fade_frames=silence_fade_frames)


def generated_faces_reader(generated: MuseTalkGenerated, replacement_faces, device):
    """rows -> uint8 faces: the replacement IMAGE when given, else the generated faces (tensor or spilled); a
    generator's own restore may carry the faces it reads instead (LatentSync: unclamped float faces)."""
    if replacement_faces is not None:
        faces = rgb_frames(replacement_faces, "replacement_faces")  # a view; check_material checked the values once
        return lambda rows: rgb_to_uint8(faces[rows].to(device))
    exact = getattr(generated.restore, "faces", None)
    if exact is not None:
        return lambda rows: exact[rows]
    return lambda rows: generated.faces[rows]


def stream_blend(source, faces: MuseTalkFaces, generated: MuseTalkGenerated, path, *, blur_factor: float = 0.05,
                 upper_boundary_ratio: float = 0.5, silence_handling: bool = False, silence_fade_frames: int = 3,
                 chunk_size: int = 16, replacement_faces: Optional[torch.Tensor] = None,
                 hooks: Optional[RunHooks] = None, crf: int = 18):
    """BlendAndAssemble over a frame source (a VIDEO): each chunk of output frames is blended over its source
    frames, read again from the source, and written straight to an H.264 + AAC file at ``path`` (atomically).

    Returns (a preview IMAGE of up to 16 output frames sampled evenly, the AUDIO cut to exactly T / fps, fps, T).
    The output frames equal blend_frames' on the same frames, bit for bit."""
    from fractions import Fraction

    from ..io.previews import Downscaled, sample_indices, strip
    from ..io.video import VideoWriter, audio_layout

    hooks = hooks or NO_HOOKS
    n, (h, w) = source.num_frames, source.frame_size
    check_material(faces, generated, n, h, w, replacement_faces, blur_factor, upper_boundary_ratio,
                   silence_fade_frames, chunk_size, "video", "VIDEO")
    if faces.frames_fingerprint and source.fingerprint() != faces.frames_fingerprint:
        raise InputError("'video': this is not the video the faces were computed from. Connect the same VIDEO to "
                         "FaceDetectAndParse and BlendAndAssemble.")
    t, fps = generated.num_frames, _check_fps(generated)
    exact = source.fps is not None and abs(float(source.fps) - fps) < 1e-6
    rate = Fraction(source.fps) if exact else Fraction(fps).limit_denominator(1001)
    device = generated.faces.device if isinstance(generated.faces, torch.Tensor) \
        else torch.device(generated.settings.get("device", "cpu"))
    blender = make_blender(faces, generated, device, blur_factor, upper_boundary_ratio, silence_handling,
                           silence_fade_frames)
    faces_of = generated_faces_reader(generated, replacement_faces, device)
    audio = assemble_audio(generated.audio.audio if generated.audio is not None else None, t, fps)
    shown = sample_indices(t)
    kept: Dict[int, np.ndarray] = Downscaled()  # the preview frames, already at preview size
    with VideoWriter(path, rate, w, h, crf, *audio_layout(audio)) as writer:
        with closing(blender.stream(source, chunk_size, faces_of)) as chunks:
            for start, stop, out in chunks:
                writer.write(out)
                for i in shown:
                    if start <= i < stop:
                        kept[i] = out[i - start].numpy()
                hooks.step(stop - start)
        writer.finish(audio)
    return strip(kept, shown), audio, fps, t

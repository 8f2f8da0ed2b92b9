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
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from . import blend_ops
from .errors import InputError
from .frames import frames_fingerprint, image_to_uint8, rgb_frames
from .hooks import NO_HOOKS, RunHooks
from .types import MuseTalkFaces, MuseTalkGenerated

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
    if not isinstance(faces, MuseTalkFaces):
        raise InputError(f"'faces' must be MUSETALK_FACES from FaceDetectAndParse, got {type(faces).__name__}.")
    if not isinstance(generated, MuseTalkGenerated):
        raise InputError("'generated' must be MUSETALK_GENERATED from MuseTalkUNetInpaint, "
                         f"got {type(generated).__name__}.")
    n, h, w = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
    if n != faces.num_frames or (h, w) != tuple(int(v) for v in faces.frame_size):
        raise InputError(
            f"'images' ({n} frames of {w}x{h}) are not the frames the faces were computed from "
            f"({faces.num_frames} frames of {faces.frame_size[1]}x{faces.frame_size[0]}): connect the same IMAGE "
            "to FaceDetectAndParse and BlendAndAssemble.")
    if not (0.0 <= float(blur_factor) <= 1.0):
        raise InputError(f"'blur_factor' must be between 0 and 1 (0.05 = reference), got {blur_factor}.")
    if not (0.0 <= float(upper_boundary_ratio) <= 1.0):
        raise InputError(f"'upper_boundary_ratio' must be between 0 and 1 (0.5 = reference), got {upper_boundary_ratio}.")
    if int(silence_fade_frames) < 0:
        raise InputError(f"'silence_fade_frames' must be 0 or more, got {silence_fade_frames}.")
    if int(chunk_size) < 1:
        raise InputError(f"'chunk_size' must be at least 1, got {chunk_size}.")
    if (faces.frames_fingerprint and generated.frames_fingerprint
            and faces.frames_fingerprint != generated.frames_fingerprint):
        raise InputError("'generated' was made from another video than 'faces' (frame fingerprints differ): connect "
                         "the MUSETALK_FACES that fed VAEEncodeMasked -> MuseTalkUNetInpaint for this generation.")
    t = generated.num_frames
    if t == 0:
        raise InputError("'generated' has 0 frames: the audio was shorter than one video frame.")
    gf = generated.faces
    if not isinstance(gf, torch.Tensor) or tuple(gf.shape) != (t, FACE_SIZE, FACE_SIZE, 3) or gf.dtype != torch.uint8:
        raise InputError(f"'generated' faces must be uint8 ({t}, 256, 256, 3); got "
                         f"{tuple(getattr(gf, 'shape', ()))}. Use MuseTalkUNetInpaint's output unchanged.")
    idx = generated.source_index
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise InputError(f"'generated' refers to source frames {int(idx.min())}..{int(idx.max())}, but the video has "
                         f"{n} frames: it was generated from another video. Re-run MuseTalkUNetInpaint with these faces.")
    if replacement_faces is not None:
        if not isinstance(replacement_faces, torch.Tensor) or replacement_faces.ndim != 4:
            raise InputError("'replacement_faces' must be an IMAGE batch (frames, 256, 256, 3).")
        rgb_frames(replacement_faces, "replacement_faces")  # channels and value range, once
        rt, rh, rw = (int(v) for v in replacement_faces.shape[:3])
        if rt != t or (rh, rw) != (FACE_SIZE, FACE_SIZE):
            raise InputError(
                f"'replacement_faces' must hold {t} faces of 256x256 (one per generated frame, as MuseTalkUNetInpaint "
                f"outputs them); got {rt} of {rw}x{rh}. Keep the batch size and resize back to 256x256 after "
                "face restoration.")


def _face_geometry(faces: MuseTalkFaces, j: int) -> Optional[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    box = tuple(int(v) for v in faces.boxes[j].tolist())
    crop = tuple(int(v) for v in faces.crop_boxes[j].tolist())
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box, crop


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
    fps = float(generated.fps)
    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"'generated' has an invalid fps ({fps}); re-run WhisperAudioEncode with fps > 0.")
    device = generated.faces.device
    out_device = torch.device(output_device) if output_device is not None else images.device

    source = generated.source_index.detach().to("cpu").long()
    src_face = faces.has_face.detach().to("cpu").bool()[source]
    gen_face = generated.has_face.detach().to("cpu").bool().reshape(-1)
    active = (src_face & gen_face).numpy()
    if not bool(faces.has_face.any()):  # cutaway / face-less clip: normal footage, passed through
        log.warning("BlendAndAssemble: the video has no usable face (see FaceDetectAndParse's warning and "
                    "preview); its %d output frames are the source frames unchanged, with the audio cut to "
                    "%d / %g s.", t, t, fps)

    weights = np.ones(t, dtype=np.float64)
    if silence_handling:
        if generated.audio is None:
            log.warning("BlendAndAssemble: silence handling is on but 'generated' carries no MUSETALK_AUDIO; ignored.")
        else:
            silent = generated.audio.silent
            if int(silent.numel()) != t:
                raise InputError(f"'generated' has {t} frames but its audio marks silence for {int(silent.numel())}; "
                                 "re-run MuseTalkUNetInpaint with this audio.")
            weights = silence_weights(silent, int(silence_fade_frames))
    skipped = getattr(generated, "skipped", None)
    if skipped is not None and bool(skipped.any()):
        # frames MuseTalkUNetInpaint did not generate (skip_silent): weight 0 above, so the source shows there
        if not silence_handling or generated.audio is None:
            raise InputError("'generated' skipped its silent frames (MuseTalkUNetInpaint skip_silent_frames), which "
                             "only BlendAndAssemble with silence_handling on can use: turn silence_handling on, or "
                             "turn skip_silent_frames off.")
        active &= ~skipped.detach().to("cpu").bool().reshape(-1).numpy()

    # geometry per used source frame, checked once
    geometry: Dict[int, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {}
    for j in sorted(set(source[torch.from_numpy(active)].tolist())):
        geo = _face_geometry(faces, j)
        if geo is None:
            log.warning("BlendAndAssemble: source frame %d has an empty face box; it is passed through.", j)
            continue
        box, crop = geo
        side = crop[2] - crop[0]
        mask = faces.masks[j] if j < len(faces.masks) else None
        if side != crop[3] - crop[1] or side < 0:
            raise InputError(f"'faces': the blend box of frame {j} is not square ({crop}); re-run FaceDetectAndParse.")
        if mask is None or tuple(mask.shape) != (side, side):
            raise InputError(f"'faces': frame {j} has a face but its blend mask is "
                             f"{None if mask is None else tuple(mask.shape)}, expected ({side}, {side}). "
                             "Re-run FaceDetectAndParse.")
        geometry[j] = geo
    active &= np.array([int(j) in geometry for j in source.tolist()], dtype=bool)

    blurred: Dict[int, torch.Tensor] = {}

    def masks_for(js: List[int]) -> None:
        todo = [j for j in dict.fromkeys(js) if j not in blurred]
        if not todo:
            return
        cut, ks = [], []
        for j in todo:
            m = faces.masks[j].to(device=device, dtype=torch.uint8)
            side = int(m.shape[0])
            top = int(side * float(upper_boundary_ratio))
            if top > 0:
                m = m.clone()
                m[:top] = 0
            cut.append(m)
            ks.append(blend_ops.blur_kernel_size(float(blur_factor), side))
        for j, m in zip(todo, blend_ops.gaussian_blur_masks(cut, ks)):
            blurred[j] = m

    out = torch.empty((t, height, width, 3), dtype=torch.float32, device=out_device)
    for start in range(0, t, int(chunk_size)):
        stop = min(t, start + int(chunk_size))
        src = source[start:stop]
        raw = images[src]  # a fresh copy: the input is never modified
        if raw.is_floating_point():
            chunk = raw.to(device=device, dtype=torch.float32)
        else:  # uint8 frames
            chunk = raw.to(device=device, dtype=torch.float32) / 255.0
        rows = [i for i in range(start, stop) if active[i] and weights[i] > 0.0]
        if rows:
            local = torch.tensor([i - start for i in rows], dtype=torch.long, device=device)
            js = [int(source[i]) for i in rows]
            masks_for(js)
            frames_sel = chunk[local]  # float; compose converts only the pixels it touches
            if replacement_faces is not None:
                gen = image_to_uint8(replacement_faces[rows], "replacement_faces", device=device)
            else:
                gen = generated.faces[rows].to(device=device, dtype=torch.uint8)
            boxes = torch.tensor([geometry[j][0] for j in js], dtype=torch.long, device=device)
            crops = torch.tensor([geometry[j][1] for j in js], dtype=torch.long, device=device)
            sizes = [(b[2] - b[0], b[3] - b[1]) for b in (geometry[j][0] for j in js)]
            resized = blend_ops.resize_linear(gen, sizes)
            smax = max(int(blurred[j].shape[0]) for j in js)
            mask_batch = torch.zeros((len(js), smax, smax), dtype=torch.uint8, device=device)
            for k, j in enumerate(js):  # per frame: place the cached mask (no pixel loop)
                s = int(blurred[j].shape[0])
                mask_batch[k, :s, :s] = blurred[j]
            try:
                bi, py, px, vals = blend_ops.compose(frames_sel, resized, boxes, crops, mask_batch)
            except blend_ops.NonFiniteError:
                raise InputError("'images' contains NaN or infinite pixel values inside a face area.") from None
            if bi.numel():
                target = local[bi]
                new = vals.to(torch.float32) / 255.0
                w = torch.tensor([weights[i] for i in rows], dtype=torch.float32, device=device)[bi]
                fading = w < 1.0
                if bool(fading.any()):  # cross-fade pixels only; full-weight pixels keep the exact composite
                    old = chunk[target, py, px]
                    new = torch.where(fading[:, None], old + w[:, None] * (new - old), new)
                chunk[target, py, px] = new
        out[start:stop] = chunk.to(out_device)
        hooks.step(stop - start)

    audio_map = generated.audio.audio if generated.audio is not None else None
    audio = assemble_audio(audio_map, t, fps)
    return out, audio, fps, t

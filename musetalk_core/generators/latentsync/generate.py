"""The LatentSync generator: aligned faces + audio windows -> generated faces per output frame (lipsync_pipeline).

Per output frame i the source frame is ``frame_mapping.source_indices(T, N, mode, offset)[i]`` (ping-pong by default:
upstream's loop_video order, frames, crops and matrices reversed together on odd loops). Windows of ``window``
output frames (16) are denoised together, as upstream:

1. the window's aligned crops in [-1, 1]; the masked crops (mouth blacked out by the fixed mask);
2. VAE posterior draws of the masked, then of the whole crops, from the run's one seeded generator (after the
   initial noise: one (4, h, w) image repeated over every frame) — pixels.LatentSyncNoise's order;
3. DDIM with classifier-free guidance (sampler.denoise_window), one progress unit and interrupt check per step;
4. decode, the mouth pasted into the source crop (paste_surrounding_pixels_back), rounded to uint8.

Frames without a face (a choice; upstream raises): windows are cut at them. Each run of consecutive output frames
whose source has a face is split into windows of ``window`` frames from its start, so with a face everywhere the
windows are upstream's exactly; a face-less frame never enters a window (the resnets' GroupNorms and the motion
modules see the whole window, so a filler frame would change its neighbours), and is passed through by the restore.
The random draws follow the windows in order, so the numbers equal upstream's while no frame is face-less.

Frame count: exactly the T audio windows of WhisperAudioEncode (upstream makes one or two more, see audio.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from ...errors import InputError
from ...hooks import NO_HOOKS, RunHooks
from . import pixels as px
from .sampler import MAX_WINDOW, SCHEDULERS, StepCallback, denoise_window, latent_mask, make_scheduler


def face_windows(has_face: np.ndarray, window: int) -> List[Tuple[int, int]]:
    """(start, stop) windows over the output frames with a face: each run cut into pieces of ``window`` frames."""
    from ...faces.smoothing import true_runs

    return [(a, min(a + window, end)) for start, end in true_runs(has_face) for a in range(start, end, window)]


@dataclass(frozen=True)
class SamplingSettings:
    steps: int = 20
    guidance_scale: float = 1.5
    seed: int = 1247
    window: int = 16
    scheduler: str = "ddim"

    def check(self) -> "SamplingSettings":
        if not 1 <= int(self.window) <= MAX_WINDOW:
            raise InputError(f"window_length must be between 1 and {MAX_WINDOW} frames (the temporal layers hold "
                             f"{MAX_WINDOW}; LatentSync was trained on 16), got {self.window}.")
        if int(self.steps) < 1:
            raise InputError(f"inference_steps must be at least 1, got {self.steps}.")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"scheduler must be one of {', '.join(SCHEDULERS)} (ddim = upstream), got "
                             f"{self.scheduler!r}.")
        if not float(self.guidance_scale) >= 0:
            raise InputError(f"guidance_scale must be 0 or more (1.5 = upstream), got {self.guidance_scale}.")
        return self


@torch.no_grad()
def generate_windows(unet, vae, mask_image: torch.Tensor, crops_of: Callable[[torch.Tensor], torch.Tensor],
                     audio: torch.Tensor, has_face: torch.Tensor, settings: SamplingSettings, *,
                     device: torch.device, hooks: RunHooks = NO_HOOKS, on_step: Optional[StepCallback] = None,
                     on_window: Optional[Callable[[int, int, torch.Tensor, torch.Tensor, torch.Tensor], None]] = None):
    """Generate every window; ``on_window(start, stop, final_latents, faces_uint8 (f, res, res, 3), faces_float
    (f, res, res, 3))`` receives each: the uint8 faces (IMAGE output, previews) and the unclamped [-1, 1] faces the
    restore reads (``to_restore_faces``).

    ``crops_of(output_rows)`` -> uint8 (f, res, res, 3) aligned crops; ``audio`` (T, 50, 384) windows;
    ``has_face`` bool (T,) output frames to generate. The unet and vae are used in their own dtype on ``device``.
    """
    for window in iter_windows(unet, vae, mask_image, crops_of, audio, has_face, settings, device=device,
                               hooks=hooks, on_step=on_step):
        if on_window is not None:
            on_window(*window)


def iter_windows(unet, vae, mask_image: torch.Tensor, crops_of: Callable[[torch.Tensor], torch.Tensor],
                 audio: torch.Tensor, has_face: torch.Tensor, settings: SamplingSettings, *,
                 device: torch.device, hooks: RunHooks = NO_HOOKS, on_step: Optional[StepCallback] = None,
                 first: int = 0, last: Optional[int] = None):
    """generate_windows' windows as (start, stop, final_latents, faces_uint8, faces_float), one at a time.

    Only the windows holding an output frame in [first, last) are denoised; the random draws of the windows
    before them are made and dropped, so every window's numbers equal the whole run's (a segment of a split batch
    job generates exactly the whole run's faces)."""
    settings.check()
    res = int(mask_image.shape[-1])
    size = res // 8
    dtype = unet.dtype
    noise = px.LatentSyncNoise(int(settings.seed))
    sigma = float(make_scheduler(settings.scheduler).init_noise_sigma)
    initial = noise.initial(1, size, size).to(device=device, dtype=dtype) * sigma
    mask_one = mask_image[0:1].float()[None]  # (1, 1, res, res)
    for w, (start, stop) in enumerate(face_windows(has_face.cpu().numpy(), int(settings.window))):
        f = stop - start
        if stop <= first:  # before the segment: the draws only
            noise.skip_posteriors(2, (f, 4, size, size), vae.dtype)
            continue
        if last is not None and start >= last:
            break
        # contiguous, as upstream's torch.stack of per-frame tensors: a channels-last-strided VAE input takes other
        # CPU convolution kernels (latents 0.03-0.4 apart on the real VAEs; test_vae_gets_contiguous_pixels)
        faces = crops_of(torch.arange(start, stop)).permute(0, 3, 1, 2).contiguous()
        pixels = px.face_pixels(faces)
        masked = px.masked_faces(pixels, mask_image)
        masked_lat = px.encode(vae, masked.to(device), noise.generator).to(dtype)
        ref_lat = px.encode(vae, pixels.to(device), noise.generator).to(dtype)
        mask_lat = latent_mask(mask_one.expand(f, 1, res, res), size, size).to(device=device, dtype=dtype)
        scheduler = make_scheduler(settings.scheduler, int(settings.steps), device)
        latents = denoise_window(unet, scheduler, initial.expand(1, 4, f, size, size).clone(), mask_lat, masked_lat,
                                 ref_lat, audio[start:stop].to(device=device, dtype=dtype),
                                 float(settings.guidance_scale), hooks, on_step, w)
        decoded = px.decode(vae, latents)
        # the mask stays float64 as upstream's (the paste is computed in it); MPS has no float64
        mask = mask_image.to(torch.float32) if decoded.device.type == "mps" else mask_image
        restored = px.paste_mouth(decoded.float(), pixels.to(decoded.device), mask.to(decoded.device))
        yield (start, stop, latents, to_uint8_faces(restored),
               to_restore_faces(restored, restore_dtype(decoded.dtype)))


def to_uint8_faces(faces: torch.Tensor) -> torch.Tensor:
    """(f, 3, H, W) in [-1, 1] -> uint8 (f, H, W, 3): the values upstream's restore reads, (x / 2 + 0.5) * 255."""
    return ((faces.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def restore_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the faces are kept in for the restore: the decoder's when float32, else float16 (bfloat16 values
    of the faces' range are exact in float16; upstream restores float16 faces on the GPU)."""
    return torch.float32 if dtype in (torch.float32, torch.float64) else torch.float16


def to_restore_faces(faces: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(f, 3, H, W) decoded + pasted faces -> (f, H, W, 3) ``dtype`` on the CPU, NOT clamped: upstream's restore
    resizes (bicubic) and warps the decoder's values and clamps only after the warp, so values outside [-1, 1]
    change the output (up to 56 grey levels where the decoder overshoots)."""
    return faces.to(dtype).permute(0, 2, 3, 1).cpu()


def count_steps(has_face: torch.Tensor, settings: SamplingSettings) -> int:
    """Progress units of a run: denoising steps of every window."""
    return len(face_windows(has_face.cpu().numpy(), int(settings.window))) * int(settings.steps)


def plan_frames(aligned, num_output: int, frame_mapping: str = "bounce", frame_offset: int = 0):
    """(source frame, has_face) per output frame: frame_mapping's pairing, looked up in the aligned video."""
    from ...frame_mapping import source_indices

    source = source_indices(num_output, aligned.num_frames, frame_mapping, frame_offset)
    return source, aligned.has_face[source]


def check_audio(audio) -> None:
    """LatentSync was trained on Whisper-tiny features of MuseTalk v1.0's kind, 2 + 2 frames of context."""
    from ...types import MuseTalkAudio

    if not isinstance(audio, MuseTalkAudio):
        raise InputError(f"'audio_features' must be MUSETALK_AUDIO from WhisperAudioEncode, got {type(audio).__name__}.")
    if audio.feature_mode != "v1.0-original":
        raise InputError("'audio_features': LatentSync needs WhisperAudioEncode's feature_mode 'v1.0-original' (the "
                         f"features it was trained on), got '{audio.feature_mode}'. Change it in WhisperAudioEncode.")
    pads = (audio.settings.get("audio_padding_left", 2), audio.settings.get("audio_padding_right", 2))
    if tuple(pads) != (2, 2):
        raise InputError(f"'audio_features': LatentSync reads 2 + 2 Whisper frames around each video frame; "
                         f"WhisperAudioEncode's audio_padding_left/right are {pads[0]}/{pads[1]}. Set both to 2.")


def generate_latentsync(models, aligned, audio, *, frame_mapping: str = "bounce", frame_offset: int = 0,
                        settings: SamplingSettings = SamplingSettings(), hooks: Optional[RunHooks] = None,
                        store=None, restore_store=None, frames_fingerprint: Optional[str] = None,
                        on_step: Optional[StepCallback] = None):
    """LatentSyncModels + AlignedVideo + MUSETALK_AUDIO -> MUSETALK_GENERATED with an AffineRestore.

    ``store`` (optional) is a (T, res, res, 3) uint8 array the faces are written to (a SpilledArray for long videos);
    ``restore_store`` the same shape in ``restore_dtype(models.dtype)`` for the unclamped faces the restore reads
    (AffineRestore.faces); both in memory when not given. ``hooks`` gets one unit per denoising step of every window (``count_steps``)."""
    from ...types import MuseTalkGenerated
    from .restore import AffineRestore

    check_audio(audio)
    settings.check()
    res = models.version.resolution
    if aligned.resolution != res:
        raise InputError(f"The faces were aligned for {aligned.resolution} px but {models.version.name} generates "
                         f"{res} px faces: align again with these models.")
    t = audio.num_frames
    source, has_face = plan_frames(aligned, t, frame_mapping, frame_offset)
    faces = store if store is not None else torch.zeros((t, res, res, 3), dtype=torch.uint8)
    exact = restore_store if restore_store is not None \
        else torch.zeros((t, res, res, 3), dtype=restore_dtype(models.dtype))

    def keep(start, stop, _latents, generated, unclamped):
        faces[start:stop] = generated
        exact[start:stop] = unclamped

    with torch.inference_mode():
        generate_windows(models.unet, models.vae, models.mask, lambda rows: aligned.crops[source[rows].tolist()],
                         audio.features, has_face, settings, device=models.device, hooks=hooks or NO_HOOKS,
                         on_step=on_step, on_window=keep)
    recorded = {"generator": models.version.name, "steps": int(settings.steps), "scheduler": settings.scheduler,
                "guidance_scale": float(settings.guidance_scale), "seed": int(settings.seed),
                "window": int(settings.window), "frame_mapping": frame_mapping, "frame_offset": int(frame_offset),
                "alignment": aligned.backend, "device": str(models.device)}
    return MuseTalkGenerated(faces=faces, source_index=source, has_face=has_face, fps=audio.fps, audio=audio,
                             settings=recorded, frames_fingerprint=frames_fingerprint,
                             restore=AffineRestore(aligned.matrices, res, exact))

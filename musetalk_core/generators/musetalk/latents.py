"""VAEEncodeMasked: the 8-channel UNet input latent of every source face (reference §4).

Per face crop (256x256 RGB uint8, already LANCZOS4-resized by the faces stage):
  x = crop / 255 (CHW float32); masked = x with rows 128..255 zeroed; both normalised 2x-1 (so the masked half is
  exactly -1); both encoded in ONE batched VAE pass; latent = scaling_factor * (mean, or mean + std * noise);
  result = cat([masked latent, full latent], channel) -> (8, 32, 32).

``latent_mode="sample"`` is what the reference does (``latent_dist.sample()``), but the reference draws from the
unseeded global RNG. Here the noise of frame j comes from a generator seeded from (seed, j) alone, on the CPU, so
the result does not depend on the batch size, on the device or on which other frames have a face. ``"mean"`` uses
the distribution's mean (what training used; deterministic).
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from ...errors import InputError
from ...hooks import NO_HOOKS, RunHooks
from ...passes import in_passes
from ...io.spill import SpilledArray
from ...types import MuseTalkFaces, MuseTalkLatents, MuseTalkModels

log = logging.getLogger(__name__)

LATENT_MODES = ("sample", "mean")
CROP_SIZE = 256
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def frame_seed(seed: int, frame_index: int) -> int:
    """The RNG seed of one source frame: a 64-bit mix of (seed, frame index), independent of batching."""
    return _splitmix64(_splitmix64(int(seed) & _MASK64) ^ (int(frame_index) & _MASK64))


def frame_noise(seed: int, frame_index: int, shape=(2, 4, 32, 32)) -> torch.Tensor:
    """float32 N(0, 1) noise for [masked, full] latents of one frame, drawn on the CPU (device independent)."""
    gen = torch.Generator(device="cpu").manual_seed(frame_seed(seed, frame_index))
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def preprocess_crops(crops: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 256, 256, 3) RGB -> float32 (2B, 3, 256, 256) = [masked..., full...] in [-1, 1] (reference §4.2)."""
    # contiguous NCHW as the reference's numpy path gives: a channels-last input makes the CPU convolutions emit
    # channels-last activations, and torch's channels-last GroupNorm on the CPU is ~1e-2 off (measured, torch 2.13).
    x = crops.permute(0, 3, 1, 2).contiguous().to(torch.float32) / 255.0
    masked = x.clone()
    masked[:, :, x.shape[2] // 2:, :] = 0.0
    both = torch.cat([masked, x], dim=0)
    return (both - 0.5) / 0.5


def _validate(models, faces, latent_mode, seed, batch_size) -> None:
    if not isinstance(models, MuseTalkModels):
        raise InputError("'musetalk_models' must come from LoadMuseTalkModels (MUSETALK_MODELS).")
    if not isinstance(faces, MuseTalkFaces):
        raise InputError("'faces' must be the MUSETALK_FACES output of FaceDetectAndParse.")
    if latent_mode not in LATENT_MODES:
        raise InputError(f"latent_mode '{latent_mode}' is not known: choose 'sample' (the reference) or 'mean'.")
    if not 0 <= int(seed) <= _MASK64:
        raise InputError(f"seed must be between 0 and 2^64-1, got {seed}.")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    crops = faces.crops
    n = faces.num_frames
    if not isinstance(crops, (torch.Tensor, SpilledArray)) or crops.ndim != 4 \
            or tuple(crops.shape[1:]) != (CROP_SIZE, CROP_SIZE, 3) or crops.shape[0] != n:
        shape = tuple(crops.shape) if isinstance(crops, (torch.Tensor, SpilledArray)) else type(crops).__name__
        raise InputError(f"'faces' crops must be uint8 ({n}, 256, 256, 3), got {shape}. Re-run FaceDetectAndParse.")
    if crops.dtype != torch.uint8:
        raise InputError(f"'faces' crops must be uint8, got {crops.dtype}. Re-run FaceDetectAndParse.")
    if n == 0:
        raise InputError("'faces' describe 0 source frames. Re-run FaceDetectAndParse on a non-empty IMAGE batch.")


def encode_moments(vae: torch.nn.Module, x: torch.Tensor):
    """Mean and std of the VAE posterior of every image in x, in this device's encoder passes (passes.py)."""
    moments = [(d.mean, d.std) for d in in_passes("vae_encoder", x, lambda part: vae.encode(part).latent_dist)]
    if len(moments) == 1:
        return moments[0]
    return torch.cat([m for m, _ in moments]), torch.cat([s for _, s in moments])


def encode_faces(models: MuseTalkModels, faces: MuseTalkFaces, latent_mode: str = "sample", seed: int = 0,
                 batch_size: int = 8, hooks: Optional[RunHooks] = None, store=None) -> MuseTalkLatents:
    """Encode every face crop to its (8, 32, 32) latent, batched; frames without a face get no latent.

    A video without any face gives latents with 0 rows (no VAE call): the later stages pass its frames through.
    ``store(shape, dtype)`` -> the array the latents go to instead of a device tensor (spill.SpilledArray for
    long videos: 32 KB per face frame at fp32)."""
    from ...models.vae import scaling_factor

    _validate(models, faces, latent_mode, seed, batch_size)
    hooks = hooks or NO_HOOKS
    batch_size = int(batch_size)
    frame_indices = faces.face_indices.cpu().to(torch.int64)
    m = int(frame_indices.numel())
    device, dtype = models.device, models.dtype
    if m == 0:  # a video without a usable face passes through: nothing to encode, the VAE is not even moved
        log.info("VAEEncodeMasked: no source frame has a face; no latent to encode (the frames pass through).")
        return MuseTalkLatents(latents=torch.empty((0, 8, 32, 32), dtype=dtype, device=device),
                               frame_indices=frame_indices, num_frames=faces.num_frames, version=models.version,
                               latent_mode=latent_mode, seed=int(seed), frames_fingerprint=faces.frames_fingerprint,
                               from_video=faces.on_disk)
    out = None
    with models.use("vae") as (vae,):
        scale = scaling_factor(vae)
        vae_dtype = next(vae.parameters()).dtype
        for start in range(0, m, batch_size):
            idx = frame_indices[start:start + batch_size]
            b = int(idx.numel())
            crops = faces.crops[idx.to(faces.crops.device)].to(device)
            x = preprocess_crops(crops).to(vae_dtype)
            mean, std = encode_moments(vae, x)
            if latent_mode == "mean":
                z = mean
            else:
                noise = torch.stack([frame_noise(seed, int(j)) for j in idx])  # (b, 2, 4, 32, 32)
                noise = noise.transpose(0, 1).reshape(2 * b, *noise.shape[2:])  # [masked..., full...]
                z = mean + std * noise.to(device=device, dtype=mean.dtype)
            z = scale * z
            latent = torch.cat([z[:b], z[b:]], dim=1).to(dtype)
            if out is None:
                shape = (m, *latent.shape[1:])
                out = torch.empty(shape, dtype=dtype, device=device) if store is None else store(shape, dtype)
            out[start:start + b] = latent
            hooks.step(b)
    return MuseTalkLatents(latents=out, frame_indices=frame_indices, num_frames=faces.num_frames,
                           version=models.version, latent_mode=latent_mode, seed=int(seed),
                           frames_fingerprint=faces.frames_fingerprint,
                           from_video=faces.on_disk)

"""MuseTalkUNetInpaint: one UNet pass at t = 0 per output frame, then VAE decode (reference §4.5, §5).

For output frame i: source frame j = frame_mapping.source_indices(...)[i]; if j has a face, the UNet gets j's
8-channel latent and PE(audio window i) as cross-attention context at timestep 0, and its 4-channel output is
decoded as the face of frame i (no scheduler, no residual). If j has no face, frame i is not generated (zeros,
has_face False) and the blend stage passes the source frame through.

Batched over output frames with a face; the t = 0 time embedding is computed once per run and batch size (the
same numbers the plain call computes every batch). The result buffer is uint8 (T, 256, 256, 3) on the device; the working memory
is bounded by the batch size.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Optional

import torch

from .errors import InputError
from .frame_mapping import MODES, source_indices
from .hooks import NO_HOOKS, RunHooks
from .passes import in_passes
from .types import MuseTalkAudio, MuseTalkGenerated, MuseTalkLatents, MuseTalkModels

log = logging.getLogger(__name__)

AUDIO_TOKENS = 50
AUDIO_DIM = 384


class _FixedEmbedding(torch.nn.Module):
    """Stands in for UNet.time_embedding during a run: the t = 0 embedding, computed once per batch size.

    Computed at the batch size in use, as the plain call computes it in every batch: the MLP's matrix product rounds
    differently at 1 row and at B rows (~1.5e-7), which moves the UNet output by a few 1e-6.
    """

    def __init__(self, unet: torch.nn.Module, mlp: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self._parts = (unet.time_proj, mlp)  # a tuple: not registered as submodules, the UNet's keys stay as they are
        self.dtype = dtype
        self.cache = {}

    def forward(self, sample: torch.Tensor, condition=None) -> torch.Tensor:
        key = (sample.shape[0], sample.device)
        if key not in self.cache:
            proj, mlp = self._parts
            t = torch.zeros(sample.shape[0], dtype=torch.int64, device=sample.device)
            self.cache[key] = mlp(proj(t).to(dtype=self.dtype), None)
        return self.cache[key]


def time_embedding_t0(unet: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                      batch: int = 1) -> torch.Tensor:
    """(batch, C) embedding of timestep 0 exactly as UNet2DConditionModel.forward computes it for a batch of that
    size (time_proj -> MLP)."""
    t = torch.zeros(batch, dtype=torch.int64, device=device)
    t_emb = unet.time_proj(t).to(dtype=dtype)
    return unet.time_embedding(t_emb, None)


@contextmanager
def fixed_time_embedding(unet: torch.nn.Module, device: torch.device, dtype: torch.dtype):
    """Swap the UNet's time MLP for its t = 0 output (per batch size) for the duration of a run; always restored."""
    original = unet.time_embedding
    unet.time_embedding = _FixedEmbedding(unet, original, dtype)
    try:
        yield
    finally:
        unet.time_embedding = original


def decode_faces(vae: torch.nn.Module, latents: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, 4, 32, 32) -> uint8 (B, 256, 256, 3) RGB: (1/scale)*z, decode, (x/2+0.5).clamp(0,1), *255, round."""
    vae_dtype = next(vae.parameters()).dtype
    z = ((1.0 / scale) * latents).to(vae_dtype)
    return torch.cat(list(in_passes("vae_decoder", z, lambda part: _to_uint8_rgb(vae.decode(part).sample))))


def _to_uint8_rgb(image: torch.Tensor) -> torch.Tensor:
    image = (image / 2 + 0.5).clamp(0, 1)
    image = image.permute(0, 2, 3, 1).float()
    return (image * 255).round().to(torch.uint8)


def _validate(models, latents, audio, frame_mapping, batch_size) -> None:
    if not isinstance(models, MuseTalkModels):
        raise InputError("'musetalk_models' must come from LoadMuseTalkModels (MUSETALK_MODELS).")
    if not isinstance(latents, MuseTalkLatents):
        raise InputError("'latents' must be the MUSETALK_LATENTS output of VAEEncodeMasked.")
    if not isinstance(audio, MuseTalkAudio):
        raise InputError("'audio_features' must be the MUSETALK_AUDIO output of WhisperAudioEncode.")
    if frame_mapping not in MODES:
        raise InputError(f"frame_mapping '{frame_mapping}' is not known: choose one of {', '.join(MODES)}.")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    if latents.version != models.version:
        raise InputError(f"'latents' were computed with the MuseTalk {latents.version} models but these models are "
                         f"{models.version}. Connect VAEEncodeMasked and MuseTalkUNetInpaint to the same "
                         "LoadMuseTalkModels node.")
    if audio.version != models.version:
        raise InputError(f"'audio_features' were computed for MuseTalk {audio.version} but these models are "
                         f"{models.version}. Connect WhisperAudioEncode and MuseTalkUNetInpaint to the same "
                         "LoadMuseTalkModels node.")
    z = latents.latents
    if not isinstance(z, torch.Tensor) or z.ndim != 4 or z.shape[1] != 8:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise InputError(f"'latents' must be (frames, 8, 32, 32), got {shape}. Re-run VAEEncodeMasked.")
    if z.shape[0] == 0 or latents.frame_indices.numel() == 0:
        raise InputError("'latents' hold no face (no source frame had a face), so there is nothing to animate.")
    if latents.frame_indices.numel() != z.shape[0]:
        raise InputError("'latents' are inconsistent (frame_indices and latents differ in length). "
                         "Re-run VAEEncodeMasked.")
    fi = latents.frame_indices
    if int(fi.min()) < 0 or int(fi.max()) >= latents.num_frames:
        raise InputError("'latents' refer to source frames outside 0..N-1. Re-run VAEEncodeMasked.")
    f = audio.features
    if not isinstance(f, torch.Tensor) or f.ndim != 3 or tuple(f.shape[1:]) != (AUDIO_TOKENS, AUDIO_DIM):
        shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise InputError(f"'audio_features' must be (frames, 50, 384), got {shape}. Re-run WhisperAudioEncode.")
    if f.shape[0] == 0:
        raise InputError("'audio_features' hold 0 frames: the audio is shorter than one video frame "
                         f"(1/{audio.fps:g} s). Use a longer audio clip.")


def generate_faces(models: MuseTalkModels, latents: MuseTalkLatents, audio_features: MuseTalkAudio,
                   frame_mapping: str = "ping_pong", frame_offset: int = 0, batch_size: int = 8,
                   hooks: Optional[RunHooks] = None) -> MuseTalkGenerated:
    """Generate the T output faces. batch_size larger than the work simply means one batch."""
    from .models.vae import scaling_factor

    _validate(models, latents, audio_features, frame_mapping, batch_size)
    hooks = hooks or NO_HOOKS
    batch_size = int(batch_size)
    device, dtype = models.device, models.dtype
    t = audio_features.num_frames
    mapping = source_indices(t, latents.num_frames, frame_mapping, int(frame_offset))
    rows = latents.latent_slot()[mapping]  # row in latents.latents, -1 = source frame has no face
    has_face = rows >= 0
    todo = torch.nonzero(has_face, as_tuple=False).flatten()
    if todo.numel() == 0:
        log.warning("MuseTalk: no output frame maps to a source frame with a face (frame_mapping=%s, "
                    "frame_offset=%d); every frame passes through unchanged.", frame_mapping, int(frame_offset))

    faces = torch.zeros((t, 256, 256, 3), dtype=torch.uint8, device=device)
    with models.use("unet", "vae", "pe") as (unet, vae, pe):
        unet_dtype = next(unet.parameters()).dtype
        scale = scaling_factor(vae)
        source_latents = latents.latents.to(device=device, dtype=unet_dtype)
        features = audio_features.features
        done = 0
        timesteps = torch.zeros(1, dtype=torch.int64, device=device)
        with fixed_time_embedding(unet, device, unet_dtype):
            for start in range(0, int(todo.numel()), batch_size):
                out_idx = todo[start:start + batch_size]
                lat = source_latents[rows[out_idx].to(device)]
                audio = features[out_idx.to(features.device)].to(device=device, dtype=unet_dtype)
                context = pe(audio)
                pred = unet(lat, timesteps, encoder_hidden_states=context).sample
                decoded = decode_faces(vae, pred, scale)
                faces[out_idx.to(device)] = decoded
                covered = int(out_idx[-1]) + 1
                hooks.step(covered - done)
                done = covered
        if done < t:
            hooks.advance(t - done)
    settings = {"frame_mapping": frame_mapping, "frame_offset": int(frame_offset), "batch_size": batch_size,
                "version": models.version, "latent_mode": latents.latent_mode, "seed": latents.seed}
    return MuseTalkGenerated(faces=faces, source_index=mapping, has_face=has_face, fps=float(audio_features.fps),
                             audio=audio_features, settings=settings,
                             frames_fingerprint=latents.frames_fingerprint)

"""MuseTalkUNetInpaint: one UNet pass at t = 0 per output frame, then VAE decode (reference §4.5, §5).

For output frame i: source frame j = frame_mapping.source_indices(...)[i]; if j has a face, the UNet gets j's
8-channel latent and PE(audio window i) as cross-attention context at timestep 0, and its 4-channel output is
decoded as the face of frame i (no scheduler, no residual). If j has no face, frame i is not generated (zeros,
has_face False) and the blend stage passes the source frame through.

Batched over output frames with a face; the t = 0 time embedding is computed once per run and batch size (the
same numbers the plain call computes every batch). The result buffer is uint8 (T, 256, 256, 3) on the device (it stays there for
the blend); the working memory is bounded by the batch size.

Opt-in, all off by default:
- ``decoder="taesd"``: the tiny TAESD decoder instead of sd-vae's (models/taesd.py; approximate, much faster).
- ``acceleration``: channels-last, cuDNN autotuning, CUDA graphs (full batches replayed, a short last batch run
  eagerly at its own size) or torch.compile (the last batch padded to the batch size; padded rows never reach the
  output); accel.call_plan decides (musetalk_core/generators/musetalk/accel.py).
- ``skip_silent``: output frames whose audio window is silent are not generated (zeros, marked in
  ``MuseTalkGenerated.skipped``). BlendAndAssemble with silence_handling shows the source frame there anyway
  (weight 0), so its output is identical; it refuses skipped frames with silence_handling off.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch

from . import accel
from ...errors import InputError
from ...frame_mapping import MODES, source_indices
from ...hooks import NO_HOOKS, RunHooks
from ...passes import in_passes
from ...io.spill import SpilledArray
from ...types import MuseTalkAudio, MuseTalkGenerated, MuseTalkLatents, MuseTalkModels

log = logging.getLogger(__name__)

AUDIO_TOKENS = 50
AUDIO_DIM = 384
DECODERS = ("vae", "taesd")


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


def check_generation_settings(decoder: str, acceleration) -> "accel.Acceleration":
    """The decoder and acceleration choices, checked (callers check them before any slow stage runs)."""
    if decoder not in DECODERS:
        raise InputError(f"decoder '{decoder}' is not known: choose 'vae' (exact) or 'taesd' (fast, approximate).")
    return accel.Acceleration.parse(acceleration)


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
    parts = list(in_passes("vae_decoder", z, lambda part: _to_uint8_rgb(vae.decode(part).sample)))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def decode_faces_taesd(decoder: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """(B, 4, 32, 32) UNet latents -> uint8 (B, 256, 256, 3) RGB with TAESD: no 1/scale (its latent scale is 1),
    output already in [0, 1]."""
    dtype = next(decoder.parameters()).dtype
    image = decoder(latents.to(dtype)).clamp_(0, 1)
    return (image.permute(0, 2, 3, 1).float() * 255).round_().to(torch.uint8)


def _to_uint8_rgb(image: torch.Tensor) -> torch.Tensor:
    # the reference's order and dtypes ((x / 2 + 0.5) and the clamp in the decoder's dtype, then float32), in place
    # on the decoder's fresh output: the same values with four fewer full-size temporaries
    image = image.div_(2).add_(0.5).clamp_(0, 1)
    image = image.permute(0, 2, 3, 1).float()  # NHWC: a plain copy when the decoder ran channels-last
    return image.mul_(255).round_().to(torch.uint8)


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
    if not isinstance(z, (torch.Tensor, SpilledArray)) or z.ndim != 4 or z.shape[1] != 8:
        shape = tuple(z.shape) if isinstance(z, (torch.Tensor, SpilledArray)) else type(z).__name__
        raise InputError(f"'latents' must be (frames, 8, 32, 32), got {shape}. Re-run VAEEncodeMasked.")
    if latents.num_frames < 1:
        raise InputError("'latents' describe 0 source frames. Re-run FaceDetectAndParse and VAEEncodeMasked.")
    if latents.frame_indices.numel() != z.shape[0]:
        raise InputError("'latents' are inconsistent (frame_indices and latents differ in length). "
                         "Re-run VAEEncodeMasked.")
    fi = latents.frame_indices  # empty for a video without a face: every frame passes through
    if fi.numel() and (int(fi.min()) < 0 or int(fi.max()) >= latents.num_frames):
        raise InputError("'latents' refer to source frames outside 0..N-1. Re-run VAEEncodeMasked.")
    f = audio.features
    if not isinstance(f, (torch.Tensor, SpilledArray)) or f.ndim != 3 \
            or tuple(f.shape[1:]) != (AUDIO_TOKENS, AUDIO_DIM):
        shape = tuple(f.shape) if isinstance(f, (torch.Tensor, SpilledArray)) else type(f).__name__
        raise InputError(f"'audio_features' must be (frames, 50, 384), got {shape}. Re-run WhisperAudioEncode.")
    if f.shape[0] == 0:
        raise InputError("'audio_features' hold 0 frames: the audio is shorter than one video frame "
                         f"(1/{audio.fps:g} s). Use a longer audio clip.")


@dataclass(frozen=True)
class GenerationPlan:
    """Which output frames are generated from which latent row (decided once from frame_mapping)."""

    mapping: torch.Tensor   # int64 (T,): source frame of each output frame
    rows: torch.Tensor      # int64 (T,): row in latents.latents, -1 where the source frame has no face
    has_face: torch.Tensor  # bool (T,)
    skipped: torch.Tensor   # bool (T,): silent frames with a face left out (skip_silent)
    todo: torch.Tensor      # int64: output frames to generate, in order


def plan_generation(latents: MuseTalkLatents, audio_features: MuseTalkAudio, frame_mapping: str = "bounce",
                    frame_offset: int = 0, skip_silent: bool = False) -> GenerationPlan:
    t = audio_features.num_frames
    mapping = source_indices(t, latents.num_frames, frame_mapping, int(frame_offset))
    rows = latents.latent_slot()[mapping]  # row in latents.latents, -1 = source frame has no face
    has_face = rows >= 0
    skipped = torch.zeros(t, dtype=torch.bool)
    if skip_silent:
        silent = audio_features.silent.detach().to("cpu").bool().reshape(-1)
        if int(silent.numel()) != t:
            raise InputError(f"'audio_features' mark silence for {int(silent.numel())} frames but hold {t}; "
                             "re-run WhisperAudioEncode.")
        skipped = has_face & silent
    todo = torch.nonzero(has_face & ~skipped, as_tuple=False).flatten()
    return GenerationPlan(mapping, rows, has_face, skipped, todo)


def unet_decode(unet, dec, pe, decoder: str, scale: float, timesteps: torch.Tensor, lat: torch.Tensor,
                audio: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """One batch: latents (B, 8, 32, 32) + audio windows (B, 50, 384) -> uint8 faces (B, 256, 256, 3): the UNet at
    t = 0 with PE(audio) as context, then the decoder. Run inside ``fixed_time_embedding`` (iter_generated, and
    realtime.session.generate_batch for items of several live sessions)."""
    if channels_last:
        lat = lat.contiguous(memory_format=torch.channels_last)
    pred = unet(lat, timesteps, encoder_hidden_states=pe(audio)).sample
    if decoder == "vae":
        return decode_faces(dec, pred, scale)
    return decode_faces_taesd(dec, pred)


def _warn_on_other_features(models: MuseTalkModels, audio_features: MuseTalkAudio) -> None:
    """v1.0-original features are LatentSync's (right there, so the encoder says nothing); only the MuseTalk v1.5
    UNet, trained on 'reference' features, is the wrong consumer for them."""
    if getattr(audio_features, "feature_mode", "reference") == "v1.0-original" and models.version == "v15":
        log.warning("MuseTalk UNet Inpaint: v1.0-original audio features with the v1.5 UNet, which was trained on "
                    "'reference' features. Set WhisperAudioEncode's feature_mode to reference (v1.0-original is "
                    "for LatentSync Inpaint).")


def iter_generated(models: MuseTalkModels, latents: MuseTalkLatents, audio_features: MuseTalkAudio,
                   plan: GenerationPlan, batch_size: int, decoder: str = "vae", acceleration="off",
                   report: Optional[dict] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(output indices (CPU int64), uint8 (b, 256, 256, 3) faces on the device) per UNet batch, in output order.

    The batches are ``batch_size`` consecutive entries of plan.todo, whoever consumes them (all at once, or chunk
    by chunk while blending), so the faces do not depend on how the output is consumed. Latents and audio windows
    are read per batch (they may be spilled to disk for long videos). ``report`` receives acceleration_build_s."""
    speed = check_generation_settings(decoder, acceleration)
    _warn_on_other_features(models, audio_features)
    batch_size = int(batch_size)
    device = models.device
    todo = plan.todo
    if todo.numel() == 0:  # nothing to generate: no network is moved or called
        return
    if decoder == "taesd":
        from ...weights.loading import ensure_network

        ensure_network(models, "taesd")
    with models.use("unet", decoder, "pe") as (unet, dec, pe), \
            batch_step(models, unet, dec, pe, decoder, batch_size, speed) as run:
        unet_dtype = next(unet.parameters()).dtype
        source_latents = latents.latents  # a tensor, or spilled rows read per batch
        features = audio_features.features
        for start in range(0, int(todo.numel()), batch_size):
            out_idx = todo[start:start + batch_size]
            rows = plan.rows[out_idx]
            lat = source_latents[rows.to(source_latents.device)].to(device=device, dtype=unet_dtype)
            audio = features[out_idx.to(features.device)].to(device=device, dtype=unet_dtype)
            yield out_idx, run(lat, audio)
        if speed.static_shapes and report is not None:
            report["acceleration_build_s"] = round(run.build_s, 3)


@contextmanager
def batch_step(models: MuseTalkModels, unet, dec, pe, decoder: str, batch_size: int, speed: "accel.Acceleration"):
    """The UNet + decoder step ``run(latents, windows) -> uint8 faces`` for batches of at most ``batch_size`` rows,
    as the acceleration asks (eager, or accel.StaticRunner's padded / compiled / graph calls; the runner is cached
    on the models, so a live server compiles or captures once). Inside: the t = 0 time embedding, the memory
    format and the cuDNN flags of the run (iter_generated, and realtime.session.generate_batch)."""
    from ...models.vae import scaling_factor

    device = models.device
    unet_dtype = next(unet.parameters()).dtype
    scale = scaling_factor(dec) if decoder == "vae" else 1.0
    timesteps = torch.zeros(1, dtype=torch.int64, device=device)
    # set both ways: NHWC weights left by an accelerated run would change the rounding of a later default run
    accel.set_channels_last(_convolutional(unet, dec, decoder), speed.channels_last)

    def step(lat: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return unet_decode(unet, dec, pe, decoder, scale, timesteps, lat, audio, speed.channels_last)

    with fixed_time_embedding(unet, device, unet_dtype), accel.backend_flags(speed, device):
        if not speed.static_shapes:
            yield step
            return
        runner = accel.runner_for(
            models.extras, (id(unet), id(dec), id(pe), decoder, int(batch_size), speed, str(unet_dtype)),
            (unet, dec),
            lambda: accel.StaticRunner(step, batch_size, device, speed, keep=(unet.time_embedding,)))
        # the embedding module the graph / compiled code was made with (same values as this run's)
        unet.time_embedding = runner.keep[0]
        # its t = 0 embedding at this batch size cached before the step is compiled or captured (the same eager
        # computation the first call would make): compiled code that found the cache empty would be compiled again
        # at the second call, when it is full
        runner.keep[0](torch.zeros(int(batch_size), 1, device=device))
        yield runner


def generate_faces(models: MuseTalkModels, latents: MuseTalkLatents, audio_features: MuseTalkAudio,
                   frame_mapping: str = "bounce", frame_offset: int = 0, batch_size: int = 8,
                   hooks: Optional[RunHooks] = None, decoder: str = "vae", acceleration="off",
                   skip_silent: bool = False, store=None) -> MuseTalkGenerated:
    """Generate the T output faces. batch_size larger than the work simply means one batch.

    ``store``: where the (T, 256, 256, 3) faces go: None = a tensor on the device; a spill.SpilledArray for long
    videos (then MUSETALK_GENERATED.faces is that array)."""
    from ...audio.fit import fit_features
    from ...frame_mapping import output_length

    _validate(models, latents, audio_features, frame_mapping, batch_size)
    speed = check_generation_settings(decoder, acceleration)
    # the length-fit mode decides T (cut_off: shorter; silence: the whole video, audio padded with silence)
    audio_features = fit_features(audio_features, output_length(audio_features.num_frames, latents.num_frames,
                                                                frame_mapping))
    hooks = hooks or NO_HOOKS
    batch_size = int(batch_size)
    device = models.device
    t = audio_features.num_frames
    plan = plan_generation(latents, audio_features, frame_mapping, frame_offset, skip_silent)
    skipped = plan.skipped
    faces = torch.zeros((t, 256, 256, 3), dtype=torch.uint8, device=device) if store is None else store
    settings = {"frame_mapping": frame_mapping, "frame_offset": int(frame_offset), "batch_size": batch_size,
                "version": models.version, "latent_mode": latents.latent_mode, "seed": latents.seed,
                "decoder": decoder, "acceleration": speed.name, "skip_silent": bool(skip_silent),
                "device": str(device)}
    if plan.todo.numel() == 0:
        if bool(skipped.any()):
            log.info("MuseTalkUNetInpaint: every frame with a face is silent; all %d output frames keep the "
                     "original mouth.", t)
        elif latents.frame_indices.numel():
            log.warning("MuseTalk: no output frame maps to a source frame with a face (frame_mapping=%s, "
                        "frame_offset=%d); every frame passes through unchanged.", frame_mapping, int(frame_offset))
        else:
            log.info("MuseTalkUNetInpaint: the video has no face; all %d output frames pass through.", t)
    done = 0
    for out_idx, decoded in iter_generated(models, latents, audio_features, plan, batch_size, decoder,
                                           acceleration, report=settings):
        faces[out_idx.to(device) if store is None else out_idx] = decoded
        covered = int(out_idx[-1]) + 1
        hooks.step(covered - done)
        done = covered
    if done < t:
        hooks.advance(t - done)
    return MuseTalkGenerated(faces=faces, source_index=plan.mapping, has_face=plan.has_face,
                             fps=float(audio_features.fps), audio=audio_features, settings=settings,
                             frames_fingerprint=latents.frames_fingerprint,
                             skipped=skipped if bool(skipped.any()) else None)


def _convolutional(unet: torch.nn.Module, dec: torch.nn.Module, decoder: str) -> list:
    """The modules whose convolutions the memory format applies to: the UNet and the decoder side only (the VAE's
    encoder belongs to VAEEncodeMasked, which runs NCHW)."""
    if decoder == "vae":
        return [unet, dec.post_quant_conv, dec.decoder] if hasattr(dec, "decoder") else [unet, dec]
    return [unet, dec]

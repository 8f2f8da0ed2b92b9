"""The whole pipeline over a frame source in bounded memory: what the command line runs, for any video length.

    audio -> WhisperAudioEncode (checks the audio before a single frame is decoded)
          -> frame mapping: which source frames the T output frames use
          -> faces of those frames, chunk by chunk (crops and masks spilled to a temporary folder)
          -> VAE latents (model dtype, M x 8 x 32 x 32: 32 KB per face frame at fp32, spilled like the audio
             windows, 77 KB per output frame at fp32)
          -> per chunk of output frames: UNet batches, blend over the source frames re-read, encode

The stages are the ones the nodes run (face_material, latents, generate, blend), so the result is the in-memory
pipeline's bit for bit; only when each frame is read and where the per-frame material waits differ. In memory at
any time: one chunk of source frames, one chunk of output frames, one UNet batch and per-frame metadata (boxes,
landmarks, flags: about 1.2 KB per frame). The temporary folder is removed when the run ends, fails or is interrupted.

Producer/consumer overlap (a decode thread feeding the GPU) fits at ``source.read`` and ``sink``: both see whole
chunks in order.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

import numpy as np
import torch

from .blend import Blender, assemble_audio, check_blend_settings
from .errors import InputError
from .frame_mapping import MODES, source_indices
from .hooks import NO_HOOKS, RunHooks
from .sources import FrameSource
from .spill import SpillFolder, store_in
from .types import MuseTalkModels

Sink = Callable[[torch.Tensor], None]  # receives uint8 (k, H, W, 3) CPU frames, in output order
ProgressFactory = Callable[[str, int], RunHooks]


@dataclass(frozen=True)
class StreamResult:
    frame_count: int
    fps: float
    audio: Mapping[str, Any]   # the driving audio cut to exactly frame_count / fps
    faces: Any                 # MuseTalkFaces (its spilled material is gone once the run returned)
    audio_features: Any
    source_frames_used: int


def _hooks(progress: Optional[ProgressFactory], stage: str, total: int) -> RunHooks:
    return progress(stage, int(total)) if progress is not None else NO_HOOKS


def check_options(options) -> None:
    """Every setting the nodes would check, before any model or frame is touched."""
    from .faces import _check_settings
    from .generate import check_generation_settings

    _check_settings(options.parsing_mode, options.left_cheek_width, options.right_cheek_width,
                    options.box_smoothing, options.face_batch_size)
    check_blend_settings(options.blur_factor, options.upper_boundary_ratio, options.silence_fade_frames,
                         options.chunk_size)
    if options.frame_mapping not in MODES:
        raise InputError(f"frame_mapping '{options.frame_mapping}' is not known: choose one of {', '.join(MODES)}.")
    for name in ("batch_size", "vae_batch_size"):
        if int(getattr(options, name)) < 1:
            raise InputError(f"'{name}' must be at least 1, got {getattr(options, name)}.")
    check_generation_settings(options.decoder, options.acceleration)


class _FaceBuffer:
    """Generated faces between the UNet batches and the blend chunks that use them (at most one batch ahead)."""

    def __init__(self, batches: Optional[Iterator]):
        self.batches = batches
        self.faces: Dict[int, torch.Tensor] = {}
        self.covered = 0  # every todo frame below this has been generated

    def upto(self, last: int) -> None:
        while self.batches is not None and self.covered <= last:
            try:
                out_idx, decoded = next(self.batches)
            except StopIteration:
                self.batches = None
                break
            for k, i in enumerate(out_idx.tolist()):  # copies: a CUDA-graph runner reuses its output buffer
                self.faces[i] = decoded[k].clone()
            self.covered = int(out_idx[-1]) + 1

    def take(self, rows) -> torch.Tensor:
        return torch.stack([self.faces[i] for i in rows])

    def drop_before(self, stop: int) -> None:
        for i in [i for i in self.faces if i < stop]:
            del self.faces[i]

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()  # leaves models.use() and restores the UNet's time embedding


def lipsync_stream(models: MuseTalkModels, source: FrameSource, audio: Mapping[str, Any], fps: float, options,
                   sink: Sink, progress: Optional[ProgressFactory] = None, spill_dir=None,
                   chunk_frames: Optional[int] = None) -> StreamResult:
    """Lip-sync ``source`` to ``audio``; every output frame goes to ``sink`` as soon as it is blended.

    ``chunk_frames``: source frames per read in the faces stage (default: face_material.default_chunk, rounded
    to detection batches);
    output frames per chunk are ``options.chunk_size``. Neither changes the result.
    """
    from .audio import encode_audio
    from .face_material import build_faces

    check_options(options)
    spill = SpillFolder(spill_dir)
    buffer = _FaceBuffer(None)
    try:
        features = encode_audio(
            models, audio, float(fps), audio_padding_left=options.audio_padding_left,
            audio_padding_right=options.audio_padding_right, feature_mode=options.feature_mode,
            silence_threshold_db=options.silence_threshold_db, hooks=_hooks(progress, "audio", 1),
            store=store_in(spill, "audio.bin"))
        if isinstance(features, tuple):
            features = features[0]
        t, n = features.num_frames, source.num_frames
        mapping = source_indices(t, n, options.frame_mapping, options.frame_offset)
        wanted = np.zeros(n, dtype=bool)
        wanted[mapping.unique().numpy()] = True
        faces, _, _ = build_faces(
            models, source, bbox_shift=options.bbox_shift, extra_margin=options.extra_margin,
            parsing_mode=options.parsing_mode, left_cheek_width=options.left_cheek_width,
            right_cheek_width=options.right_cheek_width, face_selection=options.face_selection,
            landmark_region=options.landmark_region, box_smoothing=options.box_smoothing,
            detector_scale=options.detector_scale, batch_size=options.face_batch_size, wanted=wanted,
            chunk_frames=chunk_frames, spill=spill,
            hooks=_hooks(progress, "faces", 2 * int(wanted.sum())))
        has_face = _start_generation(models, faces, features, options, buffer, progress, spill)
        blender = Blender(faces, mapping, has_face, models.device, silent=features.silent,
                          blur_factor=options.blur_factor, upper_boundary_ratio=options.upper_boundary_ratio,
                          silence_handling=options.silence_handling,
                          silence_fade_frames=options.silence_fade_frames)
        hooks = _hooks(progress, "lip-sync", t)
        with closing(blender.stream(source, options.chunk_size, buffer.take, before=buffer.upto)) as chunks:
            for start, stop, out in chunks:
                sink(out)
                buffer.drop_before(stop)
                hooks.step(stop - start)
    finally:
        buffer.close()
        spill.close()
    out_audio = assemble_audio(audio, t, float(fps))
    return StreamResult(t, float(fps), out_audio, faces, features, int(wanted.sum()))


def _start_generation(models, faces, features, options, buffer: _FaceBuffer, progress, spill) -> torch.Tensor:
    """Latents of every face frame, then the UNet batches as a lazy iterator; returns has_face per output frame."""
    from .generate import iter_generated, plan_generation
    from .latents import encode_faces

    t = features.num_frames
    if not bool(faces.has_face.any()):  # nothing to animate: every frame passes through unchanged
        return torch.zeros(t, dtype=torch.bool)
    latents = encode_faces(models, faces, options.latent_mode, options.seed, options.vae_batch_size,
                           hooks=_hooks(progress, "vae encode", int(faces.has_face.sum())),
                           store=store_in(spill, "latents.bin"))
    # skip_silent with silence handling, as pipeline.drive does: silent frames show the source either way
    plan = plan_generation(latents, features, options.frame_mapping, options.frame_offset,
                           skip_silent=options.silence_handling)
    buffer.batches = iter_generated(models, latents, features, plan, int(options.batch_size), options.decoder,
                                    options.acceleration)
    return plan.has_face & ~plan.skipped

"""The six graph nodes' core functions called one after another on an in-memory video, as the graph runs them.

    prepare_faces -> encode_faces (per video) ; encode_audio -> generate_faces -> blend_frames (per audio)

The tests hold the pipeline core (musetalk_core.pipeline) to this chain bit for bit: the command line, batch jobs and
the graph then give the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch

from musetalk_core.hooks import NO_HOOKS, RunHooks
from musetalk_core.options import LipsyncOptions
from musetalk_core.types import MuseTalkFaces, MuseTalkLatents, MuseTalkModels

ProgressFactory = Callable[[str, int], RunHooks]


@dataclass(frozen=True)
class PreparedVideo:
    """The per-video stages, computed once and reusable with any number of audio tracks."""

    frames: torch.Tensor  # uint8 (N, H, W, 3)
    faces: MuseTalkFaces
    latents: MuseTalkLatents


@dataclass(frozen=True)
class LipsyncResult:
    images: Any            # IMAGE float (T, H, W, 3) as BlendAndAssemble returns it
    audio: Mapping[str, Any]
    fps: float
    frame_count: int
    extras: Mapping[str, Any] = field(default_factory=dict)


def _hooks(progress: Optional[ProgressFactory], stage: str, total: int) -> RunHooks:
    return progress(stage, int(total)) if progress is not None else NO_HOOKS


def prepare_video(models: MuseTalkModels, frames: torch.Tensor, options: LipsyncOptions,
                  progress: Optional[ProgressFactory] = None) -> PreparedVideo:
    """FaceDetectAndParse + VAEEncodeMasked: everything that depends on the frames only."""
    from musetalk_core.faces.prepare import prepare_faces
    from musetalk_core.generators.musetalk.latents import encode_faces

    n = int(frames.shape[0])
    faces = prepare_faces(
        models, frames, bbox_shift=options.bbox_shift, extra_margin=options.extra_margin,
        parsing_mode=options.parsing_mode, left_cheek_width=options.left_cheek_width,
        right_cheek_width=options.right_cheek_width, face_selection=options.face_selection,
        landmark_region=options.landmark_region, box_smoothing=options.box_smoothing,
        detector_scale=options.detector_scale, batch_size=options.face_batch_size,
        hooks=_hooks(progress, "faces", 2 * n))  # prepare_faces steps N (locate) + N (crop, parse)
    if isinstance(faces, tuple):  # tolerate (faces, preview, bbox_range)
        faces = faces[0]
    latents = encode_faces(models, faces, options.latent_mode, options.seed, options.vae_batch_size,
                           hooks=_hooks(progress, "vae encode", int(faces.has_face.sum())))
    return PreparedVideo(frames, faces, latents)


def drive(models: MuseTalkModels, prepared: PreparedVideo, audio: Mapping[str, Any], fps: float,
          options: LipsyncOptions, progress: Optional[ProgressFactory] = None,
          replacement_faces: Optional[torch.Tensor] = None) -> LipsyncResult:
    """WhisperAudioEncode + MuseTalkUNetInpaint + BlendAndAssemble for one audio track."""
    from musetalk_core.audio.windows import encode_audio
    from musetalk_core.blend.blender import blend_frames
    from musetalk_core.generators.musetalk.generate import generate_faces
    from nodes.audio_encode import with_encoder

    features = encode_audio(
        models, audio, float(fps), audio_padding_left=options.audio_padding_left,
        audio_padding_right=options.audio_padding_right, feature_mode=options.feature_mode,
        silence_threshold_db=options.silence_threshold_db, hooks=_hooks(progress, "audio", 1))
    if isinstance(features, tuple):
        features = features[0]
    # as the node: the windows can be encoded again for a longer output (length-fit mode silence)
    features = with_encoder(features, models, options.audio_padding_left, options.audio_padding_right,
                            options.feature_mode, options.silence_threshold_db, False)
    t = features.num_frames
    # with silence handling the blend shows the source frame on silent frames (weight 0): generating them would be
    # work for nothing, and skipping them changes no output pixel
    generated = generate_faces(models, prepared.latents, features, options.frame_mapping, options.frame_offset,
                               options.batch_size, hooks=_hooks(progress, "lip-sync", t), decoder=options.decoder,
                               acceleration=options.acceleration, skip_silent=options.silence_handling)
    blended = blend_frames(
        prepared.frames, prepared.faces, generated, blur_factor=options.blur_factor,
        upper_boundary_ratio=options.upper_boundary_ratio, silence_handling=options.silence_handling,
        silence_fade_frames=options.silence_fade_frames, chunk_size=options.chunk_size,
        replacement_faces=replacement_faces, hooks=_hooks(progress, "blend", t))
    images, out_audio, out_fps, count = _unpack_blend(blended)
    return LipsyncResult(images, out_audio, float(out_fps), int(count),
                         extras={"faces": prepared.faces, "audio_features": features, "generated": generated})


def _unpack_blend(result) -> tuple:
    """blend_frames returns the node's four outputs (images, audio, fps, frame_count)."""
    if isinstance(result, tuple):
        return tuple(result[:4])
    return result.images, result.audio, result.fps, result.frame_count


def lipsync(models: MuseTalkModels, frames: torch.Tensor, audio: Mapping[str, Any], fps: float,
            options: Optional[LipsyncOptions] = None, progress: Optional[ProgressFactory] = None) -> LipsyncResult:
    """One video (or one still image) + one audio track -> lip-synced frames, the audio cut to them, fps."""
    options = options or LipsyncOptions()
    prepared = prepare_video(models, frames, options, progress)
    return drive(models, prepared, audio, fps, options, progress)

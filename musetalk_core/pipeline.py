"""The whole lip-sync pipeline as plain function calls: the exact core functions the six graph nodes call, in order.

    load_models -> prepare_faces -> encode_audio -> encode_faces -> generate_faces -> blend_frames

The graph runs the same functions one node at a time. This in-memory form holds the whole video as frames: the
benchmarks' whole_graph stage and the tests (the streaming core must equal it bit for bit, tests/test_streaming.py)
use it. The command line and batch jobs run musetalk_core.streaming instead (the same stages chunk by chunk,
bounded memory) and take ``load`` and ``LipsyncOptions`` from here. ``LipsyncOptions`` holds every node parameter
under the node's input name, with the node's default, so a setting means the same thing in the graph, the
command line and batch jobs.
The per-video stages (faces, latents) and the per-audio stages (features, generation, blend) are separate
functions, so one prepared video can be driven by several audio tracks (workflow c does the same in the graph).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from .hooks import NO_HOOKS, RunHooks
from .types import MuseTalkFaces, MuseTalkLatents, MuseTalkModels

# stage name, total units -> hooks for that stage (the CLI makes a tqdm bar; None = no progress).
ProgressFactory = Callable[[str, int], RunHooks]


@dataclass
class LipsyncOptions:
    """Every node parameter, named exactly as the node input, with the node's default."""

    # LoadMuseTalkModels
    version: str = "v15"
    precision: str = "auto"
    device: str = "auto"
    landmark_backend: str = "torch"
    # FaceDetectAndParse
    bbox_shift: int = 0
    extra_margin: int = 10
    parsing_mode: str = "auto"
    left_cheek_width: int = 90
    right_cheek_width: int = 90
    face_selection: str = "highest_score"
    landmark_region: str = "full_frame"
    box_smoothing: float = 0.0
    detector_scale: float = 1.0
    face_batch_size: int = 8          # FaceDetectAndParse.batch_size
    # WhisperAudioEncode
    audio_padding_left: int = 2
    audio_padding_right: int = 2
    feature_mode: str = "reference"
    silence_threshold_db: float = -45.0
    # VAEEncodeMasked
    latent_mode: str = "sample"
    seed: int = 0
    vae_batch_size: int = 8           # VAEEncodeMasked.batch_size
    # MuseTalkUNetInpaint
    frame_mapping: str = "ping_pong"
    frame_offset: int = 0
    batch_size: int = 8               # MuseTalkUNetInpaint.batch_size
    decoder: str = "vae"              # "vae" (exact) or "taesd" (fast, approximate)
    acceleration: str = "off"         # musetalk_core.generators.musetalk.accel: e.g. "channels_last+cuda_graphs" on a GPU
    # BlendAndAssemble
    blur_factor: float = 0.05
    upper_boundary_ratio: float = 0.5
    silence_handling: bool = False
    silence_fade_frames: int = 3
    chunk_size: int = 16
    # The generator: "musetalk" (the six nodes above) or a LatentSync version (LoadLatentSyncModel +
    # LatentSyncInpaint; ``seed`` then seeds its noise, the CLI defaults it to upstream's 1247)
    generator: str = "musetalk"
    inference_steps: int = 20
    guidance_scale: float = 1.5
    window_length: int = 16
    alignment: str = "dwpose"
    insightface_root: Optional[str] = None

    def updated(self, **changes: Any) -> "LipsyncOptions":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}")
        return LipsyncOptions(**{**asdict(self), **changes})


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


def load(models_dirs: Sequence[Path], options: LipsyncOptions) -> MuseTalkModels:
    from .weights.loading import load_models

    return load_models([Path(d) for d in models_dirs], version=options.version, precision=options.precision,
                       device=options.device, landmark_backend=options.landmark_backend)


def prepare_video(models: MuseTalkModels, frames: torch.Tensor, options: LipsyncOptions,
                  progress: Optional[ProgressFactory] = None) -> PreparedVideo:
    """FaceDetectAndParse + VAEEncodeMasked: everything that depends on the frames only."""
    from .faces.prepare import prepare_faces
    from .generators.musetalk.latents import encode_faces

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
    from .audio.windows import encode_audio
    from .blend.blender import blend_frames
    from .generators.musetalk.generate import generate_faces

    features = encode_audio(
        models, audio, float(fps), audio_padding_left=options.audio_padding_left,
        audio_padding_right=options.audio_padding_right, feature_mode=options.feature_mode,
        silence_threshold_db=options.silence_threshold_db, hooks=_hooks(progress, "audio", 1))
    if isinstance(features, tuple):
        features = features[0]
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

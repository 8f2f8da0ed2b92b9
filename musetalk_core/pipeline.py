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

The stages are also callable one by one (``encode_features``, ``frames_used``, ``video_material``,
``material_for``, ``render``): batch jobs (musetalk_core.batch) compute the material once per job, reuse a video's
material across jobs, and render a long job as segments of output frames on several workers. ``render`` of output
frames [a, b) gives exactly those frames of the whole run: it blends the whole run's chunks (a segment starts on a
multiple of chunk_size) and generates the whole run's UNet batches that overlap [a, b) (so a UNet batch never
changes composition), over material (faces, latents, audio windows, silence weights) computed for the whole job.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from .blend.blender import Blender, assemble_audio, check_blend_settings
from .errors import InputError
from .frame_mapping import MODES, used_source_frames
from .hooks import NO_HOOKS, RunHooks
from .io.sources import FrameSource
from .io.spill import SpillFolder, store_in
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


def load(models_dirs: Sequence[Path], options) -> MuseTalkModels:
    """The networks ``options`` ask for (version, precision, device, landmark backend), from the models folders."""
    from .weights.loading import load_models

    return load_models([Path(d) for d in models_dirs], version=options.version, precision=options.precision,
                       device=options.device, landmark_backend=options.landmark_backend)


def check_options(options) -> None:
    """Every setting the nodes would check, before any model or frame is touched."""
    from .faces.prepare import _check_settings
    from .generators.musetalk.generate import check_generation_settings

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


@dataclass(frozen=True)
class Material:
    """Everything the output frames are made from, computed once per job (the segments of a split job share it).

    Picklable when its spilled parts live in a ``SpillFolder(path=...)``: then only file names travel."""

    features: Any              # MuseTalkAudio: (T, 50, 384) windows and silence flags (its AUDIO dropped: not needed)
    mapping: torch.Tensor      # int64 (T,): source frame of each output frame
    faces: Any                 # MuseTalkFaces of the source frames the output uses
    latents: Any               # MuseTalkLatents, or None when no source frame has a face
    plan: Any                  # generate.GenerationPlan, or None when no source frame has a face
    has_face: torch.Tensor     # bool (T,): output frames that get a generated mouth

    @property
    def num_frames(self) -> int:
        return int(self.mapping.numel())


def encode_features(models: MuseTalkModels, audio: Mapping[str, Any], fps: float, options, spill: SpillFolder,
                    progress: Optional[ProgressFactory] = None):
    """WhisperAudioEncode with the windows spilled to ``spill`` (checks the audio before any frame is decoded)."""
    from .audio.windows import encode_audio

    features = encode_audio(
        models, audio, float(fps), audio_padding_left=options.audio_padding_left,
        audio_padding_right=options.audio_padding_right, feature_mode=options.feature_mode,
        silence_threshold_db=options.silence_threshold_db, hooks=_hooks(progress, "audio", 1),
        store=store_in(spill, "audio.bin"))
    return features[0] if isinstance(features, tuple) else features


def frames_used(num_output: int, num_source: int, options):
    """(mapping (T,), wanted (N,) bool): which source frame each output frame shows, and which frames are used."""
    return used_source_frames(num_output, num_source, options.frame_mapping, options.frame_offset)


def video_material(models: MuseTalkModels, source: FrameSource, options, wanted: np.ndarray, spill: SpillFolder,
                   progress: Optional[ProgressFactory] = None, chunk_frames: Optional[int] = None):
    """(faces, latents or None) of the ``wanted`` source frames: the per-video stages, crops/masks/latents spilled."""
    from .faces.material import build_faces
    from .generators.musetalk.latents import encode_faces

    faces, _, _ = build_faces(
        models, source, bbox_shift=options.bbox_shift, extra_margin=options.extra_margin,
        parsing_mode=options.parsing_mode, left_cheek_width=options.left_cheek_width,
        right_cheek_width=options.right_cheek_width, face_selection=options.face_selection,
        landmark_region=options.landmark_region, box_smoothing=options.box_smoothing,
        detector_scale=options.detector_scale, batch_size=options.face_batch_size, wanted=wanted,
        chunk_frames=chunk_frames, spill=spill,
        hooks=_hooks(progress, "faces", 2 * int(np.asarray(wanted).sum())))
    if not bool(faces.has_face.any()):  # nothing to animate: every frame passes through unchanged
        return faces, None
    latents = encode_faces(models, faces, options.latent_mode, options.seed, options.vae_batch_size,
                           hooks=_hooks(progress, "vae encode", int(faces.has_face.sum())),
                           store=store_in(spill, "latents.bin"))
    return faces, latents


def material_for(features, mapping: torch.Tensor, faces, latents, options) -> Material:
    """The generation plan over the whole job: which output frames get a mouth, from which latent row."""
    from .generators.musetalk.generate import plan_generation

    t = features.num_frames
    if latents is None:
        return Material(features, mapping, faces, None, None, torch.zeros(t, dtype=torch.bool))
    # skip_silent with silence handling, as pipeline.drive does: silent frames show the source either way
    plan = plan_generation(latents, features, options.frame_mapping, options.frame_offset,
                           skip_silent=options.silence_handling)
    return Material(features, mapping, faces, latents, plan, plan.has_face & ~plan.skipped)


def _batches_for(plan, first: int, last: int, batch_size: int):
    """The plan cut to the whole run's UNet batches that hold an output frame in [first, last): batch k is
    plan.todo[k*B:(k+1)*B] whoever generates it, so a segment's faces equal the whole run's."""
    from dataclasses import replace

    todo = plan.todo
    lo = int(torch.searchsorted(todo, torch.tensor(int(first))))
    hi = int(torch.searchsorted(todo, torch.tensor(int(last))))
    if hi <= lo:
        return replace(plan, todo=todo[:0])
    b = int(batch_size)
    return replace(plan, todo=todo[lo // b * b:min(int(todo.numel()), -(-hi // b) * b)])


def render(models: MuseTalkModels, material: Material, source: FrameSource, options, sink: Sink,
           first: int = 0, last: Optional[int] = None, progress: Optional[ProgressFactory] = None) -> None:
    """Generate, blend and hand to ``sink`` output frames first..last-1 (default: all), in order.

    ``first`` must be a multiple of options.chunk_size (or 0) for the blend chunks to be the whole run's."""
    from .generators.musetalk.generate import iter_generated

    t = material.num_frames
    last = t if last is None else min(int(last), t)
    if first % int(options.chunk_size):
        raise ValueError(f"a segment must start on a multiple of chunk_size ({options.chunk_size}), got {first}")
    buffer = _FaceBuffer(None)
    try:
        if material.plan is not None:
            plan = _batches_for(material.plan, first, last, options.batch_size)
            buffer.batches = iter_generated(models, material.latents, material.features, plan,
                                            int(options.batch_size), options.decoder, options.acceleration)
        features = material.features
        blender = Blender(material.faces, material.mapping, material.has_face, models.device,
                          silent=features.silent, blur_factor=options.blur_factor,
                          upper_boundary_ratio=options.upper_boundary_ratio,
                          silence_handling=options.silence_handling,
                          silence_fade_frames=options.silence_fade_frames)
        hooks = _hooks(progress, "lip-sync", last - first)
        with closing(blender.stream(source, options.chunk_size, buffer.take, before=buffer.upto,
                                    first=first, last=last)) as chunks:
            for start, stop, out in chunks:
                sink(out)
                buffer.drop_before(stop)
                hooks.step(stop - start)
    finally:
        buffer.close()


def lipsync_stream(models: MuseTalkModels, source: FrameSource, audio: Mapping[str, Any], fps: float, options,
                   sink: Sink, progress: Optional[ProgressFactory] = None, spill_dir=None,
                   chunk_frames: Optional[int] = None) -> StreamResult:
    """Lip-sync ``source`` to ``audio``; every output frame goes to ``sink`` as soon as it is blended.

    ``chunk_frames``: source frames per read in the faces stage (default 64, at most face_material.CHUNK_PIXELS, rounded
    to detection batches);
    output frames per chunk are ``options.chunk_size``. Neither changes the result.
    """
    check_options(options)
    spill = SpillFolder(spill_dir)
    try:
        features = encode_features(models, audio, fps, options, spill, progress)
        mapping, wanted = frames_used(features.num_frames, source.num_frames, options)
        faces, latents = video_material(models, source, options, wanted, spill, progress, chunk_frames)
        material = material_for(features, mapping, faces, latents, options)
        render(models, material, source, options, sink, progress=progress)
    finally:
        spill.close()
    t = material.num_frames
    out_audio = assemble_audio(audio, t, float(fps))
    return StreamResult(t, float(fps), out_audio, faces, features, int(wanted.sum()))

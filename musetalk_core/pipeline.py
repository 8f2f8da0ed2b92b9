"""The pipeline core: one video (a frame source) + one audio -> lip-synced frames, in bounded memory, for any
generator. The command line, batch jobs (also on Ray) and the benchmarks run it; the graph's nodes call the same
stage functions one node at a time.

    audio -> Whisper windows (checked against the generator before a single frame is decoded)
          -> frame mapping: which source frames the T output frames use (frame_mapping.py, the one place)
          -> faces of those frames, chunk by chunk (the generator says whether it needs crops and parsing masks)
          -> the generator's per-video material (MuseTalk: latents; LatentSync: aligned crops and matrices)
          -> the generator's plan: which output frames are generated
          -> per chunk of output frames: the generator's batches, its paste-back, the sink (e.g. the video writer)

Per-frame material of long videos waits in a temporary folder (io.spill), removed when the run ends, fails or is
interrupted. In memory at any time: one chunk of source frames, one chunk of output frames, one generator batch
(a UNet batch, or a 16-frame LatentSync window) and per-frame metadata (about 1.2 KB per frame).

The stages are callable one by one (``encode_features``, ``frames_used``, ``video_material``, ``material_for``,
``render``): batch jobs compute the material once per job, reuse a video's material across jobs, and render a long
job as segments of output frames on several workers. ``render`` of output frames [a, b) gives exactly those frames
of the whole run: the blend chunks are the whole run's (a segment starts on a multiple of chunk_size) and the
generator makes the whole run's batches that overlap [a, b).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from .errors import InputError
from .frame_mapping import used_source_frames
from .hooks import NO_HOOKS, RunHooks
from .io.sources import FrameSource
from .io.spill import SpillFolder, store_in
from .generators.base import Generator, Plan
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
    tracks: Any = None         # faces.tracks.FaceTracks when speakers were tracked
    speakers: tuple = ()       # per speaker: (its face track or None, its MuseTalkAudio, its MuseTalkFaces)


def _hooks(progress: Optional[ProgressFactory], stage: str, total: int) -> RunHooks:
    return progress(stage, int(total)) if progress is not None else NO_HOOKS


def load(models_dirs: Sequence[Path], options) -> MuseTalkModels:
    """The shared stages' networks for ``options`` (and MuseTalk's own when it is the generator)."""
    from .generators import load_shared_networks

    return load_shared_networks(models_dirs, options)


def load_run(models_dirs: Sequence[Path], options, unet_config=None):
    """(shared networks, generator) for ``options``: everything a run needs, loaded once."""
    from .generators import load_generator

    models = load(models_dirs, options)
    return models, load_generator(models_dirs, models, options, unet_config=unet_config)


def check_options(options) -> None:
    """Every setting against its declaration (options.py: type, range, choices), and the acceleration's
    combination, which a declaration cannot say, before any model or frame is touched."""
    from .generators.musetalk.generate import check_generation_settings
    from .options import check_options as check_declared

    from .faces.selection import parse_selection

    check_declared(options)
    check_generation_settings(options.decoder, options.acceleration)
    parse_selection(options.speaker_selection)


@dataclass(frozen=True)
class Material:
    """Everything the output frames are made from, computed once per job (the segments of a split job share it).

    Picklable when its spilled parts live in a ``SpillFolder(path=...)``: then only file names travel."""

    features: Any              # MuseTalkAudio: (T, 50, 384) windows and silence flags (its AUDIO dropped: not needed)
    mapping: torch.Tensor      # int64 (T,): source frame of each output frame
    faces: Any                 # MuseTalkFaces of the source frames the output uses
    prepared: Any              # the generator's per-video material, or None when no source frame has a face
    plan: Plan                 # the generator's plan: plan.has_face (T,) output frames that get a generated face

    @property
    def num_frames(self) -> int:
        return int(self.mapping.numel())


def encode_features(models: MuseTalkModels, audio: Mapping[str, Any], fps: float, options, spill: SpillFolder,
                    progress: Optional[ProgressFactory] = None, generator: Optional[Generator] = None,
                    num_source: Optional[int] = None, num_frames: Optional[int] = None):
    """WhisperAudioEncode with the windows spilled to ``spill``; the audio and the generator's demands on the
    windows are checked before any frame is decoded. The windows are those of the output frames: T =
    frame_mapping.output_length(audio frames, ``num_source``, options.frame_mapping) when the number of source
    frames is given (``num_frames``: T decided by the caller, e.g. the longest of several speakers' audio)."""
    from functools import partial

    from .audio.fit import audio_frames, encode_fitted
    from .audio.windows import encode_audio
    from .frame_mapping import output_length

    if num_frames is None and num_source is not None:
        num_frames = output_length(audio_frames(audio, fps), num_source, options.frame_mapping)
    settings = dict(audio_padding_left=options.audio_padding_left, audio_padding_right=options.audio_padding_right,
                    feature_mode=options.feature_mode, silence_threshold_db=options.silence_threshold_db,
                    audio_segments=options.audio_segments,
                    hooks=_hooks(progress, "audio", 1), store=store_in(spill, "audio.bin"))
    if num_frames is None:
        features = encode_audio(models, audio, float(fps), **settings)
    else:
        features = encode_fitted(partial(encode_audio, models), audio, float(fps), num_frames, **settings)
    features = features[0] if isinstance(features, tuple) else features
    if generator is not None:
        generator.check_audio(features)
    return features


def frames_used(num_output: int, num_source: int, options):
    """(mapping (T,), wanted (N,) bool): which source frame each output frame shows, and which frames are used."""
    return used_source_frames(num_output, num_source, options.frame_mapping, options.frame_offset)


def video_faces(models: MuseTalkModels, source: FrameSource, options, wanted: np.ndarray, spill: SpillFolder,
                crops: bool = True, progress: Optional[ProgressFactory] = None, chunk_frames: Optional[int] = None,
                track_boxes: Optional[torch.Tensor] = None):
    """FaceDetectAndParse over the ``wanted`` source frames (crops and parsing masks only when ``crops``);
    ``track_boxes``: one speaker's face track (faces/tracks.py) instead of face_selection's pick per frame."""
    from .faces.material import build_faces

    faces, _, _ = build_faces(
        models, source, bbox_shift=options.bbox_shift, extra_margin=options.extra_margin,
        parsing_mode=options.parsing_mode, left_cheek_width=options.left_cheek_width,
        right_cheek_width=options.right_cheek_width, face_selection=options.face_selection,
        landmark_region=options.landmark_region, box_smoothing=options.box_smoothing,
        detector_scale=options.detector_scale, batch_size=options.face_batch_size, wanted=wanted,
        chunk_frames=chunk_frames, spill=spill, crops=crops, track_boxes=track_boxes,
        hooks=_hooks(progress, "faces", (2 if crops else 1) * int(np.asarray(wanted).sum())))
    return faces


def video_material(models: MuseTalkModels, generator: Generator, source: FrameSource, options, wanted: np.ndarray,
                   spill: SpillFolder, progress: Optional[ProgressFactory] = None,
                   chunk_frames: Optional[int] = None, track_boxes: Optional[torch.Tensor] = None):
    """(faces, the generator's per-video material or None): everything that depends on the video only."""
    faces = video_faces(models, source, options, wanted, spill, generator.face_crops, progress, chunk_frames,
                        track_boxes)
    prepared = generator.prepare(source, faces, wanted, spill, lambda stage, total: _hooks(progress, stage, total))
    return faces, prepared


def material_for(generator: Generator, features, mapping: torch.Tensor, faces, prepared) -> Material:
    """The generator's plan over the whole job: which output frames get a generated face."""
    return Material(features, mapping, faces, prepared, generator.plan(prepared, features, mapping))


# render's ``generate_ahead`` by default: True, False, or "auto": the generator's batches are made ahead of the
# blend when the generator runs on a CUDA GPU (the GPU computes the next batches while the CPU blends and hands on
# this chunk). Not on the CPU: there both compete for the same cores (2 cores, tiny networks: no gain beyond the
# noise, BENCHMARKS.md "Batches made ahead of the blend").
GENERATE_AHEAD = "auto"


class _FaceBuffer:
    """Generated faces between the generator's batches and the blend chunks that use them. The one place the
    generator's batches are consumed.

    ``ahead``: the batches are made on a worker thread (io.background.Ahead; one batch queued, one in the making
    beyond those this chunk needs), so the UNet and decoder of the next batches overlap the blend, the reads and
    the hand-over of this chunk. The same batches in the same order either way: the frames do not change. Without
    ``ahead`` a batch is made when a chunk needs it."""

    def __init__(self, batches: Iterator, ahead: bool = False, device: torch.device = torch.device("cpu")):
        if ahead:
            from .io.background import Ahead

            # the rows are copied on the worker: a CUDA-graph runner reuses its output buffer at the next replay
            batches = Ahead(batches, depth=1, copy=_copied_rows, name="musetalk-generate",
                            context=_callers_stream(device))
        self.batches: Optional[Iterator] = batches
        self.faces: Dict[int, torch.Tensor] = {}
        self.covered = 0  # every planned frame below this has been generated

    def first(self) -> None:
        """Wait for the first batch when it is made ahead (see io.background.Ahead.first)."""
        if hasattr(self.batches, "first"):
            self.batches.first()

    def upto(self, last: int) -> None:
        while self.batches is not None and self.covered <= last:
            try:
                out_idx, rows = next(self.batches)
            except StopIteration:
                self.batches = None
                break
            if isinstance(rows, torch.Tensor):  # made in this thread: copy before the next batch
                rows = _copied_rows((out_idx, rows))[1]
            for i, face in zip(out_idx.tolist(), rows):
                self.faces[i] = face
            self.covered = int(out_idx[-1]) + 1

    def take(self, rows) -> torch.Tensor:
        return torch.stack([self.faces[i] for i in rows])

    def drop_before(self, stop: int) -> None:
        for i in [i for i in self.faces if i < stop]:
            del self.faces[i]

    def close(self) -> None:
        if self.batches is not None and hasattr(self.batches, "close"):
            self.batches.close()  # e.g. leaves models.use() and restores the UNet's time embedding


def _callers_stream(device: torch.device):
    """For the worker: the caller's CUDA device and current stream, so both threads queue their kernels in one order
    (the blend reads faces the worker made); nothing to set elsewhere."""
    from contextlib import ExitStack, nullcontext

    device = torch.device(device)
    if device.type != "cuda":
        return nullcontext
    if device.index is None:  # "cuda" means the caller's current device; the worker's would be 0
        device = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.current_stream(device)

    def context():
        stack = ExitStack()
        stack.enter_context(torch.cuda.device(device))
        stack.enter_context(torch.cuda.stream(stream))
        return stack

    return context


def _copied_rows(batch):
    """(output indices, one copy per generated face): a CUDA-graph runner reuses its output buffer."""
    out_idx, decoded = batch
    return out_idx, [decoded[k].clone() for k in range(int(out_idx.numel()))]


def render(generator: Generator, material, source: FrameSource, options, sink: Sink,
           first: int = 0, last: Optional[int] = None, progress: Optional[ProgressFactory] = None,
           generate_ahead=None) -> None:
    """Generate, blend and hand to ``sink`` output frames first..last-1 (default: all), in order.

    ``material``: a Material, or one per speaker (speakers.py: same frame mapping, each its own faces and audio),
    pasted in that order over the same source frames. ``first`` must be a multiple of options.chunk_size (or 0)
    for the blend chunks to be the whole run's. ``generate_ahead``: True makes the generator's batches on a
    worker thread ahead of the blend (_FaceBuffer; one speaker only), "auto" when the generator runs on a CUDA GPU;
    default GENERATE_AHEAD. The frames are the same either way."""
    materials = [material] if isinstance(material, Material) else list(material)
    t = materials[0].num_frames
    last = t if last is None else min(int(last), t)
    if first % int(options.chunk_size):
        raise ValueError(f"a segment must start on a multiple of chunk_size ({options.chunk_size}), got {first}")
    buffers = []
    # the generators' batches run inside models.use's inference mode, entered and left inside generator functions:
    # several speakers' batches interleave, and their exits would restore each other's mode (leaving the caller in
    # inference mode); one outer block restores the caller's mode whatever order they end in
    with torch.inference_mode():
        # one speaker only: several speakers' batches share the networks (and a compiled or captured step's
        # buffers), so they are made in turn on this thread
        ahead = GENERATE_AHEAD if generate_ahead is None else generate_ahead
        _render_layers(generator, materials, source, options, sink, first, last, progress, buffers,
                       ahead if len(materials) == 1 else False)


def _render_layers(generator, materials, source, options, sink, first, last, progress, buffers, ahead) -> None:
    from .blend.chunk_loop import stream_layers

    try:
        layers = []
        for m in materials:
            blender = generator.blender(m.prepared, m.faces, m.mapping, m.plan, m.features, options)
            # "auto": batches made on a CUDA GPU only (MPS is not safe to drive from two threads at once; on the
            # CPU it does not pay)
            on_worker = ahead is True or (ahead == "auto" and generator.device.type == "cuda")
            buffers.append(_FaceBuffer(generator.batches(m.prepared, m.features, m.plan, first, last), on_worker,
                                       generator.device))
            # the first batch made before any other GPU work: a CUDA graph is captured there, alone
            buffers[-1].first()
            layers.append((blender, buffers[-1].take, buffers[-1].upto))
        hooks = _hooks(progress, "lip-sync", last - first)
        with closing(stream_layers(layers, source, options.chunk_size, first=first, last=last)) as chunks:
            for start, stop, out in chunks:
                sink(out)
                for buffer in buffers:
                    buffer.drop_before(stop)
                hooks.step(stop - start)
    finally:
        for buffer in reversed(buffers):  # last started, first closed
            buffer.close()


def speaker_materials(models: MuseTalkModels, generator: Generator, source: FrameSource, speakers, fps: float,
                      options, spill: SpillFolder, progress: Optional[ProgressFactory] = None,
                      chunk_frames: Optional[int] = None, prepared_video=None):
    """(one Material per speaker, the face tracks or None, the track of each speaker): see speakers.py. All share T
    (the length-fit mode over the longest audio) and the frame mapping; each speaker's material spills to its own
    folder inside ``spill``. ``prepared_video``: (faces, the generator's material) of every source frame, computed
    before (an avatar: realtime/avatar_lipsync.py) instead of the per-video stages; one speaker only."""
    from .audio.fit import audio_frames
    from .faces.material import dilate_frames, smoothing_radius
    from .faces.tracks import detect_tracks
    from .frame_mapping import output_length
    from .speakers import assign_tracks, needs_tracks, speaker_list, track_landmarks

    speakers = speaker_list(None, options, speakers)  # selections parsed and checked
    if prepared_video is not None and needs_tracks(speakers):
        raise InputError("A prepared video (an avatar) holds one face: it takes one audio with speaker_selection "
                         "'default'. Run several speakers from the video itself.")
    longest = max(audio_frames(s.audio, fps) for s in speakers)
    t = output_length(longest, source.num_frames, options.frame_mapping)
    # inside ``spill``, removed with it (or kept with it: a batch job's folder)
    folders = [spill if len(speakers) == 1 else SpillFolder(path=spill.path / f"speaker{i}")
               for i in range(len(speakers))]
    features = [encode_features(models, s.audio, fps, options, folder, progress, generator, num_frames=t)
                for s, folder in zip(speakers, folders)]
    mapping, wanted = frames_used(t, source.num_frames, options)
    if prepared_video is not None or not needs_tracks(speakers):
        faces, prepared = prepared_video or video_material(models, generator, source, options, wanted, spill,
                                                           progress, chunk_frames)
        return [material_for(generator, features[0], mapping, faces, prepared)], None, [None]
    examined = dilate_frames(wanted, smoothing_radius(float(options.box_smoothing)))  # the faces stage's located frames
    tracks = detect_tracks(models, source, examined, detector_scale=options.detector_scale,
                           batch_size=options.face_batch_size, chunk_frames=chunk_frames,
                           hooks=_hooks(progress, "face tracks", int(examined.sum())))
    chosen = assign_tracks(speakers, tracks, fps, mapping, track_landmarks(models, source, tracks, options))
    materials = []
    for k, feats, folder in zip(chosen, features, folders):
        faces, prepared = video_material(models, generator, source, options, wanted, folder, progress, chunk_frames,
                                         tracks.boxes[k])
        materials.append(material_for(generator, feats, mapping, faces, prepared))
    return materials, tracks, chosen


def lipsync_stream(models: MuseTalkModels, source: FrameSource, audio: Optional[Mapping[str, Any]], fps: float,
                   options, sink: Sink, progress: Optional[ProgressFactory] = None, spill_dir=None,
                   chunk_frames: Optional[int] = None, generator: Optional[Generator] = None,
                   speakers: Optional[Sequence] = None, prepared_video=None) -> StreamResult:
    """Lip-sync ``source`` to ``audio`` (or each of several ``speakers``: speakers.Speaker, each an AUDIO and the
    face that speaks it); every output frame goes to ``sink`` as soon as it is blended.

    ``models``: the shared stages' networks (Whisper, face detector, landmarks, parser); ``generator``: default
    MuseTalk on ``models``. ``chunk_frames``: source frames per read in the faces stage (default 64, at most
    faces.material.CHUNK_PIXELS, rounded to detection batches); output frames per chunk are ``options.chunk_size``.
    Neither changes the result. One audio with speaker_selection 'default' is the reference's run exactly.
    ``prepared_video``: (faces, generator material) of every frame of ``source`` made before (an avatar), used
    instead of the faces and VAE stages (speaker_materials).
    """
    from .blend.audio_mix import mix_audio
    from .speakers import speaker_list

    check_options(options)
    speakers = speaker_list(audio, options, speakers)
    if generator is None:
        from .generators.musetalk.generator import MuseTalkGenerator

        generator = MuseTalkGenerator(models, options)
    spill = SpillFolder(spill_dir)
    try:
        materials, tracks, chosen = speaker_materials(models, generator, source, speakers, fps, options, spill,
                                                      progress, chunk_frames, prepared_video)
        render(generator, materials, source, options, sink, progress=progress)
    finally:
        spill.close()
        generator.close()
    first = materials[0]
    t = first.num_frames
    out_audio = mix_audio([s.audio for s in speakers], t, float(fps))
    used = int(np.unique(first.mapping.numpy()).size)
    return StreamResult(t, float(fps), out_audio, first.faces, first.features, used, tracks,
                        tuple(zip(chosen, (m.features for m in materials), (m.faces for m in materials))))

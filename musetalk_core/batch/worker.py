"""The work of a batch, as three kinds of task that any worker (this process, or a Ray actor) runs the same way.

- ``prepare``: the job's material, once per job: audio features (the whole audio, so every segment's windows sit
  on the whole run's grid) and the per-video material (faces, latents) of the source frames it uses. The per-video
  material is shared: jobs with the same video, the same frames used and the same per-video options reuse it
  (computed once, under a file lock, in the work folder's ``videos/``). Returns the job's plan (frames, segments).
- ``render``: output frames [a, b) of a job from that material (pipeline.render) into a segment file, or, for a
  job of one segment, straight into the output with its audio, exactly as ``python -m musetalk_core lipsync``.
- ``join``: the segments into the output (video packets copied, the audio encoded once).

Everything a task writes goes to the job's work folder first and is renamed into place when complete, so a
worker killed mid-task leaves nothing half-written where a rerun or a retry would take it for finished. A task
never raises for a bad job: it returns an ``Outcome`` with the error, so one bad job cannot stop the others.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import pickle
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from ..errors import MuseTalkError
from .jobs import Job, job_dir, work_root, write_atomic
from .segments import plan_segments, segment_path

log = logging.getLogger(__name__)

# the options that decide the faces stage; with the generator's material_settings() they decide the per-video
# material: equal settings, frames and video = reusable
FACE_OPTIONS = ("bbox_shift", "extra_margin", "parsing_mode", "left_cheek_width", "right_cheek_width",
                "face_selection", "landmark_region", "box_smoothing", "detector_scale", "face_batch_size",
                "version", "landmark_backend")


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    frames: int                             # T output frames
    fps: Fraction
    segments: Tuple[Tuple[int, int], ...]   # output frames [a, b) per segment
    reused_video: bool                      # the per-video material came from an earlier job


@dataclass(frozen=True)
class Task:
    kind: str                                   # "prepare" | "render" | "join"
    job: Job
    plan: Optional[JobPlan] = None
    segment: Optional[Tuple[int, int]] = None
    attempt: int = 1

    @property
    def key(self) -> Tuple:
        return (self.job.index, self.kind, self.segment)


@dataclass(frozen=True)
class Outcome:
    value: Any = None            # prepare: JobPlan; render/join: frames written
    error: Optional[str] = None


Report = Callable[[Tuple, int], None]   # (task key, frames just blended)


def _dump(path: Path, value) -> None:
    """Pickle ``value`` to ``path`` atomically."""
    write_atomic(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _load(path: Path):
    # our own files in our own work folder (never user input): pickle is how the material's file handles travel
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _place(finished: Path, output: Path) -> None:
    """The finished file to its output path in one rename (same filesystem: the work folder is under it)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    os.replace(finished, output)


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (flock: between processes and, on a shared filesystem, machines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Worker:
    """Runs tasks; loads the networks on the first task and keeps them for the next ones."""

    def __init__(self, output_dir: Path, models_dirs: Sequence[Path], split_seconds: Optional[float] = None,
                 report: Optional[Report] = None, hook: Optional[Callable[[str, int], None]] = None):
        self.output_dir = Path(output_dir)
        self.models_dirs = [Path(d) for d in models_dirs]
        self.split_seconds = split_seconds
        self.report = report
        self.hook = hook  # called in the worker at every blended chunk with (output name, frames of this task)
        self._models: dict = {}

    # ------------------------------------------------------------------------------------------------ tasks

    def run(self, task: Task) -> Outcome:
        try:
            return Outcome(value=getattr(self, task.kind)(task))
        except MuseTalkError as exc:
            return Outcome(error=str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure of one job is that job's error, never the batch's
            from ..out_of_memory import is_out_of_memory, out_of_memory_error

            if is_out_of_memory(exc):  # what ran out where, and what to lower on the job's line
                return Outcome(error=str(out_of_memory_error(task.kind, exc, nothing_written=False)))
            log.exception("job line %d (%s) failed", task.job.line, task.job.name)
            return Outcome(error=f"{type(exc).__name__}: {exc}")

    def prepare(self, task: Task) -> JobPlan:
        from ..io.spill import SpillFolder
        from ..pipeline import encode_features, frames_used, material_for

        job = task.job
        folder = job_dir(self.output_dir, job)
        plan_file = folder / "plan.pkl"
        split = self.split_seconds if job.split_seconds is None else (job.split_seconds or None)
        if plan_file.is_file():  # a rerun after an interruption: reuse the material if it is all still there
            try:
                _load(folder / "material.pkl")
                plan = _load(plan_file)
            except (OSError, EOFError, pickle.UnpicklingError, MuseTalkError):
                pass  # something was deleted: compute it again
            else:  # the material holds for any split; the segments follow this run's split
                segments = tuple(plan_segments(plan.frames, float(plan.fps), job.options.chunk_size, split))
                if segments != plan.segments:
                    plan = dataclasses.replace(plan, segments=segments)
                    _dump(plan_file, plan)
                return plan
        source, fps = self._source(job)
        if self._tracked(job):
            return self._prepare_speakers(job, source, fps, folder, plan_file, split)
        try:
            audio = self._audio(job, fps)
            models, generator = self.models_for(job)
            features = encode_features(models, audio, fps, job.options, SpillFolder(path=folder / "audio"),
                                       generator=generator, num_source=source.num_frames)
            features = dataclasses.replace(features, audio=None)  # the segments need the windows, not the waveform
            mapping, wanted = frames_used(features.num_frames, source.num_frames, job.options)
            faces, prepared, reused = self._video_material(models, generator, source, job, wanted)
            _dump(folder / "material.pkl", material_for(generator, features, mapping, faces, prepared))
        finally:
            source.close()
        t = int(mapping.numel())
        plan = JobPlan(job.id, t, Fraction(fps), tuple(plan_segments(t, float(fps), job.options.chunk_size, split)),
                       reused)
        _dump(plan_file, plan)
        return plan

    @staticmethod
    def _tracked(job: Job) -> bool:
        from ..faces.selection import parse_selection

        return bool(job.speakers) or parse_selection(job.options.speaker_selection).tracked

    def _prepare_speakers(self, job: Job, source, fps, folder: Path, plan_file: Path, split) -> JobPlan:
        """prepare for a job with several speakers or a chosen face (pipeline.speaker_materials): one material per
        speaker, kept in the job's folder; the per-video material is not shared with other jobs."""
        from ..io.spill import SpillFolder
        from ..pipeline import speaker_materials

        try:
            models, generator = self.models_for(job)
            materials, _, _ = speaker_materials(models, generator, source, self._speakers(job, fps), float(fps),
                                                job.options, SpillFolder(path=folder / "speakers"))
            materials = [dataclasses.replace(m, features=dataclasses.replace(m.features, audio=None, encoder=None))
                         for m in materials]
            _dump(folder / "material.pkl", materials)
        finally:
            source.close()
        t = materials[0].num_frames
        plan = JobPlan(job.id, t, Fraction(fps), tuple(plan_segments(t, float(fps), job.options.chunk_size, split)),
                       False)
        _dump(plan_file, plan)
        return plan

    def _speakers(self, job: Job, fps):
        from ..speakers import Speaker

        if not job.speakers:
            return [Speaker(self._audio(job, fps), job.options.speaker_selection, "audio")]
        return [Speaker(self._read(path, fps, f"speaker audio ({path})"), select, f"speaker {i + 1} ({path.name})")
                for i, (path, select) in enumerate(job.speakers)]

    def _clip_audio(self, job: Job, plan) -> dict:
        """The output's audio: the job's audio (or its speakers' mixed) cut to the output's length."""
        from ..blend.audio_mix import mix_audio

        audios = [s.audio for s in self._speakers(job, plan.fps)]
        return mix_audio(audios, plan.frames, float(plan.fps))

    def render(self, task: Task) -> int:
        from ..pipeline import render
        from ..io.audio_file import audio_layout
        from ..io.video_write import VideoWriter

        job, plan, (a, b) = task.job, task.plan, task.segment
        folder = job_dir(self.output_dir, job)
        whole = len(plan.segments) == 1
        target = folder / f"output{job.output.suffix}" if whole else segment_path(folder, (a, b))
        if not whole and target.is_file():  # finished by an earlier run or attempt
            return b - a
        material = _load(folder / "material.pkl")
        audio = self._clip_audio(job, plan) if whole else None
        source, _ = self._source(job)
        try:
            _, generator = self.models_for(job)
            height, width = source.frame_size
            with VideoWriter(target, plan.fps, width, height, job.crf, *audio_layout(audio),
                             preset=job.preset) as writer:
                render(generator, material, source, job.options, writer.write, first=a, last=b,
                       progress=self._progress(task))
                writer.finish(audio)
        finally:
            source.close()
        if whole:
            _place(target, job.output)
        return b - a

    def join(self, task: Task) -> int:
        from ..errors import InputError
        from ..io.video_write import join_segments

        job, plan = task.job, task.plan
        folder = job_dir(self.output_dir, job)
        parts = [segment_path(folder, s) for s in plan.segments]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise InputError(f"segments {missing} of the job are missing from '{folder}'; run the batch again.")
        audio = self._clip_audio(job, plan)
        target = folder / f"output{job.output.suffix}"
        frames = join_segments(target, parts, plan.fps, audio)
        if frames != plan.frames:
            raise InputError(f"the joined segments hold {frames} frames, not {plan.frames}; delete '{folder}' "
                             "and run the batch again.")
        _place(target, job.output)
        return frames

    # ------------------------------------------------------------------------------------------------ parts

    def models_for(self, job: Job):
        """(shared networks, generator) for this job's model options, loaded once; another set replaces them (one
        set in memory). The generator carries the job's settings: made anew per job over the same networks."""
        from ..generators import load_generator
        from ..pipeline import load

        if job.load_key not in self._models:
            self._models.clear()
            models = load(self.models_dirs, job.options)
            self._models[job.load_key] = (models, load_generator(self.models_dirs, models, job.options,
                                                                 unet_config=job.unet_config))
        models, generator = self._models[job.load_key]
        return models, generator.with_options(job.options)

    def _source(self, job: Job):
        """(frame source, exact fps) as the lipsync command opens them."""
        from ..io import image_file, video_read
        from ..io.sources import TensorSource

        if job.video is not None:
            source = video_read.open_video(job.video)
            return source, Fraction(source.fps)
        return TensorSource(image_file.read_image(job.image)), Fraction(job.fps or 25)

    @classmethod
    def _audio(cls, job: Job, fps) -> dict:
        return cls._read(job.audio, fps, f"'audio' ({job.audio})")

    @staticmethod
    def _read(path: Path, fps, label: str) -> dict:
        from ..io import audio_file

        audio = audio_file.read_audio(path)
        audio_file.check_audio_duration(audio, fps, label)
        return audio

    def _video_material(self, models, generator, source, job: Job, wanted: np.ndarray):
        """(faces, the generator's material, reused): computed once per (video, frames used, per-video settings,
        networks)."""
        from ..io.spill import SpillFolder
        from ..pipeline import video_material

        key = {"video": source.fingerprint(), "wanted": hashlib.sha1(np.packbits(wanted).tobytes()).hexdigest(),
               "options": {**{k: getattr(job.options, k) for k in FACE_OPTIONS}, **generator.material_settings()},
               "device": str(models.device), "dtype": str(models.dtype)}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
        videos = work_root(self.output_dir) / "videos"
        folder, done = videos / digest, videos / digest / "material.pkl"
        with _locked(videos / f"{digest}.lock"):  # a second job with this video waits and then reuses
            if done.is_file():
                faces, prepared = _load(done)
                return faces, prepared, True
            shutil.rmtree(folder, ignore_errors=True)  # what a killed worker left
            faces, prepared = video_material(models, generator, source, job.options, wanted,
                                             SpillFolder(path=folder))
            _dump(done, (faces, prepared))
            return faces, prepared, False

    def _progress(self, task: Task):
        from ..hooks import NO_HOOKS, RunHooks

        done = [0]

        def advance(n: int) -> None:
            done[0] += int(n)
            if self.report is not None:
                self.report(task.key, int(n))
            if self.hook is not None:
                self.hook(task.job.name, done[0])

        return lambda stage, total: RunHooks(advance=advance) if stage == "lip-sync" else NO_HOOKS

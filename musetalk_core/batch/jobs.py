"""JOBS.jsonl: one lip-sync job per line, checked before anything runs, and where each job's files live.

A line is a JSON object: ``video`` or ``image``, ``audio``, ``output`` (a file name under --output-dir) and any
option of ``python -m musetalk_core lipsync`` under its name, with underscores or dashes (``bbox_shift`` or
``bbox-shift``; ``fps``, ``crf`` and ``preset`` too), and ``split_seconds`` to split this job otherwise than
--split-seconds says (0 = never split it). The values go through the lipsync command's own parser
(musetalk_core.lipsync_args, made from the option declarations), so a job means exactly what the same command line
means, and a bad value gets the same message. Relative paths are relative to
the JOBS file's folder. Blank lines and lines starting with ``#`` are skipped.

A line that cannot be used (not JSON, unknown option, bad value, two jobs writing one output) becomes a ``BadJob``
with the reason and the fix: it is reported in the summary and does not stop the other jobs.

Resumability: a job's id is a digest of everything that decides its output (inputs with their size and
modification time, options, output), so a rerun of the same file recognises finished jobs, and an edited job
(other options, a replaced input) runs again.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..errors import InputError
from ..lipsync_args import add_lipsync_arguments, options_from_args
from ..options import LipsyncOptions

WORK = ".musetalk-work"   # under --output-dir: per-job work folders, shared per-video material, done markers
LOAD_OPTIONS = ("generator", "version", "precision", "device", "landmark_backend")  # the networks a worker loads
PATH_KEYS = ("video", "image", "audio")


@dataclass(frozen=True)
class Job:
    index: int                  # position among the file's jobs (summary order)
    line: int                   # line number in JOBS.jsonl (for messages)
    name: str                   # the output name as written in the line
    video: Optional[Path]
    image: Optional[Path]
    audio: Optional[Path]       # None when the job has speakers
    output: Path                # absolute
    fps: Optional[Fraction]     # --image only
    crf: int
    options: LipsyncOptions
    id: str
    split_seconds: Optional[float] = None  # None: the batch's --split-seconds; 0: never split this job
    preset: str = "medium"                 # libx264 preset (video_write.X264_PRESETS)
    unet_config: Optional[str] = None      # LatentSync: an upstream UNet config file (the CLI's --unet-config)
    speakers: Tuple[Tuple[Path, str], ...] = ()  # several speakers: (audio file, face selection) each

    @property
    def audio_files(self) -> Tuple[Path, ...]:
        return tuple(p for p, _ in self.speakers) if self.speakers else (self.audio,)

    @property
    def load_key(self) -> Tuple:
        return tuple(getattr(self.options, k) for k in LOAD_OPTIONS) + (self.unet_config,)


@dataclass(frozen=True)
class BadJob:
    index: int
    line: int
    name: str
    error: str


class _Refusal(argparse.ArgumentParser):
    """The lipsync options parser that raises instead of printing usage and exiting."""

    def error(self, message):
        raise InputError(message)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` in one rename: a killed process never leaves a partial file there."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # unique across hosts sharing the folder
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parser() -> argparse.ArgumentParser:
    parser = _Refusal(prog="job", add_help=False)
    add_lipsync_arguments(parser, models_dir=False)
    return parser


def _argv(entry: dict, base: Path) -> List[str]:
    argv = []
    for key, value in entry.items():
        if value is None:
            continue
        flag = "--" + str(key).replace("_", "-")
        if key in PATH_KEYS or key.replace("-", "_") in PATH_KEYS:
            value = str(base / os.path.expanduser(str(value)))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            raise InputError(f"'{key}' must be a plain value, got {type(value).__name__}")
        argv += [flag, str(value)]
    return argv


# options added after batch jobs had ids: at these defaults they are left out of the id, so the jobs of a batch
# started before them are still found finished
_ADDED_OPTIONS = {"scheduler": "ddim"}


def _options_key(options) -> dict:
    return {k: v for k, v in dataclasses.asdict(options).items() if _ADDED_OPTIONS.get(k, object()) != v}


def _identity(path: Optional[Path]) -> Optional[str]:
    """Path plus size and modification time: a replaced input makes a new job id."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _job(index: int, line: int, entry: dict, base: Path, output_dir: Path, parser) -> Job:
    if "output" not in entry:
        raise InputError("no 'output' (the file name of the result under --output-dir, e.g. \"a_synced.mp4\")")
    name = str(entry["output"])
    _check_output_name(name, output_dir)
    split = _split_seconds(entry)
    speakers = _speakers(entry, base)
    argv = _argv({k: v for k, v in entry.items()
                  if k not in ("output", "split_seconds", "split-seconds", "speakers")}, base)
    argv += [a for path, select in speakers for a in ("--speaker", f"{path}@{select}")]
    args = parser.parse_args(argv + ["--output", str(output_dir / name)])
    if args.avatar is not None or args.avatars_dir is not None:
        raise InputError("'avatar' and 'avatars_dir' are for python -m musetalk_core lipsync --avatar: a batch job "
                         "takes 'video' or 'image'. Jobs with the same video and faces/latents settings prepare it "
                         "once and share that material, as an avatar would")
    if args.video is not None and args.fps is not None:
        raise InputError("'fps' applies to 'image' only; a video keeps its own frame rate")
    from ..pipeline import check_options
    from ..io.output_file import check_output_path, refuse_overwriting_inputs

    options = options_from_args(args)
    check_options(options)
    output = Path(os.path.abspath(args.output))
    if output.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        check_output_path(output)  # the standard message
    refuse_overwriting_inputs(output, {"its 'video'": args.video, "its 'image'": args.image,
                                       "its 'audio'": args.audio,
                                       **{f"its speaker audio {p}": p for p, _ in speakers}}, option="'output'")
    key = {"video": _identity(args.video), "image": _identity(args.image), "audio": _identity(args.audio),
           "output": str(output), "fps": str(args.fps), "crf": args.crf, "options": _options_key(options)}
    if speakers:  # only then: the ids of jobs written before speakers existed stay the same
        key["speakers"] = [(_identity(p), select) for p, select in speakers]
    if args.preset != "medium":  # only then: the ids of jobs written before --preset existed stay the same
        key["preset"] = args.preset
    if args.unet_config:  # likewise
        key["unet_config"] = args.unet_config
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Job(index, line, name, args.video, args.image, args.audio, output, args.fps, args.crf, options, digest,
               split, args.preset, args.unet_config, tuple(speakers))


def _speakers(entry: dict, base: Path) -> List[Tuple[Path, str]]:
    """The line's "speakers": [{"audio": ..., "select": ...}, ...] (audio paths under ``base``), or []."""
    if entry.get("speakers") is None:
        return []
    from ..faces.selection import parse_selection
    from ..lipsync_args import speaker_entries

    found = speaker_entries(entry["speakers"], base, "'speakers'")
    for path, select in found:
        parse_selection(select, f"'speakers' ({path.name})")
    return found


def _check_output_name(name: str, output_dir: Path) -> None:
    """``output`` is a file name under --output-dir (a jobs file may come from someone else): no absolute path, no
    '..', no way out through a symbolic link inside the folder, and not the batch's own work folder."""
    fix = "give a file name under --output-dir, such as \"a_synced.mp4\" or \"de/a_synced.mp4\""
    if not name.strip():
        raise InputError(f"'output' is empty; {fix}")
    parts = Path(name).parts
    if os.path.isabs(name) or Path(name).drive or ".." in parts:
        raise InputError(f"'output' {name!r} points outside --output-dir (an absolute path or '..'); {fix}")
    if parts and parts[0] == WORK:
        raise InputError(f"'output' {name!r} is inside the batch's work folder {WORK}, which is removed when the "
                         f"batch succeeds; {fix}")
    root = os.path.realpath(output_dir)
    target = os.path.realpath(output_dir / name)
    if os.path.commonpath([root, target]) != root:
        raise InputError(f"'output' {name!r} leads outside --output-dir through a symbolic link (to '{target}'); "
                         f"{fix}")


def _split_seconds(entry: dict) -> Optional[float]:
    value = entry.get("split_seconds", entry.get("split-seconds"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(f"'split_seconds' must be a number of seconds (0 = do not split this job), got {value!r}")
    return float(value)


def read_jobs(path: Path, output_dir: Path) -> List[Union[Job, BadJob]]:
    """Every job line of ``path`` as a Job, or a BadJob saying what is wrong with it and how to fix it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"The jobs file '{path}' cannot be read ({exc}). Give a JSONL file: one JSON object "
                         "per line.") from None
    base, output_dir = path.resolve().parent, Path(os.path.abspath(output_dir))
    parser, jobs, outputs = _parser(), [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        index = len(jobs)
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as exc:
            jobs.append(BadJob(index, number, "", f"line {number} is not JSON ({exc.msg}); write one JSON object "
                                                  "per line"))
            continue
        name = str(entry.get("output", "")) if isinstance(entry, dict) else ""
        try:
            if not isinstance(entry, dict):
                raise InputError("the line must be a JSON object such as {\"video\": ..., \"audio\": ..., "
                                 "\"output\": ...}")
            job = _job(index, number, entry, base, output_dir, parser)
            if job.output in outputs:
                raise InputError(f"its output '{name}' is also the output of line {outputs[job.output]}; give "
                                 "every job its own output name")
            outputs[job.output] = number
            jobs.append(job)
        except InputError as exc:
            jobs.append(BadJob(index, number, name, f"line {number}: {exc}"))
    jobs = _refuse_outputs_read_by_other_jobs(jobs)
    if not jobs:
        raise InputError(f"The jobs file '{path}' holds no job. Write one JSON object per line, e.g. "
                         '{"video": "in.mp4", "audio": "speech.wav", "output": "out.mp4"}.')
    return jobs


def _refuse_outputs_read_by_other_jobs(jobs: List[Union[Job, BadJob]]) -> List[Union[Job, BadJob]]:
    """A job whose output is another job's input would replace that input (or be read half-written) depending on
    the order the jobs run in: refused."""
    from ..io.output_file import file_key

    readers = {}
    for job in jobs:
        if isinstance(job, Job):
            for source in (job.video, job.image) + job.audio_files:
                if source is not None:
                    readers.setdefault(file_key(source), job.line)
    checked = []
    for job in jobs:
        line = readers.get(file_key(job.output)) if isinstance(job, Job) else None
        if line is not None and line != job.line:
            job = BadJob(job.index, job.line, job.name,
                         f"line {job.line}: its output '{job.name}' is an input of line {line}; writing it would "
                         "replace that job's source. Give this job another output name")
        checked.append(job)
    return checked


# ---------------------------------------------------------------------------------------------- work folders


def work_root(output_dir: Path) -> Path:
    return Path(output_dir) / WORK


def job_dir(output_dir: Path, job: Job) -> Path:
    return work_root(output_dir) / "jobs" / job.id


def done_marker(output_dir: Path, job: Job) -> Path:
    return work_root(output_dir) / "done" / f"{job.id}.json"


def finished_record(output_dir: Path, job: Job) -> Optional[dict]:
    """The summary record of a job a previous run finished (its output is there and was written for this very
    job), else None."""
    marker = done_marker(output_dir, job)
    if not (job.output.is_file() and marker.is_file()):
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("job_id") == job.id and not record.get("error") else None

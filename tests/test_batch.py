"""``python -m musetalk_core batch`` in this process: a split job equals the plain lipsync command's output frame for
frame (lossless encodes, so the decoded frames compare exactly), jobs with one video share its material, bad jobs
fail alone with a clear error in the summary, and a rerun skips finished work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from media import face_frames, tone, write_video, write_wav
from musetalk_core import cli
from musetalk_core.io import video_read, video_write
from musetalk_core.batch.jobs import BadJob, read_jobs
from musetalk_core.batch.schedule import Schedule
from musetalk_core.batch.segments import plan_segments
from musetalk_core.batch.worker import JobPlan, Outcome

FPS = 25
N = 6  # source frames: ping-pong turns at output frame 6
T = 11  # output frames of the split job
# the split job's options: UNet batches of 3 and blend chunks of 4 divide neither each other nor T = 11, box
# smoothing reads neighbours across segment edges, and silence handling fades over 2 frames around the pause
OPTIONS = {"crf": 0, "chunk_size": 4, "batch_size": 3, "box_smoothing": 0.5, "silence_handling": True,
           "silence_fade_frames": 2}


def speech_with_pause(seconds: float, sr: int = 44100) -> np.ndarray:
    wave = tone(seconds, sr, 2)
    wave[:, int(0.12 * sr):int(0.40 * sr)] = 0.0  # output frames 5, 6, 7 silent (their whole audio window)
    return wave


def write_jobs(path: Path, jobs) -> Path:
    path.write_text("\n".join(j if isinstance(j, str) else json.dumps(j) for j in jobs) + "\n")
    return path


def decoded(path: Path):
    data = video_read.read_video(path)
    return data.frames, data.audio


def summary(folder: Path) -> dict:
    lines = (folder / "summary.jsonl").read_text().splitlines()
    return {Path(r["output"]).name: r for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch_media")
    write_video(folder / "talk.mp4", face_frames(N, 64, 48), Fraction(FPS))
    write_wav(folder / "first.wav", tone(0.24, 16000))                      # 6 frames: every source frame used
    write_wav(folder / "pause.wav", speech_with_pause(T / FPS), 44100)      # 11 frames, silent 0.12-0.40 s
    write_video(folder / "mute.mp4", face_frames(2, 32, 32))                # a file without sound, as audio
    return folder


@pytest.fixture(scope="module")
def batch(media, tiny_models_factory, tmp_path_factory):
    """One batch: two jobs on one video (the second split in segments of 4 frames), three bad jobs. It is first
    interrupted (Ctrl-C) in the split job's second segment, then run again: ``rendered`` lists the segments each run
    rendered."""
    import musetalk_core.pipeline as streaming

    models = tiny_models_factory("v15")
    out = tmp_path_factory.mktemp("batch_out")
    jobs = write_jobs(media / "jobs.jsonl", [
        {"video": "talk.mp4", "audio": "first.wav", "output": "first.mp4", **OPTIONS},
        {"video": "talk.mp4", "audio": "pause.wav", "output": "split.mp4", "split_seconds": 0.2, **OPTIONS},
        {"video": "absent.mp4", "audio": "first.wav", "output": "absent.mp4"},
        {"video": "talk.mp4", "audio": "mute.mp4", "output": "mute.mp4"},
        {"video": "talk.mp4", "audio": "first.wav", "output": "shifted.mp4", "bbox_shift": 900},
    ])
    argv = ["batch", str(jobs), "--output-dir", str(out), "--models-dir", str(models), "--no-progress"]
    real, rendered = streaming.render, []  # per run: the output frames [first, last) it rendered

    def render(generator, material, source, options, sink, first=0, last=None, progress=None):
        rendered[-1].append((first, last))
        if len(rendered) == 1 and first == 4:  # Ctrl-C in the split job's second segment, first run only
            raise KeyboardInterrupt
        return real(generator, material, source, options, sink, first, last, progress)

    streaming.render = render
    try:
        rendered.append([])
        interrupted = cli.main(argv)
        rendered.append([])
        code = cli.main(argv)
    finally:
        streaming.render = real
    return {"code": code, "interrupted": interrupted, "rendered": rendered, "out": out, "argv": argv,
            "models": models}


def test_split_job_equals_the_lipsync_command(batch, media, tmp_path, capsys):
    """Segments of 4 frames over 11 (the last one short), each rendered from the job's shared material and joined:
    the frames are the unsplit command's frames bit for bit (both lossless: crf 0), the audio is one encode of
    exactly T / fps seconds (equal to the command's)."""
    reference = tmp_path / "cli.mp4"
    flags = [f"--{k.replace('_', '-')}={str(v).lower() if isinstance(v, bool) else v}" for k, v in OPTIONS.items()]
    code = cli.main(["lipsync", "--video", str(media / "talk.mp4"), "--audio", str(media / "pause.wav"),
                     "--output", str(reference), "--models-dir", str(batch["models"]), "--no-progress", *flags])
    assert code == 0, capsys.readouterr().err
    record = summary(batch["out"])["split.mp4"]
    assert record["error"] is None and record["segments"] == 3 and record["frames"] == T
    frames, audio = decoded(batch["out"] / "split.mp4")
    ref_frames, ref_audio = decoded(reference)
    assert frames.shape[0] == T and torch.equal(frames, ref_frames)
    assert torch.equal(audio["waveform"], ref_audio["waveform"])
    info = video_read.probe(batch["out"] / "split.mp4")
    assert info["fps"] == FPS and info["audio_seconds"] == pytest.approx(T / FPS, abs=2e-3)
    # not a pass-through: mouths were generated (the frames differ from their source frames through the same
    # lossless encode)
    source = video_read.read_video(media / "talk.mp4", with_audio=False).frames
    mapping = [0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1]
    video_write.write_video(tmp_path / "pass.mp4", source[mapping], Fraction(FPS), crf=0)
    passed = video_read.read_video(tmp_path / "pass.mp4", with_audio=False).frames
    differs = [not torch.equal(a, b) for a, b in zip(frames, passed)]
    # silent frames 5..7 keep the source mouth; the fades around them (3, 4 and 8, 9) cross segment edges 4 and 8
    assert differs == [True] * 5 + [False] * 3 + [True] * 3


def test_jobs_with_one_video_share_its_material(batch):
    records = summary(batch["out"])
    assert records["first.mp4"]["error"] is None and records["first.mp4"]["reused_video_material"] is False
    assert records["split.mp4"]["reused_video_material"] is True
    assert records["first.mp4"]["frames"] == N
    for name in ("first.mp4", "split.mp4"):
        assert records[name]["seconds"] > 0 and records[name]["fps"] > 0


def test_bad_jobs_fail_alone_with_the_input_and_the_fix(batch, media):
    assert batch["code"] == 3
    records = summary(batch["out"])
    assert list(records) == ["first.mp4", "split.mp4", "absent.mp4", "mute.mp4", "shifted.mp4"]  # the file's order
    assert str(media / "absent.mp4") in records["absent.mp4"]["error"]
    assert "does not exist" in records["absent.mp4"]["error"]
    assert "mute.mp4" in records["mute.mp4"]["error"] and "no audio stream" in records["mute.mp4"]["error"]
    assert "line 5" in records["shifted.mp4"]["error"] and "outside -200..200" in records["shifted.mp4"]["error"]
    assert sorted(p.name for p in batch["out"].glob("*.mp4")) == ["first.mp4", "split.mp4"]  # nothing half-written


def test_an_interrupted_batch_resumes_from_its_finished_segments(batch):
    assert batch["interrupted"] == 130
    first, second = batch["rendered"]
    assert first == [(0, 6), (0, 4), (4, 8)]  # the first job whole, then the split job until Ctrl-C
    assert second == [(4, 8), (8, 11)]        # the first job and segment [0, 4) were kept


def test_rerun_skips_finished_jobs(batch, monkeypatch, capsys):
    import musetalk_core.pipeline as pipeline

    finished = {p: p.stat().st_mtime_ns for p in batch["out"].glob("*.mp4")}
    monkeypatch.setattr(pipeline, "load", lambda *a, **k: pytest.fail("a finished job was run again"))
    assert cli.main(batch["argv"]) == 3  # the bad jobs still fail
    records = summary(batch["out"])
    assert records["first.mp4"]["skipped"] and records["split.mp4"]["skipped"]
    assert records["split.mp4"]["frames"] == T
    assert {p: p.stat().st_mtime_ns for p in batch["out"].glob("*.mp4")} == finished
    assert "2 already done" in capsys.readouterr().out


def test_a_changed_job_runs_again(media, tmp_path):
    """The job id covers inputs (size, mtime) and options: an edited job is not taken for finished."""
    line = {"video": "talk.mp4", "audio": "first.wav", "output": "o.mp4"}
    first = read_jobs(write_jobs(tmp_path / "a.jsonl", [line]), tmp_path / "out")[0]
    same = read_jobs(write_jobs(tmp_path / "a.jsonl", [line]), tmp_path / "out")[0]
    other = read_jobs(write_jobs(tmp_path / "a.jsonl", [{**line, "bbox_shift": 3}]), tmp_path / "out")[0]
    assert first.id == same.id != other.id and other.options.bbox_shift == 3
    faster = read_jobs(write_jobs(tmp_path / "a.jsonl", [{**line, "preset": "veryfast"}]), tmp_path / "out")[0]
    medium = read_jobs(write_jobs(tmp_path / "a.jsonl", [{**line, "preset": "medium"}]), tmp_path / "out")[0]
    assert faster.id != first.id == medium.id  # the default keeps the ids jobs had before --preset existed
    ddim, dpm = (read_jobs(write_jobs(tmp_path / "a.jsonl", [{**line, "scheduler": k}]), tmp_path / "out")[0]
                 for k in ("ddim", "dpm_solver++"))
    assert dpm.id != first.id == ddim.id and dpm.options.scheduler == "dpm_solver++"  # likewise for scheduler


def test_a_rerun_with_another_split_keeps_the_material_and_takes_the_new_segments(media, tiny_models_factory,
                                                                                  tmp_path, monkeypatch):
    """The split is not part of the job id (the material holds for any split), so a rerun with another
    --split-seconds reuses the prepared material and plans the segments the new split asks for."""
    import musetalk_core.pipeline as streaming
    from musetalk_core.batch.worker import Task, Worker

    models = tiny_models_factory("v15")
    out = tmp_path / "out"
    line = {"video": "talk.mp4", "audio": "pause.wav", "output": "s.mp4", **OPTIONS}
    (job,) = read_jobs(write_jobs(media / "split_rerun.jsonl", [line]), out)
    first = Worker(out, [models], split_seconds=0.2).prepare(Task("prepare", job))
    assert first.segments == ((0, 4), (4, 8), (8, 11))
    monkeypatch.setattr(streaming, "encode_features", lambda *a, **k: pytest.fail("material computed again"))
    again = Worker(out, [models], split_seconds=None).prepare(Task("prepare", job))
    assert again.segments == ((0, T),) and again.frames == first.frames == T
    assert Worker(out, [models], split_seconds=None).prepare(Task("prepare", job)) == again  # stored


def test_job_lines_are_checked_like_the_command_line(media, tmp_path):
    jobs = read_jobs(write_jobs(media / "checks.jsonl", [
        {"video": "talk.mp4", "audio": "first.wav", "output": "a.mp4", "bbox-shift": -7, "silence_handling": True,
         "fps": None, "batch_size": 100, "preset": "veryfast"},
        "not json",
        {"video": "talk.mp4", "audio": "first.wav", "output": "b.mp4", "no_such_option": 1},
        {"video": "talk.mp4", "audio": "first.wav", "output": "a.mp4"},
        {"video": "talk.mp4", "audio": "first.wav"},
        {"video": "talk.mp4", "audio": "first.wav", "output": "c.mp4", "fps": 30},
        {"image": "face.png", "audio": "first.wav", "output": "d.mp4", "fps": "30000/1001", "split_seconds": -1},
        "# a comment",
        {"video": "talk.mp4", "image": "face.png", "audio": "first.wav", "output": "e.mp4"},
        {"video": "talk.mp4", "audio": "first.wav", "output": "f.mp4", "preset": "quick"},
    ]), tmp_path)
    good = jobs[0]
    assert good.options.bbox_shift == -7 and good.options.silence_handling is True
    assert good.options.face_batch_size == 64 and good.video == media / "talk.mp4"  # relative to the jobs file
    assert good.output == tmp_path / "a.mp4" and good.preset == "veryfast"
    errors = [j.error for j in jobs[1:]]
    assert all(isinstance(j, BadJob) for j in jobs[1:]) and len(jobs) == 9
    assert "line 2 is not JSON" in errors[0]
    assert "unrecognized arguments: --no-such-option" in errors[1]
    assert "also the output of line 1" in errors[2]
    assert "no 'output'" in errors[3]
    assert "'fps' applies to 'image' only" in errors[4]
    assert "'split_seconds' must be" in errors[5]
    assert "not allowed with argument" in errors[6]
    assert "invalid choice: 'quick'" in errors[7]


def test_a_latentsync_job_line_takes_the_generators_defaults(media, tmp_path):
    """LatentSync jobs run in batches too, with the command line's defaults for the generator."""
    (job,) = read_jobs(write_jobs(media / "ls.jsonl", [
        {"video": "talk.mp4", "audio": "first.wav", "output": "g.mp4", "generator": "latentsync15"}]), tmp_path)
    assert job.options.generator == "latentsync15" and job.options.seed == 1247
    assert job.options.feature_mode == "v1.0-original" and job.load_key[0] == "latentsync15"


def test_outputs_stay_under_the_output_dir_and_never_replace_an_input(media, tmp_path):
    """A jobs file may come from someone else: an output outside --output-dir (absolute, '..', through a symbolic
    link), inside the work folder, or naming an input (its own or another job's) is a line error; the others run."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    jobs = read_jobs(write_jobs(media / "escapes.jsonl", [
        {"video": "talk.mp4", "audio": "first.wav", "output": "fine.mp4"},
        {"video": "talk.mp4", "audio": "first.wav", "output": str(tmp_path / "absolute.mp4")},
        {"video": "talk.mp4", "audio": "first.wav", "output": "../../escape.mp4"},
        {"video": "talk.mp4", "audio": "first.wav", "output": "sub/../../escape.mp4"},
        {"video": "talk.mp4", "audio": "first.wav", "output": "elsewhere/escape.mp4"},
        {"video": "talk.mp4", "audio": "first.wav", "output": ".musetalk-work/x.mp4"},
        {"video": str(out / "own.mp4"), "audio": "first.wav", "output": "own.mp4"},
        {"video": "talk.mp4", "audio": str(out / "read_later.mp4"), "output": "b.mp4"},
        {"video": "talk.mp4", "audio": "first.wav", "output": "read_later.mp4"},
    ]), out)
    assert not isinstance(jobs[0], BadJob) and jobs[0].output == out / "fine.mp4"
    errors = {j.line: j.error for j in jobs if isinstance(j, BadJob)}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 9]
    for line in (2, 3, 4):
        assert "points outside --output-dir" in errors[line] and "file name under --output-dir" in errors[line]
    assert "through a symbolic link" in errors[5]
    assert "work folder" in errors[6]
    assert "same file as its 'video'" in errors[7] and "replace your source" in errors[7]
    assert "is an input of line 8" in errors[9]
    assert not isinstance(jobs[7], BadJob)  # the job reading that file is fine


def test_a_hard_linked_output_of_an_input_is_refused(media, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.link(media / "talk.mp4", out / "same.mp4")
    (job,) = read_jobs(write_jobs(media / "hard.jsonl", [
        {"video": "talk.mp4", "audio": "first.wav", "output": "same.mp4"}]), out)
    assert isinstance(job, BadJob) and "same file as its 'video'" in job.error


def test_a_split_mkv_job_is_joined_with_exactly_its_audio(media, tiny_models_factory, tmp_path):
    """A split job whose output is .mkv: the segments are MP4 work files (Matroska keeps no decode timestamps, and
    joining .mkv segments failed with 'Invalid argument'); the joined .mkv has every frame and exactly T / fps of
    (FLAC) audio."""
    out = tmp_path / "out"
    jobs = write_jobs(media / "split_mkv.jsonl", [
        {"video": "talk.mp4", "audio": "pause.wav", "output": "split.mkv", "split_seconds": 0.2, **OPTIONS}])
    code = cli.main(["batch", str(jobs), "--output-dir", str(out), "--models-dir", str(tiny_models_factory("v15")),
                     "--no-progress"])
    record = summary(out)["split.mkv"]
    assert code == 0 and record["error"] is None and record["segments"] == 3, record
    info = video_read.probe(out / "split.mkv")
    assert info["frames"] == T and info["fps"] == FPS
    assert info["audio_samples"] == round(T / FPS * 44100)  # exactly T / fps, no AAC tail


def test_segments_are_whole_chunks_covering_every_frame():
    assert plan_segments(14, 25, 4, None) == [(0, 14)]
    assert plan_segments(14, 25, 4, 0.2) == [(0, 4), (4, 8), (8, 12), (12, 14)]
    assert plan_segments(100, 30000 / 1001, 16, 1.0) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert plan_segments(5, 25, 16, 0.01) == [(0, 5)]  # never less than one chunk


def test_schedule_retries_a_task_whose_worker_died_then_gives_up(tmp_path, media):
    job = read_jobs(write_jobs(tmp_path / "j.jsonl", [{"video": str(media / "talk.mp4"), "audio": "a.wav",
                                                      "output": "o.mp4"}]), tmp_path)[0]
    records = []
    schedule = Schedule([job], lambda record, _: records.append(record), max_attempts=2)
    task = schedule.next()
    schedule.done(task, Outcome(JobPlan(job.id, 8, Fraction(25), ((0, 4), (4, 8)), False)))
    first = schedule.next()
    schedule.died(first, "ActorDiedError")
    again = schedule.next()
    assert again.key == first.key and again.attempt == 2  # queued again, taken before the other segment
    schedule.done(again, Outcome(4))
    second = schedule.next()
    schedule.died(second, "ActorDiedError")
    schedule.died(schedule.next(), "ActorDiedError")
    assert len(records) == 1 and "died 2 times" in records[0]["error"] and records[0]["retries"] == 3
    assert schedule.next() is None


def test_nodes_and_the_lipsync_command_do_not_import_ray():
    code = ("import sys, importlib.util\n"
            f"sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
            "from conftest import load_pack\n"
            "pack = load_pack()\n"
            "from musetalk_core import cli\n"
            "import musetalk_core.batch.run, musetalk_core.batch.worker, musetalk_core.batch.local\n"
            "try:\n    cli.main(['lipsync', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert len(pack.NODE_CLASS_MAPPINGS) >= 6\n"
            "print('ray' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_install_with_ray_installs_ray_under_the_torch_constraint(monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT))
    import install

    constraint = tmp_path / "constraints.txt"
    constraint.write_text("torch==2.13.0\n")
    calls = []
    monkeypatch.setattr(install, "pip", lambda *args: calls.append(args))
    monkeypatch.setattr(install, "torch_constraint", lambda: str(constraint))
    assert install.main(["--with-ray", "--skip-requirements"]) == 0
    assert calls == [(install.RAY, "-c", str(constraint))] and install.RAY.startswith("ray")
    assert not constraint.exists()  # removed after use, as for the other extras

"""``python -m musetalk_core batch --ray`` on a local Ray cluster (2 CPUs, 2 workers, tiny networks): jobs sharing a
video, a job split in segments across the workers equal to the same job unsplit, a worker killed mid-job whose
task is retried while the batch completes, and a bad job that fails alone."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from media import face_frames, tone, write_video, write_wav
from musetalk_core.io import video_read
from musetalk_core.batch import run as batch_run
from test_batch import write_jobs

ray = pytest.importorskip("ray")

FPS = 25
T = 9


@pytest.fixture(scope="session")
def ray_cluster():
    """One local cluster for the session (the runner uses a cluster that is already up and leaves it up)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_batch_on_ray_with_a_split_job_and_a_killed_worker(ray_cluster, tiny_models_factory, tmp_path, monkeypatch):
    models = tiny_models_factory("v15")
    write_video(tmp_path / "talk.mp4", face_frames(5, 64, 48), Fraction(FPS))
    write_wav(tmp_path / "speech.wav", tone(T / FPS, 16000))
    write_wav(tmp_path / "other.wav", tone(0.24, 16000, 2, freq=330.0))
    common = {"video": "talk.mp4", "crf": 0, "chunk_size": 2, "batch_size": 3}
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        {**common, "audio": "speech.wav", "output": "whole.mp4", "split_seconds": 0},
        {**common, "audio": "speech.wav", "output": "split.mp4", "split_seconds": 0.1},  # 2-frame segments
        {**common, "audio": "other.wav", "output": "other.mp4"},
        {**common, "audio": "missing.wav", "output": "missing.mp4"},
    ])
    out = tmp_path / "out"
    marker = tmp_path / "killed"

    def kill_once(name: str, frames: int) -> None:
        """Runs in the worker: the first time a segment of the split job has blended frames, its process dies."""
        import os
        import signal

        if name == "split.mp4" and frames > 0 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    from musetalk_core.batch import ray_runner

    real = ray_runner.run_on_ray
    monkeypatch.setattr(ray_runner, "run_on_ray", lambda *a, **k: real(*a, **k, hook=kill_once))
    args = batch_run_args(jobs, out, models)
    assert batch_run.run_batch(args) == 3
    assert ray.is_initialized()  # the runner used the session's cluster and left it up

    records = {Path(r["output"]).name: r for r in map(json.loads, (out / "summary.jsonl").read_text().splitlines())}
    assert marker.exists() and records["split.mp4"]["retries"] >= 1  # a worker really died mid-job
    for name in ("whole.mp4", "split.mp4", "other.mp4"):
        assert records[name]["error"] is None, records[name]
    assert records["split.mp4"]["segments"] == 5 and records["split.mp4"]["frames"] == T
    assert sum(not records[n]["reused_video_material"] for n in ("whole.mp4", "split.mp4", "other.mp4")) == 1
    assert "missing.wav" in records["missing.mp4"]["error"] and "does not exist" in records["missing.mp4"]["error"]

    whole, split = video_read.read_video(out / "whole.mp4"), video_read.read_video(out / "split.mp4")
    assert whole.num_frames == T and torch.equal(split.frames, whole.frames)  # lossless: decoded frames compare
    assert torch.equal(split.audio["waveform"], whole.audio["waveform"])
    assert video_read.probe(out / "split.mp4")["audio_seconds"] == pytest.approx(T / FPS, abs=2e-3)
    assert sorted(p.name for p in out.glob("*.mp4")) == ["other.mp4", "split.mp4", "whole.mp4"]


def batch_run_args(jobs: Path, out: Path, models: Path):
    from musetalk_core.cli import build_parser

    return build_parser().parse_args(["batch", str(jobs), "--output-dir", str(out), "--models-dir", str(models),
                                      "--ray", "auto", "--workers", "2", "--no-progress"])


def test_a_latentsync_job_split_over_ray_workers(ray_cluster, tmp_path):
    """A LatentSync job line on Ray, split into segments over two workers: the job's ``unet_config`` (the tiny
    UNet3D's upstream-style config file) reaches every worker's loader; the frames equal the same job unsplit."""
    import numpy as np

    import tiny_latentsync as tl
    from test_latentsync import GOLDEN, _config_yaml
    from tiny import write_models

    models = tmp_path / "models"
    write_models(models, "v15")
    tl.write_latentsync_files(models)
    _config_yaml(models / "latentsync" / "configs" / "tiny.yaml",
                 json.loads(str(dict(np.load(GOLDEN))["tiny_model_json"])))
    write_video(tmp_path / "talk.mp4", face_frames(5, 64, 48), Fraction(FPS))
    write_wav(tmp_path / "speech.wav", tone(T / FPS, 16000))
    common = {"video": "talk.mp4", "audio": "speech.wav", "generator": "latentsync15", "inference_steps": 1,
              "window_length": 4, "chunk_size": 2, "crf": 0, "unet_config": "latentsync/configs/tiny.yaml"}
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{**common, "output": "whole.mp4", "split_seconds": 0},
                                                {**common, "output": "split.mp4", "split_seconds": 0.1}])
    out = tmp_path / "out"
    assert batch_run.run_batch(batch_run_args(jobs, out, models)) == 0
    records = {Path(r["output"]).name: r for r in map(json.loads, (out / "summary.jsonl").read_text().splitlines())}
    assert records["whole.mp4"]["error"] is None and records["split.mp4"]["error"] is None, records
    assert records["split.mp4"]["segments"] == 5 and records["split.mp4"]["frames"] == T
    whole, split = video_read.read_video(out / "whole.mp4"), video_read.read_video(out / "split.mp4")
    assert whole.num_frames == T and torch.equal(split.frames, whole.frames)

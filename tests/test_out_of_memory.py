"""Memory running out: exit code 2 and a message saying that memory ran out, at which stage and what to lower, no
traceback, nothing left behind. One real run under an address-space limit, and the shapes it takes, one by one."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from musetalk_core.errors import MuseTalkError, WeightFileError
from musetalk_core.out_of_memory import OutOfMemory, is_out_of_memory, out_of_memory_error

# the shapes memory running out took in real runs under `ulimit -v` (800 MB - 2 GB) of the command line
SHAPES = {
    "python": MemoryError(),
    "torch_cpu": RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                              "memory: you tried to allocate 117440512 bytes. Error code 12 (Cannot allocate memory)"),
    "torch_cuda": RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"),
    "shared_object": ImportError("/venv/lib/python3.11/site-packages/safetensors/_safetensors_rust.abi3.so: failed "
                                 "to map segment from shared object"),
    "enomem": OSError(errno.ENOMEM, "Cannot allocate memory"),
    "safetensors": MemoryError("Cannot allocate memory (os error 12)"),
    "thread": RuntimeError("can't start new thread"),
    "onednn": RuntimeError("could not create a primitive"),  # a VAE encoder convolution under a 2.5 GB cap
}
NOT_MEMORY = [RuntimeError("Given groups=1, weight of size [64, 3, 3, 3], expected input to have 3 channels"),
              ImportError("No module named 'mmpose'"), OSError(errno.ENOSPC, "No space left on device"),
              ValueError("bad value"), KeyError("x")]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_of_memory_running_out_is_recognised(shape):
    assert is_out_of_memory(SHAPES[shape])


def test_pyav_eagain_and_enomem_are_memory():
    import av

    # what FFmpeg raised when its scaler's threads could not get their stacks, and its ENOMEM
    assert is_out_of_memory(av.error.BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"))
    assert is_out_of_memory(av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory"))


@pytest.mark.parametrize("exc", NOT_MEMORY, ids=lambda e: type(e).__name__)
def test_other_failures_are_not_memory(exc):
    assert not is_out_of_memory(exc)


def test_a_wrapped_memory_error_is_found_through_its_cause():
    try:
        try:
            raise SHAPES["torch_cpu"]
        except RuntimeError as inner:
            raise ValueError("stage failed") from inner
    except ValueError as outer:
        assert is_out_of_memory(outer)


@pytest.mark.parametrize("stage,lower", [("faces", "--face-batch-size"), ("vae encode", "--vae-batch-size"),
                                         ("lip-sync", "--batch-size"), ("models", "--precision fp16"),
                                         (None, "--chunk-size")])
def test_the_message_names_the_stage_and_what_to_lower(stage, lower):
    error = out_of_memory_error(stage, SHAPES["torch_cpu"])
    assert isinstance(error, OutOfMemory) and isinstance(error, MuseTalkError)
    text = str(error)
    assert text.startswith("memory ran out during ") and lower in text and "Nothing was written." in text
    assert "an allocation of 112 MiB failed" in text


def test_a_weight_file_read_that_runs_out_of_memory_is_not_called_corrupt(tmp_path, monkeypatch):
    """Reading a model file under a memory limit failed with MemoryError, which was reported as "corrupt,
    truncated ... download it again": the wrong fix. It now propagates as memory running out."""
    import safetensors.torch
    import torch

    from musetalk_core.models.checkpoints import read_state_dict

    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"a": torch.zeros(2)}, str(path))

    def no_memory(*args, **kwargs):
        raise SHAPES["safetensors"]

    monkeypatch.setattr(safetensors.torch, "load_file", no_memory)
    with pytest.raises(MemoryError):
        read_state_dict(path)
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: (_ for _ in ()).throw(ValueError("x")))
    with pytest.raises(WeightFileError, match="download it again"):
        read_state_dict(path)


# the command line in a child process whose address space is capped (setrlimit) once the libraries, the models'
# loader and the thread pools are up; a 4K still image at detector_scale 1 then needs a 2 GB activation in the
# first S3FD layer, far above the headroom, whatever the machine
CHILD = textwrap.dedent("""
    import resource, sys
    import torch
    from musetalk_core import cli
    from musetalk_core.io import audio_file, image_file, video_read, video_write
    import av, numpy, safetensors.torch, PIL.Image  # everything the run imports later, imported under no limit
    from musetalk_core import pipeline, options
    from musetalk_core.faces import locate as face_locate
    from musetalk_core.faces import prepare as faces
    from musetalk_core.generators.musetalk import generate
    from musetalk_core.blend import blender as blend
    from musetalk_core.weights import loading
    torch.ones(512, 512) @ torch.ones(512, 512)  # the thread pools exist before the cap
    torch.nn.functional.conv2d(torch.ones(1, 3, 64, 64), torch.ones(8, 3, 3, 3)).relu()
    with open("/proc/self/status") as fh:
        size_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmSize:"))
    headroom = int(sys.argv[1]) * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (size_kb * 1024 + headroom, resource.RLIM_INFINITY))
    sys.exit(cli.main(sys.argv[2:]))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="address-space limit and /proc: Linux")
def test_cli_out_of_memory_exits_2_naming_the_stage_and_leaves_nothing(tiny_models_factory, tmp_path):
    import numpy as np
    from PIL import Image

    from media import tone, write_wav

    inputs, out_dir = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out_dir.mkdir()
    image = inputs / "still_4k.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8)).save(image, compress_level=1)
    audio = write_wav(inputs / "speech.wav", tone(0.2, 16000), 16000)
    out = out_dir / "result.mp4"
    argv = ["lipsync", "--image", str(image), "--audio", str(audio), "--output", str(out), "--no-progress",
            "--models-dir", str(tiny_models_factory("v15")), "--detector-scale", "1"]
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}  # OpenMP aborts the process when it cannot start a thread
    proc = subprocess.run([sys.executable, "-c", CHILD, "700", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "memory ran out during face detection" in proc.stderr, proc.stderr
    assert "--face-batch-size" in proc.stderr and "--detector-scale" in proc.stderr
    assert os.listdir(out_dir) == []  # no output, no temporary file
    assert os.listdir(temp) == []     # no spilled material


def test_a_batch_job_that_runs_out_of_memory_fails_alone_with_the_message(tmp_path, monkeypatch):
    from musetalk_core.batch.worker import Task, Worker

    class Job:
        line, name = 3, "a.mp4"

    worker = Worker(tmp_path, [tmp_path])
    monkeypatch.setattr(worker, "render", lambda task: (_ for _ in ()).throw(SHAPES["torch_cpu"]))
    outcome = worker.run(Task("render", Job(), None, None))
    assert outcome.error.startswith("memory ran out during rendering")
    assert "batch_size" in outcome.error and "chunk_size" in outcome.error

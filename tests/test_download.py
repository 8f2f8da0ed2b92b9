"""Downloading model files: exact files only, resumable-safe, and one clear message when it cannot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from musetalk_core.weights import download
from musetalk_core.weights import files as model_files
from musetalk_core.errors import InputError, ModelFilesMissing


def _fake_fetchers(log, fail_roles=()):
    def write(spec, target):
        log.append((spec.role, spec.repo, spec.repo_file, spec.url, target))
        if spec.role in fail_roles:
            raise OSError("Temporary failure in name resolution")
        target.write_bytes(b"x")

    return {"hf": write, "url": write}


def test_downloads_exactly_the_files_of_a_version(tmp_path):
    calls = []
    written = download.download_models("v15", tmp_path, fetchers=_fake_fetchers(calls), report=lambda _: None)
    roles = [c[0] for c in calls]
    assert roles == [f.role for f in model_files.files_for("v15")]
    assert "unet_v1" not in roles and "whisper_tiny_pt" not in roles
    # Each file lands where the loaders look for it.
    model_files.require([tmp_path], "v15")
    assert (tmp_path / "s3fd" / "s3fd-619a316812.pth") in written
    assert (tmp_path / "sd-vae" / "diffusion_pytorch_model.safetensors") in written
    s3fd_call = next(c for c in calls if c[0] == "s3fd")
    assert s3fd_call[1] is None and s3fd_call[3] == model_files.S3FD_URL
    unet_call = next(c for c in calls if c[0] == "unet_v15")
    assert unet_call[1:3] == ("TMElyralab/MuseTalk", "musetalkV15/unet.pth")


def test_present_files_are_skipped(tmp_path):
    download.download_models("v15", tmp_path, fetchers=_fake_fetchers([]), report=lambda _: None)
    calls = []
    assert download.download_models("v15", tmp_path, fetchers=_fake_fetchers(calls), report=lambda _: None) == []
    assert calls == []


def test_all_includes_both_versions_and_tiny_pt(tmp_path):
    calls = []
    download.download_models("all", tmp_path, fetchers=_fake_fetchers(calls), report=lambda _: None)
    roles = {c[0] for c in calls}
    assert {"unet_v15", "unet_v1", "whisper_tiny_pt"} <= roles


def test_offline_lists_every_failed_file(tmp_path):
    calls = []
    with pytest.raises(ModelFilesMissing) as err:
        download.download_models("v1", tmp_path, fetchers=_fake_fetchers(calls, fail_roles={"unet_v1", "s3fd"}),
                                 report=lambda _: None)
    message = str(err.value)
    assert "musetalk/pytorch_model.bin" in message and "s3fd/s3fd-619a316812.pth" in message
    assert "python install.py --download-models v1" in message
    assert {s.role for s in err.value.missing} == {"unet_v1", "s3fd"}
    # The others were still fetched.
    assert model_files.resolve(tmp_path, "vae") is not None


def test_unknown_set():
    with pytest.raises(InputError):
        download.files_to_fetch("v3")


def test_install_py_download_offline_exits_2(tmp_path):
    """Without network the command prints one message listing the missing files and exits 2 (no traceback)."""
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "install.py"), "--skip-requirements", "--download-models", "v15",
                           "--models-dir", str(tmp_path / "m")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "musetalkV15/unet.pth" in proc.stderr

"""Our features against values recorded from the reference (tools/golden/record_audio.py, tests/golden/audio/).

Each case regenerates the same int16 audio from its seed, runs encode_audio on the tiny seeded Whisper in fp32 and
compares: every stored full frame (start, 30 s seams, end) to <= 1e-4 max abs difference, and for every frame the
4 unit-norm projections of its 19 200 values (a per-frame checksum) to <= 1e-4.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from musetalk_core.audio.windows import encode_audio
from musetalk_core.weights.loading import load_models
from tiny.whisper import as_audio, seeded_signal, write

GOLDEN = Path(__file__).resolve().parent / "golden" / "audio"
CASES = sorted(GOLDEN.glob("*.npz"))
TOL = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper_golden")
    write(folder, "v15", seed=7)
    return load_models([folder], networks=["whisper"], device="cpu", precision="fp32")


def test_golden_cases_present():
    names = {c.stem for c in CASES}
    assert {"ref_5s_16k_mono", "ref_5s_44k_stereo", "ref_5s_48k_stereo", "ref_31s_16k_mono", "ref_31s_44k_stereo",
            "ref_61s_16k_mono", "ref_61s_48k_stereo", "v10_5s_16k", "v10_31s_16k", "v10_61s_16k"} <= names


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_matches_reference(models, case):
    data = np.load(case)
    meta = json.loads(str(data["meta"]))
    assert meta["whisper_seed"] == 7
    signal = seeded_signal(meta["seconds"], meta["sample_rate"], meta["channels"], meta["seed"])
    out = encode_audio(models, as_audio(signal, meta["sample_rate"]), meta["fps"], feature_mode=meta["mode"])
    feats = out.features.numpy()
    n16 = math.ceil(signal.shape[1] * 16000 / meta["sample_rate"])
    assert out.num_frames == math.floor(n16 / 16000 * meta["fps"])
    if meta["mode"] == "reference":
        assert out.num_frames == meta["num_frames"]
    else:
        # v1.0's feature2chunks runs two frames (25 fps) past the audio; we stop at floor(duration * fps)
        assert meta["num_frames"] - 3 <= out.num_frames < meta["num_frames"]
    frames = data["frames"]
    keep = frames < out.num_frames
    diff = np.abs(feats[frames[keep]] - data["features"][keep]).max()
    assert diff <= TOL, f"max abs diff {diff:.2e} on frames {frames[keep].tolist()}"

    w = np.random.default_rng(meta["projection_seed"]).standard_normal((4, 50 * 384))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    checksum = feats.reshape(out.num_frames, -1).astype(np.float64) @ w.T
    worst = np.abs(checksum - data["checksum"][: out.num_frames]).max()
    assert worst <= TOL, f"per-frame checksum differs by {worst:.2e}"
    assert np.abs(data["checksum"]).max() > 0.1  # the checksum is not trivially zero

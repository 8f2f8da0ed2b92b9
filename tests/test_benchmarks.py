"""The benchmark in its smallest mode: tiny real-format networks, 128x160 frames, one source frame.

No timing is asserted (speed is for benchmarks/, never for tests); what is checked is that every stage is measured
on both sides and reported with fps and speed-up fields, and that the straightforward per-frame reference code the
ratios are taken against computes the same things as the pack.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import run as bench_run
from benchmarks import straightforward as ref
from benchmarks.synthetic import make_clip

@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    cache = tmp_path_factory.mktemp("bench_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSETALK_BENCH_CACHE", str(cache))
    try:
        bench_run.main(["--smoke", "--frames", "1", "--json", str(out), "--threads", "2"])
    finally:
        mp.undo()
    return json.loads(out.read_text())


def test_smoke_report_has_every_stage_with_fps_and_ratio(smoke_report):
    stages = smoke_report["stages"]
    assert set(bench_run.STAGES) <= set(stages)
    for name in bench_run.STAGES:
        row = stages[name]
        for key in ("fps", "reference_fps", "ratio", "frames", "ours"):
            assert key in row, (name, key)
        assert row["fps"] and row["fps"] > 0, (name, row["ours"])
        assert row["reference_fps"] and row["reference_fps"] > 0, (name, row.get("reference"))
        assert row["ratio"] == pytest.approx(row["fps"] / row["reference_fps"])
    # per-video stages count source frames, per-audio stages output frames (T = 2N: one ping-pong cycle)
    assert stages["detection"]["frames"] == 1 and stages["blend"]["frames"] == 2
    assert stages["avatar_file"]["same_frames_as_video_file"] is True  # lipsync --avatar's promise, on this device
    settings = smoke_report["settings"]
    assert settings["frames"] == 1 and settings["output_frames"] == 2 and settings["size"] == "128x160"
    assert smoke_report["machine"]["cpu_count"] >= 1 and smoke_report["command"].startswith("python -m benchmarks.run")
    assert smoke_report["parameters"]["face_parser"] > 10_000_000  # BiSeNet is always real size


def test_table_lists_every_stage(smoke_report):
    table = bench_run.format_table(smoke_report)
    for name in bench_run.STAGES:
        assert name in table


def test_synthetic_clip_face_matches_its_landmarks():
    clip = make_clip(3, (128, 160))
    assert clip.frames.shape == (3, 128, 160, 3) and clip.frames.dtype == torch.uint8
    assert clip.audio["waveform"].shape == (1, 1, round(3 / 25 * 16000))
    lm = clip.landmarks[0]
    assert lm.shape == (68, 2) and lm.dtype == np.int32
    box = ref.landmark_box(lm, (0, 0, 1, 1), 128, extra_margin=10)
    x1, y1, x2, y2 = box
    assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 128
    # landmark 29 sits at the vertical middle of the landmark box (before the margin), as in real faces
    assert abs((y1 + y2 - 10) / 2 - lm[29, 1]) <= 1
    skin = clip.frames[0, lm[29, 1], lm[29, 0] + 5].numpy().astype(int)
    assert abs(skin - np.array([224, 172, 140])).max() < 30  # the drawn face is under its landmarks
    assert not torch.equal(clip.frames[0], clip.frames[1])  # the head moves / talks


def test_straightforward_detection_equals_the_pack():
    """The reference-style per-cell Python decode and the pack's vectorised decode give the same box."""
    from musetalk_core.models import s3fd

    from benchmarks import networks

    torch.manual_seed(0)
    net = s3fd.S3FD().eval()
    state = networks._seeded_(net, 3)
    for name in ("conv3_3_norm", "conv4_3_norm", "conv5_3_norm"):
        state[f"{name}.weight"] = getattr(net, name).weight.detach().clone()
    # well-conditioned heads: scores vary smoothly (no ties), boxes stay near their anchors, some cells are faces
    for key in list(state):
        if "_mbox_conf.weight" in key:
            state[key] = state[key] * 0.05
        elif "_mbox_loc.weight" in key:
            state[key] = state[key] * 0.002
    state["conv4_3_norm_mbox_conf.bias"] = torch.tensor([-1.0, 1.0])
    net.load_state_dict(state)
    clip = make_clip(1, (96, 128))
    frame_rgb = clip.frames[0].numpy()
    box, candidates = ref.detect_frame(net, np.ascontiguousarray(frame_rgb[:, :, ::-1]))
    ours = s3fd.detect(net, clip.frames[:1])[0]
    assert candidates > 0
    if box is None:
        assert ours.boxes.shape[0] == 0
    else:
        d = np.clip(ours.boxes[0].numpy(), 0, None).astype(int)
        assert tuple(int(v) for v in d) == box


def test_straightforward_vae_preprocessing_matches_the_pack():
    """The float64 per-frame preprocessing of the straightforward side feeds the VAE the same numbers."""
    from musetalk_core.generators.musetalk import latents

    rng = np.random.default_rng(0)
    crop_rgb = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    both = latents.preprocess_crops(torch.from_numpy(crop_rgb)[None])  # [masked, full]

    captured = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def encode(self, x):
            captured.append(x.clone())

            class Dist:
                @staticmethod
                def sample():
                    return torch.zeros(1, 4, 32, 32)

            return type("Out", (), {"latent_dist": Dist})()

    ref.encode_frame(Recorder(), np.ascontiguousarray(crop_rgb[:, :, ::-1]))
    assert torch.allclose(captured[0][0], both[0], atol=1e-6)
    assert torch.allclose(captured[1][0], both[1], atol=1e-6)


# ------------------------------------------------------------------------------------------------ fidelity
def test_fidelity_compare_is_zero_for_identical_outputs_and_sees_one_grey_level():
    from benchmarks import fidelity

    img = torch.randint(0, 255, (2, 8, 8, 3), dtype=torch.uint8)
    same = {"audio features": torch.ones(3, 50, 384), "latents": torch.ones(2, 8, 32, 32), "faces": img,
            "frames": img.float() / 255}
    zero = fidelity.compare(same, same)
    assert zero["latents"] == {"max_abs": 0.0, "mean_abs": 0.0, "rel_l2": 0.0}
    assert zero["frames"]["max_levels"] == 0 and zero["frames"]["psnr_db"] == float("inf")
    bumped = dict(same, faces=img.clone())
    bumped["faces"][0, 0, 0, 0] += 1
    e = fidelity.compare(same, bumped)["faces"]
    assert e["max_levels"] == 1 and e["changed"] == pytest.approx(1 / img.numel())


def test_fidelity_smoke_runs_the_bf16_graph_and_reports_every_stage(tmp_path, monkeypatch):
    from benchmarks import fidelity

    monkeypatch.setenv("MUSETALK_BENCH_CACHE", str(tmp_path / "cache"))
    report = fidelity.main(["--smoke", "--dtype", "bf16", "--json", str(tmp_path / "f.json")])
    stages = report["stages"]
    assert set(stages) == {"audio features", "latents", "faces", "frames"}
    # bf16 really ran (the outputs moved) and stayed close (tiny random networks: measured 1.4 % / 54 dB)
    assert 0 < stages["latents"]["rel_l2"] < 0.1 and 0 < stages["audio features"]["rel_l2"] < 0.1
    assert stages["frames"]["max_levels"] > 0 and stages["frames"]["psnr_db"] > 35
    assert json.loads((tmp_path / "f.json").read_text())["dtype"] == "bf16"


def test_reference_side_can_run_in_its_own_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSETALK_BENCH_CACHE", str(tmp_path / "cache"))
    seen = []  # the precision of the networks the straightforward side really calls

    def spying(fn):
        def run(net, *a, **k):
            seen.append(next(net.parameters()).dtype)
            return fn(net, *a, **k)
        return run

    monkeypatch.setattr(ref, "unet_frames", spying(ref.unet_frames))
    monkeypatch.setattr(ref, "decode_batches", spying(ref.decode_batches))
    report = bench_run.main(["--smoke", "--dtype", "bf16", "--reference-dtype", "fp32", "--stages", "unet", "decode",
                             "--no-reference-png"])
    assert report["settings"]["dtype"] == "bfloat16" and report["settings"]["reference_dtype"] == "float32"
    for stage in ("unet", "decode"):
        row = report["stages"][stage]
        assert row["ours"]["median_s"] > 0 and row["reference"]["median_s"] > 0, row
    assert seen and set(seen) == {torch.float32}


def test_pass_size_benchmark_times_every_network_at_every_pass_size(tmp_path, monkeypatch):
    from benchmarks import passes

    monkeypatch.setenv("MUSETALK_BENCH_CACHE", str(tmp_path / "cache"))
    report = passes.main(["--smoke", "--json", str(tmp_path / "p.json")])
    table = report["seconds_per_batch"]
    assert set(table) == {"vae_encoder", "vae_decoder", "unet"}
    assert all(set(row) == {"1", "2"} and min(row.values()) > 0 for row in table.values())
    assert "| vae_decoder |" in passes.format_table(report)


def test_memory_benchmark_checks_the_output_and_reports_each_stage(tmp_path):
    """benchmarks/memory.py (issue 13's measurement): a child process per path, the written file checked (frames,
    durations), and with --timeline each stage's peak RSS; here 0.4 s of 720p through the command line."""
    from benchmarks import memory

    out = tmp_path / "memory.json"
    ballast = b"\x01" * (1536 << 20)  # a large parent, as a test session is: its peak must not leak into the rows
    assert memory.main(["--seconds", "0.4", "--resolution", "720p", "--path", "cli", "--networks", "stand-in",
                        "--timeline", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    del ballast
    networks, cli = json.loads(out.read_text())
    assert networks["path"] == "networks" and 0 < networks["peak_rss_mb"] < 1200  # loading alone is about 650 MB
    assert cli["frames_ok"] and cli["durations_ok"] and cli["out_frames"] == 10
    stages = {row["stage"]: row for row in cli["stages"]}
    assert list(stages) == ["start", "audio", "faces", "vae_encode", "lip-sync"]  # a sample at every stage start
    # the kernel's VmHWM trails VmRSS by its per-thread counter batches (up to 64 pages a thread), so a sample can
    # read a little above the high-water mark written at exit (seen: 884.8 against 884.7 MB)
    sampled = max(row["max_mb"] for row in stages.values())
    assert cli["peak_rss_mb"] + 2.0 >= sampled > networks["peak_rss_mb"] / 2


def test_import_time_benchmark_reports_the_pack_import_apart_from_torch(tmp_path):
    from benchmarks import import_time

    report = import_time.main(["--repeats", "1", "--json", str(tmp_path / "import.json")])
    assert json.loads((tmp_path / "import.json").read_text()) == report
    assert report["heavy_modules"] == [] and "LoadMuseTalkModels" in report["nodes"]
    assert report["median_pack_s"] > 0 and report["median_torch_s"] > 0  # measured, never bounded here
    assert report["command"] == "python -m benchmarks.import_time --repeats 1 --json " + str(tmp_path / "import.json")


# ------------------------------------------------------------------------------------------------ several speakers
def test_speaker_clock_splits_the_run_at_the_progress_callbacks():
    from benchmarks.speakers import StageClock

    clock = StageClock(torch.device("cpu"))
    clock.marks = [(name, (t, 2 * t)) for name, t in (("audio", 1.0), ("audio", 2.0), ("face tracks", 4.0),
                   ("faces", 5.0), ("vae encode", 7.0), ("faces", 8.0), ("vae encode", 9.0), ("lip-sync", 10.0))]
    clock.generated = [3.0, 5.0]
    s = clock.seconds((0.5, 1.0), (15.0, 30.0), (16.0, 32.0))
    assert s["setup"] == 0.5 and s["audio"] == 3.0 and s["face tracks"] == 1.0
    assert s["faces"] == 3.0 and s["vae encode"] == 2.0  # summed over the two speakers
    assert s["lip-sync"] == 5.0 and s["generate"] == 3.0 and s["blend + io"] == 2.0
    assert s["finish"] == 1.0 and s["total"] == 15.5
    cpu = clock.seconds((0.5, 1.0), (15.0, 30.0), (16.0, 32.0), which=1)
    assert cpu["faces"] == 6.0 and cpu["generate"] == 5.0 and cpu["blend + io"] == 5.0 and cpu["total"] == 31.0


def test_speakers_benchmark_runs_one_two_three_speakers_and_the_default(tmp_path, monkeypatch):
    """Stand-in networks, 6 frames: each run lip-syncs its own heads, its stages add up to its wall time, and every
    network function the benchmark replaced is back afterwards."""
    from benchmarks import speakers
    from musetalk_core.faces import locate, parsing
    from musetalk_core.generators.musetalk import generate
    from musetalk_core.models import dwpose, s3fd

    before = [s3fd.detect, locate._landmarks, parsing.parse_labels, generate.iter_generated, dwpose.predict_keypoints]
    monkeypatch.setenv("MUSETALK_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "speakers.json"
    report = speakers.main(["--smoke", "--scale", "stand-in", "--frames", "6", "--json", str(out)])
    assert [s3fd.detect, locate._landmarks, parsing.parse_labels, generate.iter_generated,
            dwpose.predict_keypoints] == before
    assert json.loads(out.read_text()) == report
    runs = report["runs"]
    assert list(runs) == list(speakers.RUNS)
    assert runs["default"]["tracks"] is None and runs["default"]["speaker_tracks"] == [None]
    assert runs["default"]["seconds"]["face tracks"] == 0  # the default path never tracks
    for name, count in speakers.RUNS.items():
        r = runs[name]
        assert r["output_frames"] == 6 and r["faces_found"] == [6] * max(count, 1)
        if count:
            assert r["tracks"] == 3 and r["speaker_tracks"] == list(range(count))
            assert r["seconds"]["face tracks"] > 0
        s = r["seconds"]
        parts = ("setup", "audio", "face tracks", "faces", "vae encode", "lip-sync", "finish")
        assert sum(s[p] for p in parts) == pytest.approx(s["total"], abs=0.01)
        assert s["generate"] + s["blend + io"] == pytest.approx(s["lip-sync"], abs=0.002)
        assert r["fps"]["total"] == pytest.approx(6 / s["total"], rel=0.01)
        assert r["cpu_seconds"]["total"] > 0 and r["cpu_seconds"]["faces"] > 0
    assert set(report["per_extra_speaker_s"]) >= {"total", "faces", "vae encode", "lip-sync"}
    text = speakers.format_markdown(report)
    assert all(f"| {name} |" in text for name in speakers.RUNS) and "each extra speaker" in text
    assert report["command"].startswith("python -m benchmarks.speakers --smoke")


def test_speakers_benchmark_runs_the_networks_before_the_drawn_heads_answer(tmp_path, monkeypatch):
    """With tiny networks S3FD and DWPose really run (their cost is measured), the drawn heads then answer."""
    from benchmarks import speakers
    from musetalk_core.models import dwpose, s3fd

    calls = {"s3fd": 0, "dwpose": 0}

    def counting(name, fn):
        def call(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return call

    monkeypatch.setattr(s3fd, "detect", counting("s3fd", s3fd.detect))
    monkeypatch.setattr(dwpose, "predict_keypoints", counting("dwpose", dwpose.predict_keypoints))
    monkeypatch.setenv("MUSETALK_BENCH_CACHE", str(tmp_path / "cache"))
    report = speakers.main(["--smoke", "--frames", "2", "--size", "96x160", "--runs", "2 speakers", "--io",
                            "memory"])
    r = report["runs"]["2 speakers"]
    assert r["tracks"] == 3 and r["speaker_tracks"] == [0, 1] and r["faces_found"] == [2, 2]
    assert calls["s3fd"] >= 1 and calls["dwpose"] >= 2  # one tracking pass; landmarks per speaker

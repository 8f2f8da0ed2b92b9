"""audio_segments "overlapping" (issue 25): 30 s Whisper segments every 20 s, each frame's window taken from the
segment it sits furthest inside. The default ("reference") is pinned by test_audio_golden.py; here: the option is
off by default, changes nothing up to 30 s, picks the right segment per frame, and reaches encode_audio from the
node, the command line and batch jobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musetalk_core.audio import overlap
from musetalk_core.audio.clip import num_segments
from musetalk_core.audio.windows import encode_audio, original_window_rows, reference_window_rows
from musetalk_core.hooks import RunHooks
from musetalk_core.options import PARAMS, LipsyncOptions, node_input, resolve
from musetalk_core.types import MuseTalkModels
from musetalk_core.weights.loading import load_models
from tiny.whisper import as_audio, seeded_signal, write

LONG_S = 95.0  # five overlapping segments (0, 20, 40, 60, 80 s), four reference ones


class _Plus(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, h, *args, **kwargs):
        return (h + self.value,)


class PositionEncoder(torch.nn.Module):
    """Encoder-shaped stub whose stem state at encoder position j is j (layers add 1, the "final norm" 100), so a
    window shows which position of which encoder call each of its rows came from. Records its batch sizes."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([_Plus(1.0) for _ in range(4)])
        self.batches = []

    def forward(self, mel):
        self.batches.append(mel.shape[0])
        h = torch.arange(1500, dtype=mel.dtype)[None, :, None].expand(mel.shape[0], 1500, 384).contiguous()
        for layer in self.layers:
            h = layer(h)[0]
        return (h + 100.0,)


def stub_models():
    return MuseTalkModels(version="v15", device=torch.device("cpu"), dtype=torch.float32, models_dir=Path("."),
                          networks={"whisper": PositionEncoder()}, extras={})


def signal(seconds, seed=3):
    return as_audio(seeded_signal(seconds, 16000, 1, seed=seed), 16000)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper_models")
    write(folder, "v15")
    return load_models([folder], networks=["whisper"], device="cpu", precision="fp32")


# ------------------------------------------------------------------------------------------------ default / short


def test_the_default_is_the_reference():
    assert PARAMS["audio_segments"].default == "reference" == LipsyncOptions().audio_segments
    assert PARAMS["audio_segments"].choices == overlap.AUDIO_SEGMENTS == ("reference", "overlapping")
    audio = signal(35.0)
    plain = encode_audio(stub_models(), audio, 25.0)
    named = encode_audio(stub_models(), audio, 25.0, audio_segments="reference")
    assert torch.equal(plain.features, named.features) and plain.settings["audio_segments"] == "reference"


@pytest.mark.parametrize("mode", ["reference", "v1.0-original"])
@pytest.mark.parametrize("seconds", [7.3, 30.015])  # 30.015 s: 1500 Whisper rows, still one segment
def test_up_to_one_segment_overlapping_is_the_reference(tiny_whisper, mode, seconds):
    audio = signal(seconds)
    ref = encode_audio(tiny_whisper, audio, 25.0, feature_mode=mode)
    ovl = encode_audio(tiny_whisper, audio, 25.0, feature_mode=mode, audio_segments="overlapping")
    assert torch.equal(ref.features, ovl.features) and torch.equal(ref.silent, ovl.silent)
    assert ovl.settings["audio_segments"] == "overlapping"


def test_unknown_choice_is_refused():
    from musetalk_core.errors import InputError

    with pytest.raises(InputError, match="audio_segments"):
        encode_audio(stub_models(), signal(2.0), 25.0, audio_segments="crossfade")


# ------------------------------------------------------------------------------------------------ row selection


def _margin(lo, hi, start, length):
    """Brute force: rows of audio between the window [lo, hi] and the nearest edge of the segment at ``start`` that
    cuts audio; None where the window is not inside the segment."""
    end = min(start + overlap.SEGMENT_ROWS, length)
    if lo < start or hi >= end:
        return None
    cuts = ([lo - start] if start > 0 else []) + ([end - 1 - hi] if start + overlap.SEGMENT_ROWS < length else [])
    return min(cuts) if cuts else float("inf")


@pytest.mark.parametrize("fps, pads, rows_of", [(25.0, (2, 2), reference_window_rows),
                                                (29.97, (2, 2), reference_window_rows),
                                                (24.0, (10, 10), reference_window_rows),
                                                (25.0, (2, 2), original_window_rows)])
def test_each_frame_reads_the_segment_it_is_furthest_inside(fps, pads, rows_of):
    length = int(LONG_S * 50)
    num_frames = int(LONG_S * fps)
    rows = rows_of(num_frames, fps, *pads, length)
    plan = overlap.plan_segments(rows, length)
    assert plan.starts.tolist() == [0, 1000, 2000, 3000, 4000]
    assert plan.ends.tolist() == [1500, 2500, 3500, 4500, 4750] and plan.length == 1500 * 4 + 750
    offsets = np.concatenate([[0], np.cumsum(plan.ends - plan.starts)])
    r, moved = rows.numpy(), plan.rows.numpy()
    width = r.shape[1]
    for t in range(num_frames):
        valid = (r[t] >= 0) & (r[t] < length)
        lo, hi = r[t][valid].min(), r[t][valid].max()
        margins = [_margin(lo, hi, int(s), length) for s in plan.starts]
        best = max(m for m in margins if m is not None)
        c = plan.choice[t]
        assert margins[c] == best and all(m is None or m < best for m in margins[:c]), (t, margins, c)
        # the moved rows are the frame's own rows, inside the chosen segment's states
        assert (moved[t][~valid] == -1).all()
        assert (moved[t][valid] - offsets[c] + plan.starts[c] == r[t][valid]).all()
        assert ((moved[t][valid] >= offsets[c]) & (moved[t][valid] < offsets[c + 1])).all()
        # about 5 s of audio around every window (the segments overlap by 10 s), the track's own ends aside
        assert best >= (overlap.SEGMENT_ROWS - overlap.HOP_ROWS) // 2 - width, (t, best)
    assert (np.diff(plan.choice) >= 0).all() and set(plan.choice) == {0, 1, 2, 3, 4}


def test_hop_must_leave_room_for_a_window():
    with pytest.raises(ValueError):
        overlap.segment_starts(4750, hop_rows=1500 - overlap.MAX_WINDOW_ROWS + 1)


@pytest.mark.parametrize("mode", ["reference", "v1.0-original"])
def test_windows_come_from_the_chosen_segment(mode):
    """End to end through encode_audio: every row of a frame's window holds the encoder position it has in the
    chosen segment (reference: its position in its 30 s block); shapes, window rows and silence flags stay the
    reference's; the encoder runs SEGMENT_BATCH segments at a time and the progress totals num_segments."""
    audio = signal(LONG_S)
    ref = encode_audio(stub_models(), audio, 25.0, feature_mode=mode)
    models, steps = stub_models(), []
    ovl = encode_audio(models, audio, 25.0, feature_mode=mode, audio_segments="overlapping",
                       hooks=RunHooks(advance=steps.append))
    assert ovl.features.shape == ref.features.shape and torch.equal(ovl.silent, ref.silent)
    assert torch.equal(ovl.settings["window_rows"], ref.settings["window_rows"])
    assert torch.equal(ovl.settings["level_db"], ref.settings["level_db"])
    assert models.network("whisper").batches == [4, 1] and sum(steps) == 5 == num_segments(audio, "overlapping")

    rows = ref.settings["window_rows"]
    length = int(LONG_S * 50)
    plan = overlap.plan_segments(rows, length)
    valid = (rows >= 0) & (rows < length)
    stem_ref = ref.features[:, 0::5, 0]  # (T, 10): the stem state of each window row
    stem_ovl = ovl.features[:, 0::5, 0]
    assert torch.equal(stem_ref[valid], (rows % 1500)[valid].float())
    expected = rows - torch.from_numpy(plan.starts[plan.choice])[:, None]
    assert torch.equal(stem_ovl[valid], expected[valid].float())
    assert (stem_ovl[~valid] == 0).all()
    last = 104 if mode == "reference" else 4  # layer 4, after the "final norm" in reference mode only
    assert (ovl.features[:, 4::5, 0][valid] == stem_ovl[valid] + last).all()
    switched = np.flatnonzero(plan.choice != 0)
    assert not torch.equal(ovl.features[switched], ref.features[switched])


# ------------------------------------------------------------------------------------------------ reaching it


def test_the_node_shows_it_and_passes_it(pack, monkeypatch):
    cls = pack.NODE_CLASS_MAPPINGS["WhisperAudioEncode"]
    types = cls.INPUT_TYPES()
    assert types["optional"]["audio_segments"] == node_input("audio_segments")
    assert list(types["optional"])[-1] == "audio_segments"  # the last widget: saved workflows keep their positions
    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs.get("audio_segments"))
        return encode_audio(*args, **kwargs)

    monkeypatch.setattr("musetalk_core.audio.windows.encode_audio", recording)
    node = cls()
    out = node.encode(stub_models(), signal(35.0), 25.0, 2, 2, "reference", -45.0, audio_segments="overlapping")[0]
    assert out.settings["audio_segments"] == "overlapping"
    node.encode(stub_models(), signal(2.0), 25.0, 2, 2, "reference", -45.0)  # a workflow saved before the widget
    assert seen == ["overlapping", "reference"]


def test_the_command_line_and_batch_jobs_pass_it(tmp_path):
    from musetalk_core import cli, pipeline
    from musetalk_core.io.spill import SpillFolder

    parser = cli.build_parser()
    base = ["lipsync", "--video", "v.mp4", "--audio", "a.wav", "-o", "o.mp4"]
    assert cli.options_from_args(parser.parse_args(base)).audio_segments == "reference"
    options = cli.options_from_args(parser.parse_args(base + ["--audio-segments", "overlapping"]))
    assert options.audio_segments == "overlapping"
    assert resolve({"audio_segments": "overlapping"}).audio_segments == "overlapping"  # a batch job line's key
    features = pipeline.encode_features(stub_models(), signal(35.0), 25.0, options, SpillFolder(path=tmp_path))
    assert features.settings["audio_segments"] == "overlapping"
    reference = encode_audio(stub_models(), signal(35.0), 25.0)
    assert not torch.equal(torch.as_tensor(np.asarray(features.features)), reference.features)

"""Face tracks (faces.tracks) and automatic speaker selection (faces.speaker_match), on hand-made detections and on
synthetic several-head clips (benchmarks.synthetic.make_multi_clip) with the detector / landmark stand-ins."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from benchmarks.standins import heads_detector, heads_landmarks
from benchmarks.synthetic import make_multi_clip, speech_audio
from musetalk_core.faces import speaker_match as sm
from musetalk_core.faces.tracks import FaceTracks, detect_tracks, link_tracks
from musetalk_core.hooks import RunHooks
from musetalk_core.io.sources import TensorSource
from musetalk_core.models import s3fd
from musetalk_core.models.dwpose import FACE_SLICE

FRAME = (200, 400)  # (h, w) of the hand-made cases
SIZE = (180, 320)
EVENTS = ("cross", "cutaway", "leave")


def dets(*boxes, scores=None):
    """One frame's Detections from (cx, cy) centres of 60x60 boxes or explicit (x1, y1, x2, y2) boxes."""
    rows = [b if len(b) == 4 else (b[0] - 30, b[1] - 30, b[0] + 30, b[1] + 30) for b in boxes]
    scores = [0.99 - 0.01 * k for k in range(len(rows))] if scores is None else scores
    return s3fd.Detections(torch.tensor(rows, dtype=torch.float32).reshape(-1, 4),
                           torch.tensor(scores, dtype=torch.float32))


def centres_x(tracks: FaceTracks, k: int) -> np.ndarray:
    b = tracks.boxes[k].numpy()
    return (b[:, 0] + b[:, 2]) / 2


# ---- link_tracks on hand-made detections ----

def test_crossing_faces_keep_identity():
    # A moves right, B left, 15 px a frame, both always detected; B listed first so order cannot help
    frames = [dets((205 - 15 * i, 100), (15 * i + 10, 100)) for i in range(14)]
    # at frame 7 B's box is nearer A's previous box than A's own: matching the last boxes would swap them
    a6, a7, b7 = 15 * 6 + 10, 15 * 7 + 10, 205 - 15 * 7
    assert abs(b7 - a6) < abs(a7 - a6)
    tracks = link_tracks(frames, FRAME)
    assert tracks.num_tracks == 2
    np.testing.assert_allclose(centres_x(tracks, 0), [15 * i + 10 for i in range(14)])
    np.testing.assert_allclose(centres_x(tracks, 1), [205 - 15 * i for i in range(14)])


def test_crossing_while_both_hidden_uses_velocity():
    a = [10 + 15 * i for i in range(16)]
    b = [215 - 15 * i for i in range(16)]
    frames = [dets((a[i], 100), (b[i], 100)) if not 6 <= i < 9 else dets() for i in range(16)]
    # after the gap, each face reappears nearer the other's last box
    assert abs(b[9] - a[5]) < abs(a[9] - a[5])
    tracks = link_tracks(frames, FRAME)
    assert tracks.num_tracks == 2
    seen = [i for i in range(16) if not 6 <= i < 9]
    np.testing.assert_allclose(centres_x(tracks, 0)[seen], np.array(a)[seen])
    np.testing.assert_allclose(centres_x(tracks, 1)[seen], np.array(b)[seen])
    assert not tracks.present(0)[6:9].any()


def test_cutaway_relinks_both_faces():
    frames = [dets((100 + (i % 3), 100), (300, 102)) for i in range(10)] + [dets()] * 30 + \
             [dets((302, 100), (99, 101)) for _ in range(10)]
    tracks = link_tracks(frames, FRAME)
    assert tracks.num_tracks == 2
    assert tracks.present(0).tolist() == [True] * 10 + [False] * 30 + [True] * 10
    assert (centres_x(tracks, 0)[40:] == 99).all() and (centres_x(tracks, 1)[40:] == 302).all()
    # a gap longer than max_gap starts new tracks
    assert link_tracks(frames, FRAME, max_gap=20).num_tracks == 4


def test_face_leaving_and_reentering_keeps_its_track():
    xs = [300 + 20 * i for i in range(6)]  # walks out of the right edge (400)
    frames = [dets((100, 100), (x, 100)) for x in xs]
    frames += [dets((100, 100))] * 25
    frames += [dets((100, 100), (x, 100)) for x in (390, 370, 350, 340)]  # comes back at the same edge
    tracks = link_tracks(frames, FRAME)
    assert tracks.num_tracks == 2
    assert tracks.present(1).tolist() == [True] * 6 + [False] * 25 + [True] * 4
    assert tracks.present(0).all()


def test_spurious_detection_dropped_but_a_lone_face_kept():
    frames = [dets((100, 100)) for _ in range(10)]
    frames[4] = dets((100, 100), (320, 150))
    tracks = link_tracks(frames, FRAME)
    assert tracks.num_tracks == 1 and tracks.present(0).all()
    lone = link_tracks([None, dets((50, 60)), dets()], FRAME)
    assert lone.num_tracks == 1 and lone.present(0).tolist() == [False, True, False]


def test_frames_not_examined_are_crossed_and_not_counted_as_gap():
    frames = [dets((100 + 4 * i, 100)) if i % 6 == 0 else None for i in range(30)]
    tracks = link_tracks(frames, FRAME, max_gap=0)
    assert tracks.num_tracks == 1
    assert tracks.present(0).tolist() == [i % 6 == 0 for i in range(30)]
    for i in range(0, 30, 6):  # the boxes are the detections, not smoothed or interpolated
        assert torch.equal(tracks.box(0, i), frames[i].boxes[0])
        assert tracks.scores[0, i] == frames[i].scores[0]
    assert tracks.box(0, 1) is None and tracks.scores[0, 1] == 0
    examined_empty = [f if f is not None else dets() for f in frames]
    assert link_tracks(examined_empty, FRAME, max_gap=0).num_tracks == 5


def test_tracks_ordered_left_to_right_at_first_appearance():
    frames = [dets((300, 100))] * 5 + [dets((300, 100), (50, 100))] * 5
    tracks = link_tracks(frames, FRAME)
    assert tracks.num_tracks == 2
    assert tracks.present(0).tolist() == [False] * 5 + [True] * 5  # appeared later, but further left
    tie = link_tracks([dets((200, 40))] * 3 + [dets((200, 40), (200, 160))] * 3, FRAME)
    assert tie.present(0).all() and tie.present(1).sum() == 3  # same x: the earlier track first


def test_track_at_box_and_summary():
    inner, outer = (150, 60, 190, 100), (60, 20, 200, 180)  # centres x 170 and 130
    tracks = link_tracks([dets(outer, inner)] * 3 + [dets(outer)] * 3, FRAME)
    assert tracks.num_tracks == 2 and tracks.box(0, 0).tolist() == list(map(float, outer))
    assert tracks.track_at(170, 80, 0) == 1  # inside both: the smaller box
    assert tracks.track_at(70, 30, 0) == 0
    assert tracks.track_at(170, 80, 4) == 0  # the inner track is absent there
    assert tracks.track_at(300, 150, 0) is None
    lines = tracks.summary().splitlines()
    assert lines == ["track 0: frames 0-5, present in 6, mean centre (130, 100)",
                     "track 1: frames 0-2, present in 3, mean centre (170, 80)"]
    empty = link_tracks([dets(), None], FRAME)
    assert empty.num_tracks == 0 and empty.boxes.shape == (0, 2, 4) and empty.num_frames == 2
    assert empty.summary() == "no face tracks in 2 frames"


# ---- synthetic several-head clips ----

@pytest.fixture(scope="module")
def clips():
    return {(heads, seed): make_multi_clip(120, heads, SIZE, seed=seed, events=EVENTS)
            for heads in (2, 3) for seed in (0, 1)}


def test_multi_clip_ground_truth(clips):
    clip = clips[(3, 0)]
    n = clip.frames.shape[0]
    assert clip.frames.shape == (n, *SIZE, 3) and clip.frames.dtype == torch.uint8
    assert clip.boxes.shape == (3, n, 4) and clip.landmarks.shape == (3, n, 68, 2) and len(clip.audios) == 3
    assert np.isnan(clip.boxes[~clip.visible]).all() and (clip.landmarks[~clip.visible] == -1).all()
    cut = slice(*clip.windows["cutaway"])
    assert not clip.visible[:, cut].any() and clip.visible[:, :5].all()
    assert not clip.visible[2, slice(*clip.windows["leave"])].all()  # the rightmost head left for a while
    assert not clip.visible[1, slice(*clip.windows["cross"])].all()  # head 1 hidden behind head 0
    start_x = (clip.boxes[:, 0, 0] + clip.boxes[:, 0, 2]) / 2
    end_x = (clip.boxes[:, -1, 0] + clip.boxes[:, -1, 2]) / 2
    assert start_x[0] < start_x[1] < start_x[2] and end_x[1] < end_x[0]  # heads 0 and 1 swapped sides
    env = [sm.audio_envelope(a["waveform"], 16000, clip.fps, n) for a in clip.audios]
    assert np.corrcoef(env[0], env[1])[0, 1] < 0.5  # independent voices


@pytest.mark.parametrize("heads", [2, 3])
def test_identities_follow_the_heads_through_all_events(clips, heads):
    for seed in (0, 1):
        clip = clips[(heads, seed)]
        found = heads_detector(clip)(None, clip.frames)
        tracks = link_tracks(found, SIZE)
        assert tracks.num_tracks == heads, tracks.summary()
        for k in range(heads):
            assert np.array_equal(tracks.present(k).numpy(), clip.visible[k]), (seed, k)
            for i in np.flatnonzero(clip.visible[k]):
                gt = torch.from_numpy(clip.boxes[k, i])
                own = torch.stack([d for d in found[i].boxes])
                j = int(torch.argmin((own - gt).abs().sum(1)))  # the detection of head k in frame i
                assert torch.equal(tracks.boxes[k, i], own[j]), (seed, k, i)


class _Models:
    """models.use('s3fd') with no network (the stand-in detector ignores it)."""

    @contextmanager
    def use(self, *names):
        assert names == ("s3fd",)
        yield (None,)


def test_detect_tracks_equals_linking_the_same_detections(clips, monkeypatch):
    clip = clips[(2, 0)]
    n = clip.frames.shape[0]
    detect = heads_detector(clip)
    batches = []

    def counted(net, frames_u8, *, scale=1.0):
        batches.append(int(frames_u8.shape[0]))
        return detect(net, frames_u8, scale=scale)

    monkeypatch.setattr(s3fd, "detect", counted)
    wanted = np.ones(n, bool)
    wanted[20:50] = False
    wanted[::7] = False
    steps = []
    tracks = detect_tracks(_Models(), TensorSource(clip.frames), wanted, batch_size=4, chunk_frames=16,
                           hooks=RunHooks(advance=steps.append))
    expected = link_tracks([d if w else None for d, w in zip(detect(None, clip.frames), wanted)], SIZE)
    assert tracks.frame_size == SIZE and tracks.num_frames == n
    assert torch.equal(tracks.boxes.isnan(), expected.boxes.isnan())
    assert torch.equal(torch.nan_to_num(tracks.boxes), torch.nan_to_num(expected.boxes))
    assert torch.equal(tracks.scores, expected.scores)
    assert not tracks.boxes[:, ~torch.from_numpy(wanted)].isfinite().any()
    assert sum(steps) == sum(batches) == wanted.sum() and max(batches) <= 4
    whole = detect_tracks(_Models(), TensorSource(clip.frames), None)
    assert whole.num_tracks == 2 and np.array_equal(whole.present(1).numpy(), clip.visible[1])


# ---- speaker_match ----

def test_mouth_openness_and_absent_frames():
    lm = torch.full((3, 68, 2), -1, dtype=torch.int64)
    face = torch.zeros(68, 2, dtype=torch.int64)
    face[27] = torch.tensor([50, 40])
    face[8] = torch.tensor([50, 140])  # face height 100
    face[[61, 62, 63], 1] = torch.tensor([100, 100, 100])
    face[[67, 66, 65], 1] = torch.tensor([104, 106, 108])  # gaps 4, 6, 8
    lm[0] = face
    lm[2] = face
    lm[2, 8] = lm[2, 27]  # no face height
    out = sm.mouth_openness(lm)
    assert out[0] == pytest.approx(0.06) and np.isnan(out[1]) and np.isnan(out[2])


def test_audio_envelope_is_rms_per_frame():
    sr, fps = 100, 10.0
    wave = torch.cat([torch.full((10,), 0.5), torch.zeros(10), torch.tensor([1.0, -1.0] * 5)])
    stereo = torch.stack([wave, wave])[None]  # (1, 2, S) as ComfyUI's AUDIO
    np.testing.assert_allclose(sm.audio_envelope(stereo, sr, fps, 4), [0.5, 0.0, 1.0, 0.0])
    mixed = torch.stack([wave, -wave])  # opposite channels cancel in the mono mix
    np.testing.assert_allclose(sm.audio_envelope(mixed, sr, fps, 3), [0, 0, 0])


def test_match_scores_and_pick_speaker_edge_cases():
    env = np.sin(np.arange(40) * 0.7) + 1
    open_ = np.stack([env * 0.1, np.cos(np.arange(40) * 1.9), np.full(40, np.nan)])
    open_[1, ::2] = np.nan
    scores = sm.match_scores(open_, env)
    assert scores[0] == pytest.approx(1.0) and np.isnan(scores[2]) and scores[1] < 0.9
    assert sm.pick_speaker(scores) == 0
    assert np.isnan(sm.match_scores(open_[:1, :10], env[:10], min_frames=11)).all()
    assert sm.pick_speaker(np.array([np.nan, np.nan])) is None and sm.pick_speaker(np.array([])) is None
    assert sm.pick_speaker(np.array([np.nan, -0.2, 0.1])) == 2


def _track_openness(clip, tracks, jitter):
    predict = heads_landmarks(clip, jitter=jitter)
    out = np.full((tracks.num_tracks, tracks.num_frames), np.nan)
    for k in range(tracks.num_tracks):
        idx = torch.nonzero(tracks.present(k)).flatten().tolist()
        kps, _ = predict(None, clip.frames.numpy()[idx], [tracks.boxes[k, i].tolist() for i in idx])
        out[k, idx] = sm.mouth_openness(torch.from_numpy(kps[:, FACE_SLICE].astype(np.int64)))
    return out


@pytest.mark.parametrize("lead", [0, 2])
def test_speaker_match_picks_each_heads_own_audio(clips, lead):
    for (heads, seed), clip in clips.items():
        n = clip.frames.shape[0]
        tracks = link_tracks(heads_detector(clip)(None, clip.frames), SIZE)
        opening = _track_openness(clip, tracks, jitter=1.0)
        shifted = np.full_like(opening, np.nan)  # the mouth moves `lead` frames before its sound
        shifted[:, :n - lead] = opening[:, lead:]
        for head, audio in enumerate(clip.audios):
            env = sm.audio_envelope(audio["waveform"], audio["sample_rate"], clip.fps, n)
            scores = sm.match_scores(shifted, env)
            assert sm.pick_speaker(scores) == head, (heads, seed, head, scores)


def test_landmark_standin_follows_the_given_box(clips):
    clip = clips[(2, 0)]
    i = 0
    predict = heads_landmarks(clip)
    frames = clip.frames.numpy()[[i, i, i]]
    kps, scores = predict(None, frames, [clip.boxes[1, i].tolist(), clip.boxes[0, i].tolist(), None])
    assert np.array_equal(kps[0, FACE_SLICE], clip.landmarks[1, i])
    assert np.array_equal(kps[1, FACE_SLICE], clip.landmarks[0, i])
    top = heads_detector(clip, jitter=0.0)(None, clip.frames[i:i + 1])[0].boxes[0].numpy()
    first = int(np.argmin(np.abs(clip.boxes[:, i] - top).sum(1)))
    assert np.array_equal(kps[2, FACE_SLICE], clip.landmarks[first, i]) and (scores[:, FACE_SLICE] > 0).all()


def test_speech_audio_depends_on_seed():
    (_, env_a), (_, env_b), (_, env_a2) = (speech_audio(2.0, seed=s) for s in (1, 2, 1))
    assert np.array_equal(env_a, env_a2) and not np.array_equal(env_a, env_b)
    assert (env_a == 0).mean() > 0.1  # pauses between syllables and phrases


def test_detect_tracks_with_the_tiny_network(tiny_models_factory):
    """The real S3FD path (network in inference mode, batches as locate_faces makes them) gives link_tracks over the
    same batched detections."""
    from musetalk_core.weights.loading import load_models

    models = load_models([tiny_models_factory("v15", networks=["s3fd", "landmarks"])], device="cpu",
                         networks=["s3fd"])
    frames = make_multi_clip(5, 2, "tiny", seed=3).frames
    tracks = detect_tracks(models, TensorSource(frames), None, batch_size=2)
    with models.use("s3fd") as (net,):
        found = [d for s in range(0, 5, 2) for d in s3fd.detect(net, frames[s:s + 2])]
    assert sum(len(d.scores) for d in found) > 0  # random weights find "faces" all over: linking is exercised
    expected = link_tracks(found, frames.shape[1:3])
    assert torch.equal(torch.nan_to_num(tracks.boxes, -7), torch.nan_to_num(expected.boxes, -7))
    assert tracks.num_frames == 5 and tracks.frame_size == (128, 160) and tracks.num_tracks > 0

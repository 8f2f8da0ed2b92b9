"""How often speaker_match picks the right face on synthetic several-head clips, and how the scoring variants compare.

Per clip (benchmarks.synthetic.make_multi_clip with every event): face tracks from the detector stand-in, per track
the landmark stand-in's 68 points on the track's box (with ``jitter`` pixels of noise), mouth openness; then for each
head's own audio, which track scores best; a hit when that track is the head's. Run:

    python -m benchmarks.speaker_pick [--seeds 20] [--frames 150]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from musetalk_core.faces import speaker_match as sm
from musetalk_core.faces.tracks import link_tracks
from musetalk_core.models.dwpose import FACE_SLICE

from .standins import heads_detector, heads_landmarks
from .synthetic import make_multi_clip

SIZE = (180, 320)
EVENTS = ("cross", "cutaway", "leave")


def _smooth(x: np.ndarray, frames: int = 3) -> np.ndarray:
    """Centred moving mean; NaN where the window has a NaN or runs off the ends."""
    out = np.full_like(x, np.nan)
    half = frames // 2
    if len(x) >= frames:
        out[half:len(x) - half] = np.convolve(x, np.ones(frames) / frames, mode="valid")
    return out


def _variant(openness, envelope, smooth: bool, diff: bool, max_lag: int, min_frames: int = 8):
    """Scores of one variant: Pearson of the (smoothed?) (differenced?) series, the best over lags up to
    ``max_lag`` ("chosen", speaker_match.match_scores, is levels_lags2)."""
    prep = _smooth if smooth else (lambda x: x)
    step = np.diff if diff else (lambda x: x)
    env = step(prep(np.asarray(envelope, float)))
    out = np.full(len(openness), np.nan)
    for k, series in enumerate(openness):
        s = step(prep(np.asarray(series, float)))
        best = np.nan
        for lag in range(-max_lag, max_lag + 1):  # lag > 0: the mouth moves before the sound
            a = s[:len(s) - lag] if lag >= 0 else s[-lag:]
            b = env[lag:] if lag >= 0 else env[:len(env) + lag]
            ok = np.isfinite(a) & np.isfinite(b)
            if ok.sum() >= min_frames:
                best = np.nanmax([best, sm._pearson(a[ok], b[ok])])
        out[k] = best
    return out


VARIANTS = {"diff_smooth": (True, True, 0), "levels": (False, False, 0), "levels_smooth": (True, False, 0),
            "levels_lags2": (False, False, 2), "levels_smooth_lags2": (True, False, 2),
            "levels_lags3": (False, False, 3), "levels_smooth_lags3": (True, False, 3)}


def track_openness(clip, tracks, jitter: float) -> np.ndarray:
    """(K, N) mouth openness per track and frame from the landmark stand-in on each track's box."""
    predict = heads_landmarks(clip, jitter=jitter)
    out = np.full((tracks.num_tracks, tracks.num_frames), np.nan)
    frames = clip.frames.numpy()
    for k in range(tracks.num_tracks):
        idx = torch.nonzero(tracks.present(k)).flatten().tolist()
        if not idx:
            continue
        boxes = [tracks.boxes[k, i].tolist() for i in idx]
        kps, _ = predict(None, frames[idx], boxes)
        out[k, idx] = sm.mouth_openness(torch.from_numpy(kps[:, FACE_SLICE].astype(np.int64)))
    return out


def head_of_track(clip, tracks) -> list:
    """The ground-truth head each track follows (by box centre, majority over its frames)."""
    out = []
    for k in range(tracks.num_tracks):
        votes = []
        for i in torch.nonzero(tracks.present(k)).flatten().tolist():
            c = tracks.boxes[k, i].numpy()
            gc = (clip.boxes[:, i, :2] + clip.boxes[:, i, 2:]) / 2
            d = np.nan_to_num(((gc - (c[:2] + c[2:]) / 2) ** 2).sum(1), nan=np.inf)
            votes.append(int(np.argmin(d)))
        out.append(int(np.bincount(votes).argmax()) if votes else -1)
    return out


def hit_rates(seeds: int, frames: int, jitters=(1.0, 3.0, 5.0), heads=(2, 3), lags=(0, 2, -1)) -> dict:
    """Hit rate per (variant, landmark jitter in pixels, lag: the mouth leads its sound by this many frames)."""
    hits: dict = {}
    trials = 0
    for nh in heads:
        for seed in range(seeds):
            clip = make_multi_clip(frames, nh, SIZE, seed=seed, events=EVENTS)
            tracks = link_tracks(heads_detector(clip)(None, clip.frames), SIZE)
            owner = head_of_track(clip, tracks)
            envs = [sm.audio_envelope(a["waveform"], a["sample_rate"], clip.fps, frames) for a in clip.audios]
            trials += nh
            for j in jitters:
                opening = track_openness(clip, tracks, j)
                for lag in lags:
                    shifted = np.full_like(opening, np.nan)  # the mouth leads by lag: its frame t shows t + lag
                    if lag >= 0:
                        shifted[:, :frames - lag] = opening[:, lag:]
                    else:
                        shifted[:, -lag:] = opening[:, :frames + lag]
                    for v, (smooth, diff, max_lag) in {"chosen": (None, None, None), **VARIANTS}.items():
                        key = f"{v} jitter {j:g}px lag {lag}"
                        for head, env in enumerate(envs):
                            scores = (sm.match_scores(shifted, env) if v == "chosen"
                                      else _variant(shifted, env, smooth, diff, max_lag))
                            pick = sm.pick_speaker(scores)
                            hits[key] = hits.get(key, 0) + (pick is not None and owner[pick] == head)
    return {k: v / trials for k, v in hits.items()} | {"trials": trials}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args(argv)
    print(f"{args.frames} frames, {SIZE[0]}x{SIZE[1]}, events {EVENTS}, seeds {args.seeds}")
    for name, rate in hit_rates(args.seeds, args.frames).items():
        print(f"{name}: {rate:.3f}" if name != "trials" else f"trials (audio x clip): {rate}")


if __name__ == "__main__":
    main()

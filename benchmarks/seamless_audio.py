"""Feature jumps at audio segment seams: audio_segments "reference" against "overlapping".

    python -m benchmarks.seamless_audio                       # 95 s of speech-like audio, both feature modes, CPU
    python -m benchmarks.seamless_audio --json benchmarks/results/cpu-seamless-audio.json

Encoder: whisper-tiny's real-size architecture with seeded random weights (benchmarks.networks; no real weights
here), its position embedding set to Whisper's sinusoids as the published checkpoint holds them (the random
positions of benchmarks.networks differ from row to row by noise). Audio: benchmarks.synthetic.make_audio, 25 fps.

For each pair of consecutive output frames (t, t+1), d_t = the L2 distance between their (50, 384) windows. Seams
(sets of pairs): "edges_30s" (the two windows hold rows on both sides of row 1500 k: where the reference changes
segment), "switches_20s" / "switches_15s" (overlapping with that hop changes segment between t and t+1),
"row_seams_20s" (the windows straddle the middle of a 20 s-hop overlap) and "fades_20s" (within 1 s of it). Every run
reports its largest d in every seam set over its median d elsewhere (pairs more than 1.5 s from any seam): a run
with no seam at a place gives the baseline there. Also: the share of frames whose window differs from the
reference's, and by how much (relative L2).

Runs: "reference"; "overlapping_20s" (encode_audio's own path: each frame's window from the segment it sits furthest
inside); "overlapping_15s" (the same with a 15 s hop, built from the library's pieces); and two comparison variants
that are not in the library, from the 20 s-hop segments: "per_row_20s" (each Whisper row, not each window, from the
segment it is furthest inside, so a switch falls inside windows as the reference's edges do) and "crossfade_20s"
(the two segments' states cross-faded linearly over 2 s around the middle of each overlap).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

FPS = 25.0
EDGE_ROWS = 1500  # the reference's segment length in Whisper rows (30 s)
CLEAR_S = 1.5  # "elsewhere": pairs at least this far from any seam (so beyond the cross-fades)
FADE_S = 2.0  # the cross-fade variant's length


def sinusoids(length: int, channels: int) -> torch.Tensor:
    """Whisper's fixed position embedding: sin and cos of geometric timescales from 1 to 10000."""
    half = channels // 2
    rates = torch.exp(-math.log(10000) / (half - 1) * torch.arange(half, dtype=torch.float64))
    angles = torch.arange(length, dtype=torch.float64)[:, None] * rates[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def load_encoder(version: str):
    """The real-size seeded random Whisper (fp32, CPU), with sinusoidal positions."""
    from musetalk_core.weights.loading import load_models

    from .networks import models_folder

    models = load_models([models_folder("real", version, networks=["whisper"])], version=version,
                         networks=["whisper"], device="cpu", precision="fp32")
    positions = models.network("whisper").embed_positions.weight
    with torch.no_grad():
        positions.copy_(sinusoids(*positions.shape))
    return models


def track_rows(models, audio, feature_mode: str) -> tuple:
    """(mono 16 kHz, the frames' window rows (T, 10) as encode_audio computes them, the track's length in rows)."""
    from musetalk_core.audio import whisper_states as ws
    from musetalk_core.audio.clip import audio_to_mono16k, frame_count
    from musetalk_core.audio.windows import original_window_rows, reference_window_rows
    from musetalk_core.hooks import NO_HOOKS

    mono = audio_to_mono16k(audio)[0]
    num_frames = frame_count(mono.shape[0], FPS)
    if feature_mode == "reference":
        length = ws.reference_blocks(models, None, mono, NO_HOOKS)[0]  # the blocks are never started
        return mono, reference_window_rows(num_frames, FPS, 2, 2, length), length
    length = ws.original_blocks(models, None, mono, NO_HOOKS)[0]
    return mono, original_window_rows(num_frames, FPS, 2, 2, length), length


def segment_states(models, mono, feature_mode: str, plan) -> torch.Tensor:
    """The states of every segment of ``plan`` laid end to end (overlapping_blocks), (plan.length, 5, 384)."""
    from musetalk_core.audio.whisper_states import overlapping_blocks
    from musetalk_core.hooks import NO_HOOKS

    with models.use("whisper") as (encoder,):
        return torch.cat([block for _, block in overlapping_blocks(models, encoder, mono, NO_HOOKS, feature_mode,
                                                                    plan)])


def blended_track(states: torch.Tensor, plan, length: int, fade_rows: int) -> torch.Tensor:
    """Comparison variants, not in the library: one (length, 5, 384) track whose row r comes from the segment r is
    furthest inside (fade_rows 0: a hard switch in the middle of each overlap, inside windows as the reference's
    edges are) or, over ``fade_rows`` around that middle, a linear cross-fade of the two segments' states."""
    offsets = np.concatenate([[0], np.cumsum(plan.ends - plan.starts)])
    track = states.new_zeros((length,) + tuple(states.shape[1:]))
    track[:int(plan.ends[0])] = states[:offsets[1]]
    for s in range(1, len(plan.starts)):
        start, end = int(plan.starts[s]), int(plan.ends[s])
        middle = (start + int(plan.ends[s - 1])) / 2
        r = torch.arange(start, end, dtype=torch.float64)
        w = ((r - middle) / fade_rows + 0.5).clamp(0, 1) if fade_rows else (r >= middle).double()
        w = w.to(states.dtype)[:, None, None]
        track[start:end] = (1 - w) * track[start:end] + w * states[offsets[s]:offsets[s + 1]]
    return track


def windows_of(track: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """gather_windows over one whole track."""
    from musetalk_core.audio.windows import gather_windows

    return gather_windows([(0, track)], track.shape[0], rows, track.dtype)


def straddling(rows: np.ndarray, length: int, seams) -> np.ndarray:
    """bool (T-1,): pairs (t, t+1) whose windows together hold rows on both sides of one of the ``seams`` rows."""
    valid = (rows >= 0) & (rows < length)
    lo = np.where(valid, rows, length).min(axis=1)
    hi = np.where(valid, rows, -1).max(axis=1)
    out = np.zeros(len(rows) - 1, dtype=bool)
    for seam in seams:
        out |= (lo[:-1] < seam) & (hi[1:] >= seam)
    return out


def near(mask: np.ndarray, frames: int) -> np.ndarray:
    """``mask`` grown by ``frames`` on each side."""
    out = mask.copy()
    for k in range(1, frames + 1):
        out[k:] |= mask[:-k]
        out[:-k] |= mask[k:]
    return out


def runs_and_seams(models, audio, feature_mode: str) -> tuple:
    """(runs: label -> (features (T, 50*384) float64, seconds or None, encoder segments), seams: name -> bool
    (T-1,) pairs)."""
    from musetalk_core.audio.overlap import HOP_ROWS, plan_segments
    from musetalk_core.audio.windows import encode_audio

    mono, rows, length = track_rows(models, audio, feature_mode)
    plan20, plan15 = plan_segments(rows, length, HOP_ROWS), plan_segments(rows, length, 750)
    runs = {}
    for label, segments in (("reference", math.ceil(length / EDGE_ROWS)), ("overlapping", len(plan20.starts))):
        start = time.perf_counter()  # the library's own path
        out = encode_audio(models, audio, FPS, feature_mode=feature_mode, audio_segments=label)
        assert torch.equal(out.settings["window_rows"], rows)
        runs[label if label == "reference" else "overlapping_20s"] = (out.features, time.perf_counter() - start,
                                                                       segments)
    start = time.perf_counter()
    states = segment_states(models, mono, feature_mode, plan15)
    runs["overlapping_15s"] = (windows_of(states, plan15.rows), time.perf_counter() - start, len(plan15.starts))
    states = segment_states(models, mono, feature_mode, plan20)
    for label, fade_s in (("per_row_20s", 0.0), ("crossfade_20s", FADE_S)):
        runs[label] = (windows_of(blended_track(states, plan20, length, int(fade_s * 50)), rows), None,
                       len(plan20.starts))
    runs = {k: (f.reshape(len(f), -1).double(), t, n) for k, (f, t, n) in runs.items()}
    r = rows.numpy()
    middles = [(int(plan20.starts[s]) + int(plan20.ends[s - 1])) // 2 for s in range(1, len(plan20.starts))]
    row_seams = straddling(r, length, middles)
    seams = {"edges_30s": straddling(r, length, range(EDGE_ROWS, length, EDGE_ROWS)),
             "switches_20s": np.diff(plan20.choice) != 0,
             "switches_15s": np.diff(plan15.choice) != 0,
             "row_seams_20s": row_seams,
             "fades_20s": near(row_seams, int(FADE_S / 2 * FPS))}
    return runs, seams


def measure_mode(feature_mode: str, seconds: float, seed: int) -> list:
    from .synthetic import make_audio

    models = load_encoder("v15" if feature_mode == "reference" else "v1")
    runs, seams = runs_and_seams(models, make_audio(seconds, seed=seed), feature_mode)
    clear = ~near(np.logical_or.reduce(list(seams.values())), int(CLEAR_S * FPS))
    reference = runs["reference"][0]
    rows = []
    for label, (features, taken, segments) in runs.items():
        d = (features[1:] - features[:-1]).norm(dim=1).numpy()
        median = float(np.median(d[clear]))
        change = ((features - reference).norm(dim=1) / reference.norm(dim=1)).numpy()
        changed = change > 0
        row = {"feature_mode": feature_mode, "run": label, "encoder_segments": segments,
               "encode_s": round(taken, 2) if taken is not None else None,
               "median_d_elsewhere": round(median, 3),
               "max_d_over_median": {name: round(float(d[where].max()) / median, 2) for name, where in seams.items()},
               "seam_pairs": {name: int(where.sum()) for name, where in seams.items()},
               "frames_changed_vs_reference": round(float(changed.mean()), 3),
               "median_relative_change_where_changed": round(float(np.median(change[changed])), 4)
               if changed.any() else 0.0}
        rows.append(row)
        print(json.dumps(row))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=95.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="+", default=["reference", "v1.0-original"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [row for mode in args.modes for row in measure_mode(mode, args.seconds, args.seed)]
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python -m benchmarks.seamless_audio " + " ".join(argv if argv is not None else sys.argv[1:]),
            "encoder": "whisper-tiny architecture, seeded random weights (seed 7), sinusoidal positions, fp32 CPU",
            "audio": f"benchmarks.synthetic.make_audio({args.seconds:g}, seed={args.seed}) at {FPS:g} fps",
            "torch_threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

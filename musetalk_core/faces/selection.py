"""Which face speaks an audio: a speaker selection, written as text in the graph, the command line and job lines.

    default          the face face_selection picks in each frame (highest S3FD score: the reference); no tracking
    track N          face track N (faces/tracks.py: numbered left to right where each first appears, from 0)
    point X Y [F]    the track whose face box holds pixel (X, Y) in source frame F (default 0)
    auto             the track whose mouth movement in the source best matches the audio's loudness
                     (faces/speaker_match.py) over the first AUTO_FRAMES output frames

Every selection but ``default`` tracks the faces first and makes the speaker's face material from its track only,
so the other faces stay as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import InputError

KINDS = ("default", "track", "point", "auto")
AUTO_FRAMES = 250  # output frames auto compares (10 s at 25 fps): enough syllables, bounded landmark work
SYNTAX = "'default', 'auto', 'track N' (N from 0, left to right) or 'point X Y [FRAME]' (a pixel on the face)"


@dataclass(frozen=True)
class SpeakerSelection:
    kind: str = "default"
    track: int = 0
    point: Tuple[float, float, int] = (0.0, 0.0, 0)

    @property
    def tracked(self) -> bool:
        return self.kind != "default"

    def text(self) -> str:
        if self.kind == "track":
            return f"track {self.track}"
        if self.kind == "point":
            x, y, f = self.point
            return f"point {x:g} {y:g} {f}"
        return self.kind


def parse_selection(text, label: str = "speaker_selection") -> SpeakerSelection:
    """A SpeakerSelection from its text ('track 1', 'track:1', 'point 320 180 12', 'point:320,180', 'auto', ...)."""
    if isinstance(text, SpeakerSelection):
        return text
    words = [w for w in re.split(r"[\s:,=]+", str(text).strip().lower()) if w]
    kind = words[0] if words else "default"
    try:
        if kind in ("default", "auto") and len(words) == 1:
            return SpeakerSelection(kind)
        if kind == "track" and len(words) == 2:
            track = int(words[1])
            if track >= 0:
                return SpeakerSelection("track", track=track)
        if kind == "point" and len(words) in (3, 4):
            x, y = float(words[1]), float(words[2])
            frame = int(words[3]) if len(words) == 4 else 0
            if frame >= 0 and np.isfinite([x, y]).all():
                return SpeakerSelection("point", point=(x, y, frame))
    except ValueError:
        pass
    raise InputError(f"'{label}' = {text!r} is not a speaker selection: write {SYNTAX}.")


def track_for(selection: SpeakerSelection, tracks, label: str = "speaker_selection") -> int:
    """The track a 'track' or 'point' selection names, or InputError saying what the video holds."""
    if tracks.num_tracks == 0:
        raise InputError(f"'{label}' = {selection.text()!r}: no face was found in the frames the output uses.")
    if selection.kind == "track":
        if selection.track >= tracks.num_tracks:
            raise InputError(f"'{label}' = {selection.text()!r}: the video has {tracks.num_tracks} face track(s), "
                             f"numbered 0 to {tracks.num_tracks - 1} from left to right:\n{tracks.summary()}")
        return selection.track
    x, y, frame = selection.point
    if frame >= tracks.num_frames:
        raise InputError(f"'{label}' = {selection.text()!r}: frame {frame} is past the video's last frame "
                         f"({tracks.num_frames - 1}).")
    found = tracks.track_at(x, y, frame)
    if found is None:
        raise InputError(f"'{label}' = {selection.text()!r}: no tracked face box holds that point in frame "
                         f"{frame} (frames the output does not use are not examined). The tracks:\n"
                         f"{tracks.summary()}")
    return found


def auto_track(tracks, landmarks_of, audio, fps: float, mapping: torch.Tensor) -> Tuple[int, np.ndarray]:
    """(track, scores): the track whose mouth openness over the first AUTO_FRAMES output frames best follows the
    audio's loudness. ``landmarks_of(k, frames)`` -> (len(frames), 68, 2) landmarks of track k in those source
    frames (-1 where absent)."""
    from .speaker_match import audio_envelope, match_scores, mouth_openness, pick_speaker

    if tracks.num_tracks == 0:
        raise InputError("speaker selection 'auto': no face was found in the frames the output uses.")
    t = min(int(mapping.numel()), AUTO_FRAMES)
    source = mapping[:t]
    frames = sorted(set(source.tolist()))
    position = {j: i for i, j in enumerate(frames)}
    rows = torch.tensor([position[int(j)] for j in source.tolist()], dtype=torch.long)
    openness = np.full((tracks.num_tracks, t), np.nan)
    for k in range(tracks.num_tracks):
        present = [j for j in frames if bool(tracks.present(k)[j])]
        if present:
            marks = torch.full((len(frames), 68, 2), -1, dtype=torch.int64)
            marks[[position[j] for j in present]] = torch.as_tensor(landmarks_of(k, present), dtype=torch.int64)
            openness[k] = mouth_openness(marks)[rows.numpy()]
    envelope = audio_envelope(audio["waveform"], int(audio["sample_rate"]), fps, t)
    scores = match_scores(openness, envelope)
    best = pick_speaker(scores)
    if best is None:  # too few frames to compare: the face seen most
        best = int(np.argmax([int(tracks.present(k)[frames].sum()) for k in range(tracks.num_tracks)]))
    return best, scores


def describe(selection: SpeakerSelection, track: Optional[int], scores: Optional[np.ndarray] = None) -> str:
    text = f"speaker '{selection.text()}' -> face track {track}"
    if scores is not None and len(scores):
        text += " (mouth/audio match per track: " + ", ".join(
            f"#{k} {s:.2f}" if np.isfinite(s) else f"#{k} -" for k, s in enumerate(scores)) + ")"
    return text

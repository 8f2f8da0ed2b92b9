"""Several speakers, each with its own audio, and which face speaks an audio (the core's part of dialogue dubbing).

A speaker is an AUDIO and a selection of the face that speaks it (faces/selection.py). With one speaker and the
``default`` selection nothing here runs: the faces stage picks a face per frame as the reference does. Otherwise
the faces are tracked over the frames the output uses (faces/tracks.py), each speaker is given one track, and the
core (pipeline.py) makes each speaker's faces from its track only, its windows from its own audio, and pastes the
speakers' faces one after the other into the same frames; faces of no speaker stay as they are.

Given tracks: ``default`` is track i for the i-th of several speakers (left to right), ``track N`` and ``point`` name
one, ``auto`` takes the best match of mouth movement and loudness among the tracks no other speaker took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence

import numpy as np
import torch

from .errors import InputError
from .faces.selection import SpeakerSelection, auto_track, describe, parse_selection, track_for

MAX_SPEAKERS = 8


@dataclass(frozen=True)
class Speaker:
    audio: Mapping[str, Any]
    selection: SpeakerSelection = field(default_factory=SpeakerSelection)
    name: str = ""  # how the user knows it (an audio file's name, "speaker 2"), for messages


def speaker_list(audio: Optional[Mapping[str, Any]], options, speakers: Optional[Sequence[Speaker]] = None
                 ) -> List[Speaker]:
    """The run's speakers: ``speakers`` when given, else one: ``audio`` with options.speaker_selection."""
    if speakers:
        out = [s if isinstance(s, Speaker) else Speaker(*s) for s in speakers]
        if len(out) > MAX_SPEAKERS:
            raise InputError(f"{len(out)} speakers given; at most {MAX_SPEAKERS} are supported.")
        return [Speaker(s.audio, parse_selection(s.selection, s.name or f"speaker {i + 1}"), s.name or
                        f"speaker {i + 1}") for i, s in enumerate(out)]
    if audio is None:
        raise InputError("No audio given: give an audio track (or one per speaker).")
    return [Speaker(audio, parse_selection(getattr(options, "speaker_selection", "default")), "audio")]


def needs_tracks(speakers: Sequence[Speaker]) -> bool:
    return len(speakers) > 1 or speakers[0].selection.tracked


def assign_tracks(speakers: Sequence[Speaker], tracks, fps: float, mapping: torch.Tensor, landmarks_of
                  ) -> List[int]:
    """One distinct track per speaker (see the module docstring); logs how each was chosen."""
    import logging

    log = logging.getLogger(__name__)
    chosen: List[Optional[int]] = [None] * len(speakers)
    for i, s in enumerate(speakers):  # named tracks first, so auto chooses among the rest
        if s.selection.kind in ("track", "point"):
            chosen[i] = track_for(s.selection, tracks, s.name)
        elif s.selection.kind == "default" and len(speakers) > 1:
            chosen[i] = track_for(SpeakerSelection("track", track=i), tracks, s.name)
    for i, s in enumerate(speakers):
        if s.selection.kind == "auto" or chosen[i] is None:
            chosen[i] = _auto(s, tracks, fps, mapping, landmarks_of, taken={c for c in chosen if c is not None})
    for i, s in enumerate(speakers):
        if s.selection.kind != "auto":
            log.info("%s: %s", s.name, describe(s.selection, chosen[i]))
    seen = {}
    for i, k in enumerate(chosen):
        if k in seen:
            raise InputError(f"{speakers[seen[k]].name} and {speakers[i].name} both chose face track {k}; give each "
                             f"speaker its own face. The tracks:\n{tracks.summary()}")
        seen[k] = i
    return [int(k) for k in chosen]


def _auto(speaker: Speaker, tracks, fps, mapping, landmarks_of, taken) -> int:
    import logging

    free = [k for k in range(tracks.num_tracks) if k not in taken]
    if not free:
        raise InputError(f"{speaker.name} ('auto'): every face track is already some other speaker's. The "
                         f"tracks:\n{tracks.summary()}")
    best, scores = auto_track(tracks, landmarks_of, speaker.audio, fps, mapping)
    if best in taken:
        best = max(free, key=lambda k: scores[k] if np.isfinite(scores[k]) else -np.inf)
    logging.getLogger(__name__).info("%s: %s", speaker.name, describe(speaker.selection, best, scores))
    return int(best)


def track_landmarks(models, source, tracks, options, chunk: int = 32):
    """``landmarks_of(k, frames)`` for auto: DWPose's 68 points on track k's box in those source frames."""
    from .faces.locate import locate_faces

    def landmarks_of(k: int, frames: Sequence[int]) -> torch.Tensor:
        out = []
        for a in range(0, len(frames), chunk):
            part = list(frames[a:a + chunk])
            loc = locate_faces(models, source.read(part), version=models.version, bbox_shift=0,
                               extra_margin=options.extra_margin, landmark_region=options.landmark_region,
                               batch_size=options.face_batch_size, given_boxes=[tracks.box(k, j) for j in part])
            out.append(loc.landmarks)
        return torch.cat(out)

    return landmarks_of

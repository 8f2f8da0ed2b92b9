"""How a long job is cut into segments of output frames, and where each segment's file goes.

A segment is output frames [a, b). Segments start on multiples of the job's chunk_size, so each one blends the
very chunks of the unsplit run (pipeline.render), and every segment file is an independent H.264 stream that
starts with a keyframe; io.video_write.join_segments copies their packets into the output and encodes the job's
audio once. A finished segment file is kept in the job's work folder until the job is joined: a rerun skips it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple


def plan_segments(num_frames: int, fps: float, chunk_size: int,
                  split_seconds: Optional[float]) -> List[Tuple[int, int]]:
    """[(a, b), ...] covering 0..num_frames-1: one segment without splitting, else about ``split_seconds`` each,
    rounded to whole chunks (at least one)."""
    t = int(num_frames)
    if split_seconds is None or t == 0:
        return [(0, t)]
    chunk = int(chunk_size)
    per = max(1, int(round(float(split_seconds) * float(fps) / chunk))) * chunk
    return [(a, min(t, a + per)) for a in range(0, t, per)]


def segment_path(folder: Path, segment: Tuple[int, int]) -> Path:
    """A segment's video-only work file. Always MP4, whatever the job's output container: the join copies the
    segments' packets, and MP4 keeps every packet's decode timestamp, which Matroska does not store (copying .mkv
    segments into an .mkv failed with 'Invalid argument')."""
    a, b = segment
    return Path(folder) / f"segment-{a:09d}-{b:09d}.mp4"

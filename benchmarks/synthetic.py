"""A synthetic talking-head clip: frames with a drawn face (and its exact iBUG-68 landmarks) plus speech-like audio.

Random-weight networks find no face in anything, so the benchmark also needs the ground truth: ``landmarks68`` are
the 68 points the face was drawn from, in the reference's int32 convention. Everything is seeded and deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SIZES = {"tiny": (128, 160), "360p": (360, 640), "720p": (720, 1280), "1080p": (1080, 1920)}


def parse_size(size) -> tuple:
    """'720p' / '1080p' / 'tiny' / 'HxW' / (H, W) -> (H, W)."""
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    if size in SIZES:
        return SIZES[size]
    h, w = str(size).lower().split("x")
    return int(h), int(w)


@dataclass
class Clip:
    frames: torch.Tensor  # uint8 (N, H, W, 3) RGB
    landmarks: np.ndarray  # int32 (N, 68, 2), iBUG-68 order
    audio: dict  # ComfyUI AUDIO: waveform (1, 1, S) float32, sample_rate
    fps: float

    @property
    def images(self) -> torch.Tensor:
        """ComfyUI IMAGE (float32 0..1)."""
        return self.frames.to(torch.float32) / 255.0


def _ellipse_points(cx, cy, a, b, start, stop, n):
    ang = np.linspace(start, stop, n)
    return np.stack([cx + a * np.cos(ang), cy + b * np.sin(ang)], axis=1)


def face_landmarks(cx: float, cy: float, a: float, b: float, mouth_open: float) -> np.ndarray:
    """68 points of a frontal face: centre (cx, cy) at eye/nose level, half-width a, half-height b (chin at cy+b)."""
    pts = np.zeros((68, 2), np.float64)
    pts[0:17] = _ellipse_points(cx, cy - 0.1 * b, a, 1.1 * b, math.pi, 0.0, 17)  # jaw, left ear -> chin -> right ear
    for side, base in ((-1, 17), (1, 22)):  # brows
        xs = cx + side * np.linspace(0.75 * a, 0.15 * a, 5)
        if side == 1:
            xs = xs[::-1]
        pts[base:base + 5] = np.stack([xs, cy - 0.45 * b - 0.06 * b * np.sin(np.linspace(0, math.pi, 5))], 1)
    pts[27:31] = np.stack([np.full(4, cx), np.linspace(cy - 0.32 * b, cy + 0.08 * b, 4)], 1)  # nose bridge
    pts[31:36] = np.stack([cx + np.linspace(-0.18 * a, 0.18 * a, 5), np.full(5, cy + 0.18 * b)], 1)
    for side, base in ((-1, 36), (1, 42)):  # eyes
        ex, ey = cx + side * 0.42 * a, cy - 0.25 * b
        ring = _ellipse_points(ex, ey, 0.2 * a, 0.07 * b, math.pi, -math.pi, 7)[:6]
        pts[base:base + 6] = ring
    mx, my, mw = cx, cy + 0.5 * b, 0.42 * a
    mh = 0.04 * b + 0.16 * b * mouth_open
    pts[48:60] = _ellipse_points(mx, my, mw, mh + 0.04 * b, math.pi, -math.pi, 13)[:12]
    pts[60:68] = _ellipse_points(mx, my, 0.8 * mw, mh, math.pi, -math.pi, 9)[:8]
    return pts


def make_frames(n: int, size="720p", seed: int = 0):
    """uint8 RGB frames (N, H, W, 3) of a drawn head that sways and talks, and its int32 landmarks (N, 68, 2)."""
    import cv2

    h, w = parse_size(size)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = np.stack([60 + 80 * yy / h, 90 + 60 * xx / w, 120 + 40 * (yy + xx) / (h + w)], -1)
    background += rng.normal(0, 6, background.shape)  # texture, so PNG/JPEG and detectors see a real-ish image
    background = np.clip(background, 0, 255).astype(np.uint8)
    frames = np.empty((n, h, w, 3), np.uint8)
    marks = np.empty((n, 68, 2), np.int32)
    b, a = 0.22 * h, 0.16 * h
    for i in range(n):
        img = background.copy()
        cx = w / 2 + 0.02 * w * math.sin(0.3 * i)
        cy = 0.45 * h + 0.01 * h * math.cos(0.2 * i)
        mouth = 0.5 + 0.5 * math.sin(1.3 * i)
        pts = face_landmarks(cx, cy, a, b, mouth)
        c = lambda x, y: (int(round(x)), int(round(y)))  # noqa: E731
        cv2.rectangle(img, c(cx - 0.9 * a, cy + 0.8 * b), c(cx + 0.9 * a, h), (200, 160, 130), -1)  # neck/shoulders
        cv2.ellipse(img, c(cx, cy - 0.25 * b), c(1.15 * a, 1.05 * b), 0, 0, 360, (50, 35, 25), -1)  # hair
        cv2.ellipse(img, c(cx, cy), c(a, 1.1 * b), 0, 0, 360, (224, 172, 140), -1)  # skin
        for part, colour in ((slice(17, 22), (70, 50, 40)), (slice(22, 27), (70, 50, 40))):
            cv2.polylines(img, [pts[part].round().astype(np.int32)], False, colour, max(1, h // 180))
        for part in (slice(36, 42), slice(42, 48)):
            cv2.fillPoly(img, [pts[part].round().astype(np.int32)], (250, 250, 250))
            centre = pts[part].mean(0)
            cv2.circle(img, c(*centre), max(1, int(0.05 * b)), (40, 30, 20), -1)
        cv2.polylines(img, [pts[27:36].round().astype(np.int32)], False, (180, 120, 100), max(1, h // 360))
        cv2.fillPoly(img, [pts[48:60].round().astype(np.int32)], (170, 60, 70))
        cv2.fillPoly(img, [pts[60:68].round().astype(np.int32)], (60, 20, 25))
        frames[i] = img
        marks[i] = pts.astype(np.int32)
    return torch.from_numpy(frames), marks


def make_audio(seconds: float, sample_rate: int = 16000, seed: int = 0) -> dict:
    """Speech-like mono audio: a gliding harmonic voice with syllable envelopes and breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    f0 = 120 + 25 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * math.pi * 4.0 * t), 0, None) ** 0.5
    wave = 0.25 * voice * envelope + 0.01 * rng.normal(size=t.shape)
    return {"waveform": torch.from_numpy(wave.astype(np.float32)).view(1, 1, -1), "sample_rate": sample_rate}


def make_clip(n: int, size="720p", fps: float = 25.0, seed: int = 0) -> Clip:
    frames, marks = make_frames(n, size, seed)
    return Clip(frames=frames, landmarks=marks, audio=make_audio(n / fps, seed=seed), fps=float(fps))


# ---- several heads, each with its own voice (speaker selection, face tracks) ----

EVENTS = ("cross", "cutaway", "leave")
# when each event happens, as fractions of the clip (disjoint, so any combination is drawn as described)
LEAVE_WINDOW = (0.05, 0.12, 0.23, 0.30)  # walks out of the right edge, stays out, walks back in
CROSS_WINDOW = (0.35, 0.60)  # heads 0 and 1 swap places, head 0 passing in front
CUTAWAY_WINDOW = (0.70, 0.80)  # another shot: no face at all
HIDDEN_FRACTION = 0.4  # a head this much covered by one in front of it is not detectable
MIN_INSIDE = 0.6  # ... nor one with less than this much of its box inside the frame


@dataclass
class MultiClip:
    """Frames with ``heads`` drawn heads; per head (index = depth order, 0 in front; at frame 0 left to right):

    - boxes float32 (K, N, 4) the skin ellipse's box, NaN where not visible;
    - landmarks int32 (K, N, 68, 2) as drawn, -1 where not visible;
    - visible bool (K, N): in the shot, at least MIN_INSIDE inside the frame, less than HIDDEN_FRACTION covered;
    - mouth float (K, N) how open its mouth is drawn (0..1): its own voice's envelope over the frame;
    - audios: one ComfyUI AUDIO per head (independent voices, so their envelopes differ).
    ``windows``: frame ranges of the events drawn ({"cross": (start, stop), ...}).
    """

    frames: torch.Tensor
    boxes: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    mouth: np.ndarray
    audios: list
    fps: float
    windows: dict

    @property
    def images(self) -> torch.Tensor:
        return self.frames.to(torch.float32) / 255.0

    @property
    def num_heads(self) -> int:
        return int(self.boxes.shape[0])

    def frame_index(self, frame) -> int:
        """Which frame of the clip this uint8 (H, W, 3) image is (by content); KeyError if none."""
        import hashlib

        if not hasattr(self, "_index"):
            keys = (hashlib.blake2b(f.tobytes(), digest_size=16).digest() for f in self.frames.numpy())
            self._index = {k: i for i, k in enumerate(keys)}
        frame = np.ascontiguousarray(np.asarray(frame, dtype=np.uint8))
        key = hashlib.blake2b(frame.tobytes(), digest_size=16).digest()
        if key not in self._index:
            raise KeyError("this frame is not one of the clip's frames")
        return self._index[key]


def speech_audio(seconds: float, sample_rate: int = 16000, seed: int = 0):
    """Speech-like mono audio whose rhythm depends on the seed: syllables of random length and loudness, pauses
    between phrases, a harmonic voice with its own pitch. Returns (AUDIO dict, per-sample envelope 0..1)."""
    rng = np.random.default_rng(seed)
    total = int(round(seconds * sample_rate))
    env = np.zeros(total)
    pos = int(rng.uniform(0.0, 0.3) * sample_rate)
    while pos < total:
        if rng.random() < 0.2:  # a pause between phrases
            pos += int(rng.uniform(0.2, 0.7) * sample_rate)
            continue
        length = int(rng.uniform(0.09, 0.3) * sample_rate)
        shape = np.sin(np.linspace(0, math.pi, length)) ** 0.7 * rng.uniform(0.35, 1.0)
        stop = min(total, pos + length)
        env[pos:stop] = shape[:stop - pos]
        pos = stop + int(rng.uniform(0.01, 0.08) * sample_rate)
    t = np.arange(total) / sample_rate
    f0 = rng.uniform(95, 220) * (1 + 0.12 * np.sin(2 * math.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * math.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 10))
    wave = 0.25 * voice * env + 0.005 * rng.normal(size=total)
    return {"waveform": torch.from_numpy(wave.astype(np.float32)).view(1, 1, -1), "sample_rate": sample_rate}, env


def _ease(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(math.pi * t)


def _head_paths(n: int, heads: int, h: int, w: int, events, rng):
    """Per head and frame: centre x, centre y; and the head sizes (a, b)."""
    i = np.arange(n, dtype=np.float64)
    a = 0.11 * h * rng.uniform(0.92, 1.08, heads)
    b = 1.375 * a
    base = w * (np.arange(heads) + 1) / (heads + 1)
    phase = rng.uniform(0, 2 * math.pi, heads)
    cx = base[:, None] + 0.01 * w * np.sin(0.2 * i[None] + phase[:, None])
    cy = 0.47 * h + 0.01 * h * np.cos(0.15 * i[None] + phase[:, None]) + rng.uniform(-0.02, 0.02, heads)[:, None] * h
    if "leave" in events:
        t0, t1, t2, t3 = (f * n for f in LEAVE_WINDOW)
        j = heads - 1
        away = (w + 1.4 * a[j]) - base[j]
        cx[j] += away * (_ease((i - t0) / (t1 - t0)) - _ease((i - t2) / (t3 - t2)))
    if "cross" in events:
        if heads < 2:
            raise ValueError("'cross' needs at least 2 heads")
        t0, t1 = (f * n for f in CROSS_WINDOW)
        step = (base[1] - base[0]) * _ease((i - t0) / (t1 - t0))
        cx[0] += step
        cx[1] -= step
    return cx, cy, a, b


def _covered(box, front_boxes) -> float:
    """The largest fraction of ``box`` that one of ``front_boxes`` covers."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    most = 0.0
    for f in front_boxes:
        iw = min(box[2], f[2]) - max(box[0], f[0])
        ih = min(box[3], f[3]) - max(box[1], f[1])
        if iw > 0 and ih > 0:
            most = max(most, iw * ih / area)
    return most


def _draw_head(img, pts, cx, cy, a, b, h):
    import cv2

    c = lambda x, y: (int(round(x)), int(round(y)))  # noqa: E731
    cv2.rectangle(img, c(cx - 0.9 * a, cy + 0.8 * b), c(cx + 0.9 * a, h), (200, 160, 130), -1)
    cv2.ellipse(img, c(cx, cy - 0.25 * b), c(1.15 * a, 1.05 * b), 0, 0, 360, (50, 35, 25), -1)
    cv2.ellipse(img, c(cx, cy), c(a, 1.1 * b), 0, 0, 360, (224, 172, 140), -1)
    for part in (slice(17, 22), slice(22, 27)):
        cv2.polylines(img, [pts[part].round().astype(np.int32)], False, (70, 50, 40), max(1, h // 180))
    for part in (slice(36, 42), slice(42, 48)):
        cv2.fillPoly(img, [pts[part].round().astype(np.int32)], (250, 250, 250))
    cv2.fillPoly(img, [pts[48:60].round().astype(np.int32)], (170, 60, 70))
    cv2.fillPoly(img, [pts[60:68].round().astype(np.int32)], (60, 20, 25))


def make_multi_clip(n: int, heads: int = 2, size="360p", fps: float = 25.0, seed: int = 0,
                    events=()) -> MultiClip:
    """``heads`` talking heads side by side, each mouth moving with its own voice (see MultiClip); ``events``
    any of EVENTS: "cross" (heads 0 and 1 swap places, 0 passing in front), "cutaway" (a stretch of another shot
    without faces), "leave" (the rightmost head walks out of the frame and back in). Seeded and deterministic.
    Events last a fixed fraction of the clip: below about 100 frames the leaving head moves most of a box width
    per frame (faster than people move; faces.tracks then loses it)."""
    unknown = set(events) - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown events {sorted(unknown)}; use {EVENTS}")
    h, w = parse_size(size)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = np.stack([60 + 80 * yy / h, 90 + 60 * xx / w, 120 + 40 * (yy + xx) / (h + w)], -1)
    background = np.clip(background + rng.normal(0, 6, background.shape), 0, 255).astype(np.uint8)
    other_shot = np.ascontiguousarray(background[::-1, ::-1] // 2 + 40)
    cx, cy, a, b = _head_paths(n, heads, h, w, events, rng)
    audios, mouth = [], np.zeros((heads, n))
    edges = np.round(np.arange(n + 1) / fps * 16000).astype(np.int64)
    for j in range(heads):
        audio, env = speech_audio(n / fps, 16000, seed=1000 * seed + 17 * j + 1)
        audios.append(audio)
        mouth[j] = [env[edges[i]:max(edges[i] + 1, edges[i + 1])].mean() for i in range(n)]
    cut = range(*(int(f * n) for f in CUTAWAY_WINDOW)) if "cutaway" in events else range(0)
    frames = np.empty((n, h, w, 3), np.uint8)
    boxes = np.full((heads, n, 4), np.nan, np.float32)
    marks = np.full((heads, n, 68, 2), -1, np.int32)
    visible = np.zeros((heads, n), bool)
    for i in range(n):
        if i in cut:
            frames[i] = other_shot
            continue
        img = background.copy()
        drawn = []
        for j in range(heads - 1, -1, -1):  # back to front: head 0 is drawn last (in front)
            pts = face_landmarks(cx[j, i], cy[j, i], a[j], b[j], mouth[j, i])
            _draw_head(img, pts, cx[j, i], cy[j, i], a[j], b[j], h)
            box = (cx[j, i] - a[j], cy[j, i] - 1.1 * b[j], cx[j, i] + a[j], cy[j, i] + 1.1 * b[j])
            drawn.append((j, box, pts))
        frames[i] = img
        for depth, (j, box, pts) in enumerate(drawn):
            inside = _covered(box, [(0, 0, w, h)])
            in_front = [d[1] for d in drawn[depth + 1:]]
            if inside >= MIN_INSIDE and _covered(box, in_front) < HIDDEN_FRACTION:
                visible[j, i] = True
                boxes[j, i] = box
                marks[j, i] = pts.astype(np.int32)
    windows = {}
    if "cross" in events:
        windows["cross"] = tuple(int(f * n) for f in CROSS_WINDOW)
    if "cutaway" in events:
        windows["cutaway"] = (cut.start, cut.stop)
    if "leave" in events:
        windows["leave"] = (int(LEAVE_WINDOW[0] * n), int(LEAVE_WINDOW[3] * n))
    return MultiClip(torch.from_numpy(frames), boxes, marks, visible, mouth, audios, float(fps), windows)

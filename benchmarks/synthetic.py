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

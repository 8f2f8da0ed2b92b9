"""Synthetic media for the CLI / video tests: written with PyAV, no system ffmpeg."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def face_frames(n: int, h: int = 96, w: int = 80, seed: int = 0) -> np.ndarray:
    """uint8 (n, h, w, 3): a moving gradient with a bright ellipse (a face-ish blob), different every frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        base = ((xx + yy + 3 * i) % 256).astype(np.uint8)
        img = np.stack([base, np.flipud(base), np.full_like(base, 90)], -1)
        cy, cx = h // 2 + (i % 3), w // 2
        blob = ((yy - cy) / (h * 0.3)) ** 2 + ((xx - cx) / (w * 0.25)) ** 2 < 1
        img[blob] = (220, 180, 150)
        img = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
        frames[i] = img
    return frames


def tone(seconds: float, sr: int = 16000, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    """float32 (channels, samples): a syllable-like modulated tone (not silent)."""
    t = np.arange(int(round(seconds * sr))) / sr
    wave = 0.4 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(wave[None].astype(np.float32), channels, 0)


def write_video(path: Path, frames: np.ndarray, fps=Fraction(25), audio: np.ndarray = None, sr: int = 16000,
                codec: str = "libx264", rotation: int = 0) -> Path:
    """``rotation``: a display matrix turning the stored frames ``rotation`` degrees counter-clockwise for display
    (PyAV's set_display_rotation; -90 is what a phone writes for portrait video, ffprobe's "rotation of -90")."""
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=Fraction(fps))
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "10"}
        if rotation:
            vs.set_display_rotation(rotation)
        if audio is not None:
            as_ = c.add_stream("aac", rate=sr, layout="mono" if audio.shape[0] == 1 else "stereo")
        for f in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(vs.encode())
        if audio is not None:
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp",
                                            layout="mono" if audio.shape[0] == 1 else "stereo")
            fr.sample_rate, fr.pts = sr, 0
            c.mux(as_.encode(fr))
            c.mux(as_.encode())
    return Path(path)


def write_wav(path: Path, samples: np.ndarray, sr: int = 16000) -> Path:
    import soundfile as sf

    sf.write(str(path), samples.T, sr, subtype="PCM_16")
    return Path(path)


def write_audio_only(path: Path, samples: np.ndarray, sr: int = 16000) -> Path:
    """An .m4a/.mp4 with only an AAC track (an 'audio-only file given as video')."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=sr, layout="mono")
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:1]), format="fltp", layout="mono")
        fr.sample_rate, fr.pts = sr, 0
        c.mux(s.encode(fr))
        c.mux(s.encode())
    return Path(path)


def marked_faceless(locate_faces):
    """``locate_faces`` with frames carrying the marker (a dark 8x8 top-left corner) reported as face-less,
    whatever chunk they arrive in (content-based)."""
    def locate(models, frames_u8, **kw):
        loc = locate_faces(models, frames_u8, **kw)
        marked = frames_u8[:, :8, :8].float().mean(dim=(1, 2, 3)) < 12
        loc.has_face[marked] = False
        loc.boxes[marked] = 0
        return loc

    return locate

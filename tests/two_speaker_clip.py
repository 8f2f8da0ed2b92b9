"""Input files for the two-speakers workflow (tools/workflows.py two_speakers), and the detector stand-ins it runs with.

With tiny random-weight networks S3FD finds arbitrary "faces", so 'track 0' / 'track 1' would name whatever it
happens to track. The workflow tests run on a synthetic two-head clip instead (benchmarks.synthetic.make_multi_clip)
with S3FD and DWPose replaced by its ground truth (benchmarks.standins.heads_detector / heads_landmarks); every
network after them is the tiny real one. The clip goes through an H.264 file and core LoadVideo as a user's would,
so its frames come back with coding noise: they are recognised here by the nearest clip frame. Frames of any other
video are left to the real networks, so the stand-ins can stay installed in a server that runs other workflows.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

FRAMES, SIZE, FPS, SEED = 10, "144x256", Fraction(25), 3
# speaker 1 talks longer than the video (cut), speaker 2 shorter (padded with silence): frame_mapping 'silence'
# still gives both the video's length
EXTRA_SECONDS_1, SECONDS_2 = 0.12, 0.2
MAX_MEAN_ERROR = 12.0  # mean absolute difference (0..255) of a decoded frame from its clip frame; H.264 crf 10: ~1


def make_clip():
    from benchmarks.synthetic import make_multi_clip

    return make_multi_clip(FRAMES, heads=2, size=SIZE, fps=float(FPS), seed=SEED)


def speaker_audios(clip) -> list:
    """(samples (channels, n) float32, sample rate) per speaker: head 0's voice plus more speech, head 1's cut."""
    from benchmarks.synthetic import speech_audio

    first = clip.audios[0]["waveform"][0]
    more, _ = speech_audio(EXTRA_SECONDS_1, 16000, seed=99)
    second = clip.audios[1]["waveform"][0]
    return [(torch.cat([first, more["waveform"][0]], dim=-1).numpy(), 16000),
            (second[:, :int(SECONDS_2 * 16000)].numpy(), 16000)]


def write_inputs(folder: Path, clip, video_name: str, audio_names) -> list:
    """The clip as an H.264 file and each speaker's audio as a WAV file in ``folder``; returns their seconds."""
    from media import write_video, write_wav

    write_video(folder / video_name, clip.frames.numpy(), FPS)
    seconds = []
    for name, (samples, rate) in zip(audio_names, speaker_audios(clip)):
        write_wav(folder / name, samples, rate)
        seconds.append(samples.shape[-1] / rate)
    return seconds


class DecodedClip:
    """``clip`` whose frame_index also recognises its frames after lossy coding (KeyError for any other frame)."""

    def __init__(self, clip):
        self.clip = clip
        self._frames = clip.frames.to(torch.int16)

    def __getattr__(self, name):
        return getattr(self.clip, name)

    def frame_index(self, frame) -> int:
        frame = torch.as_tensor(np.ascontiguousarray(np.asarray(frame, dtype=np.uint8)))
        if tuple(frame.shape) != tuple(self._frames.shape[1:]):
            raise KeyError("not a frame of the clip (other size)")
        error = (self._frames - frame.to(torch.int16)).abs().float().mean(dim=(1, 2, 3))
        i = int(error.argmin())
        if float(error[i]) > MAX_MEAN_ERROR:
            raise KeyError("not a frame of the clip")
        return i


def install(clip, set_attribute=setattr) -> None:
    """Replace S3FD's detect and DWPose's predict_keypoints by the clip's ground truth for the clip's frames
    (``set_attribute``: pytest's monkeypatch.setattr to undo it after a test; plain setattr in a server)."""
    from benchmarks.standins import heads_detector, heads_landmarks
    from musetalk_core.models import dwpose, s3fd

    decoded = DecodedClip(clip)
    real_detect, real_landmarks = s3fd.detect, dwpose.predict_keypoints
    heads_detect, heads_points = heads_detector(decoded), heads_landmarks(decoded)

    def detect(net, frames_u8, *, scale=1.0):
        try:
            return heads_detect(net, frames_u8, scale=scale)
        except KeyError:
            return real_detect(net, frames_u8, scale=scale)

    def predict_keypoints(net, frames_rgb, boxes=None, *args, **kwargs):
        try:
            return heads_points(net, frames_rgb, boxes)
        except KeyError:
            return real_landmarks(net, frames_rgb, boxes, *args, **kwargs)

    set_attribute(s3fd, "detect", detect)
    set_attribute(dwpose, "predict_keypoints", predict_keypoints)


def head_changed(clip, source: torch.Tensor, output: torch.Tensor, min_level: float = 2.0) -> np.ndarray:
    """(heads, frames) bool: the mean absolute change (0..255) inside the head's drawn box is above ``min_level``
    (IMAGE batches, values 0..1; frames where the head is not visible: False)."""
    diff = (output.float() - source.float()).abs().mean(-1) * 255
    changed = np.zeros(clip.visible.shape, dtype=bool)
    for j in range(clip.boxes.shape[0]):
        for i in range(clip.boxes.shape[1]):
            if clip.visible[j, i]:
                x1, y1, x2, y2 = (int(round(float(v))) for v in clip.boxes[j, i])
                changed[j, i] = float(diff[i, max(y1, 0):y2, max(x1, 0):x2].mean()) > min_level
    return changed

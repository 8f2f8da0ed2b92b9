"""Writing video files with PyAV: H.264 (yuv420p) + AAC, frame chunk by frame chunk, atomically.

``VideoWriter`` encodes on a thread of its own while the caller makes the next frames and muxes the audio once at
the end; ``write_video`` is all frames at once; ``join_segments`` copies the packets of segment files (batch jobs)
into one file and encodes the audio once. The output goes through output_file.atomic_output.
"""

from __future__ import annotations

from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Union

import numpy as np
import torch

from .audio_file import audio_codec, audio_layout, mux_audio
from .background import BackgroundWorker
from .frames import exact_rate
from ..errors import InputError, OutputError
from .media_open import PathLike, open_media
from .output_file import atomic_output, check_output_path

# libx264's speed / size trade-off at a given crf: each step faster encodes quicker into a larger file; medium is
# ffmpeg's default (and this pack's)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
ENCODE_GROUP_PIXELS = 8 * 1280 * 720  # frames per hand-over to the encoder: 8 at 720p, 1 at 4K (memory O(group))


def _muxer_options(path: PathLike, audio_rate: Optional[int]) -> dict:
    """MP4 / MOV / M4V with audio: the movie timescale is the audio's sample rate, so the edit list that trims the
    AAC track says its length to the sample (at ffmpeg's default of 1000 per second it said 14685 of 14715 samples
    for 10 frames at 29.97 fps and 44.1 kHz: 0.7 ms short)."""
    if audio_rate and Path(path).suffix.lower() in (".mp4", ".mov", ".m4v"):
        return {"movie_timescale": str(int(audio_rate))}
    return {}


def _frame_uint8(frame: torch.Tensor) -> np.ndarray:
    """One (H, W, C) frame -> uint8 RGB numpy (converted frame by frame: no second copy of a long video)."""
    if frame.dtype != torch.uint8:
        frame = (frame.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return frame[..., :3].cpu().numpy()


def _yuv420p(arr: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")


class VideoWriter:
    """H.264 (yuv420p) + AAC (FLAC in .mkv: ``audio_codec``) written frame chunk by frame chunk; atomic: a
    temporary file in the output folder, renamed to ``path`` only by ``finish()``. ``abort()`` (or leaving a ``with`` block by an exception, Ctrl-C
    included) removes it, so a failed run never leaves a partial file at the output path.

    Frames are uint8 (k, H, W, 3) RGB or IMAGE float 0..1; odd sizes are padded by one replicated row/column
    (yuv420p needs even sizes). The audio (an AUDIO mapping or None) is given to ``finish`` and trimmed there to
    the duration of the frames written: round(frames / fps * rate) samples. Frames are encoded on a thread of their
    own (background.BackgroundWorker) while the caller produces the next ones; at most two groups of frames
    (ENCODE_GROUP_PIXELS each) wait for it.
    """

    def __init__(self, path: PathLike, fps: Union[Fraction, float], width: int, height: int, crf: int = 18,
                 audio_rate: Optional[int] = None, audio_channels: int = 0, preset: str = "medium"):
        import av

        if preset not in X264_PRESETS:
            raise InputError(f"preset: '{preset}' is not an H.264 preset; choose one of {', '.join(X264_PRESETS)}.")
        self.path = check_output_path(path)
        self.rate = exact_rate(fps)
        if self.rate <= 0:
            raise InputError(f"fps must be positive, got {fps}.")
        self.width, self.height = int(width), int(height)
        self.pad_h, self.pad_w = self.height % 2, self.width % 2
        self.frames = 0
        self.container = None
        self._encoder: Optional[BackgroundWorker] = None
        self._stack: Optional[ExitStack] = ExitStack()
        try:
            # atomic_output: temp file next to the output, renamed when the stack closes cleanly, removed on
            # failure; OS errors (disk full, refused) become an OutputError naming the output
            self.tmp = self._stack.enter_context(atomic_output(self.path))
            self.container = av.open(str(self.tmp), mode="w", options=_muxer_options(self.path, audio_rate))
            self.vstream = self.container.add_stream("libx264", rate=self.rate)
            self.vstream.width, self.vstream.height = self.width + self.pad_w, self.height + self.pad_h
            self.vstream.pix_fmt = "yuv420p"
            self.vstream.options = {"crf": str(int(crf)), "preset": preset}
            self.vstream.thread_type = "AUTO"  # frame threads: about 1.3x the default slice threads
            self.astream = None
            if audio_rate and audio_channels:
                layout = "mono" if audio_channels == 1 else "stereo"
                self.astream = self.container.add_stream(audio_codec(self.path), rate=int(audio_rate),
                                                         layout=layout)
            # the encode runs on its own thread (libx264 and swscale release the GIL), two chunks behind at most
            self._encoder = BackgroundWorker(self._encode, depth=2, name="musetalk-encode")
        except BaseException as exc:
            self._fail(exc)
            raise

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, frames: torch.Tensor, advance: Optional[Callable[[int], None]] = None) -> None:
        """Queue frames for the encoder thread; ``advance(1)`` per frame handed over. Raises what the encoder
        raised so far (the file is then removed)."""
        if self._encoder is None:
            raise OutputError(f"'{self.path}': the video writer has already finished or failed; start a new one.")
        if frames.ndim == 3:
            frames = frames.unsqueeze(0)
        group = max(1, ENCODE_GROUP_PIXELS // (self.width * self.height))
        try:
            for start in range(0, frames.shape[0], group):
                arrs = [self._padded(f) for f in frames[start:start + group]]
                self._encoder.put(arrs)
                self.frames += len(arrs)
                if advance is not None:
                    for _ in arrs:
                        advance(1)
        except BaseException as exc:
            self._fail(exc)
            raise

    def _padded(self, frame: torch.Tensor) -> np.ndarray:
        arr = _frame_uint8(frame)
        if self.pad_h or self.pad_w:
            arr = np.pad(arr, ((0, self.pad_h), (0, self.pad_w), (0, 0)), mode="edge")
        return np.ascontiguousarray(arr)

    def _encode(self, arrs: List[np.ndarray]) -> None:  # on the encoder thread
        from ..cpu_pool import map_frames

        # RGB -> yuv420p side by side on the CPU pool (the same swscale call encode() would make on one thread:
        # identical bytes), then libx264 in order
        for frame in map_frames(_yuv420p, arrs):
            self.container.mux(self.vstream.encode(frame))

    def finish(self, audio: Optional[Mapping[str, Any]] = None) -> Path:
        try:
            if self.frames == 0:
                raise InputError("There are no frames to write.")
            self._encoder.close()  # every queued frame encoded; raises the encoder's error
            self._encoder = None  # only now: a Ctrl-C inside close() leaves it for _fail to cancel
            self.container.mux(self.vstream.encode())
            if self.astream is not None:
                mux_audio(self.container, self.astream, audio, self.frames, self.rate)
            self.container.close()
            self.container = None
            stack, self._stack = self._stack, None
            stack.close()  # renames the temporary file to the output
        except BaseException as exc:
            self._fail(exc)
            raise
        return self.path

    def _fail(self, exc: BaseException) -> None:
        """Close the container, then let atomic_output remove the temporary file (and turn an OS error into an
        OutputError naming the output, which then propagates instead of ``exc``)."""
        if self._encoder is not None:
            self._encoder.cancel()  # waits out the frame in hand (even through Ctrl-C); then nothing else
            self._encoder = None    # touches the container
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - closing a half-written file may fail; it is deleted anyway
                pass
            self.container = None
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.__exit__(type(exc), exc, exc.__traceback__)

    def abort(self) -> None:
        """Remove the temporary file (no-op after finish)."""
        self._fail(_Aborted())


class _Aborted(Exception):
    """Passed to atomic_output to make it clean up without reporting anything."""


def write_video(path: PathLike, frames: torch.Tensor, fps: Union[Fraction, float], audio: Optional[Mapping[str, Any]] = None,
                crf: int = 18, advance: Optional[Callable[[int], None]] = None) -> Path:
    """All frames at once through ``VideoWriter`` (H.264 + AAC in one pass, atomic).

    ``frames``: uint8 (T, H, W, 3) RGB or IMAGE float 0..1. ``audio``: AUDIO mapping or None; it is trimmed to the
    video's duration.
    """
    check_output_path(path)
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    t, h, w, _ = frames.shape
    if t == 0:
        raise InputError("There are no frames to write.")
    rate, channels = audio_layout(audio)
    with VideoWriter(path, fps, w, h, crf, rate, channels) as writer:
        writer.write(frames, advance)
        return writer.finish(audio)


def join_segments(path: PathLike, segments, fps: Union[Fraction, float], audio: Optional[Mapping[str, Any]]) -> int:
    """One H.264 + AAC file at ``path`` (atomically) from video-only segment files written by ``VideoWriter`` with
    the same settings, in order. Returns the number of frames.

    The segments' packets are copied, not re-encoded (each segment starts with a keyframe), their timestamps shifted
    by the frames before them; the audio is encoded once for the whole length and cut to exactly frames / fps, so
    there is no AAC priming gap or click at a join (which concatenating per-segment AAC would give)."""
    import av

    path = check_output_path(path)
    segments = [Path(p) for p in segments]
    if not segments:
        raise InputError("There are no segments to join.")
    rate = exact_rate(fps)
    frames = 0
    rate_hz, channels = audio_layout(audio)
    with atomic_output(path) as tmp:
        out = av.open(str(tmp), mode="w", options=_muxer_options(path, rate_hz))
        try:
            with open_media(segments[0], "Segment") as first:  # both streams exist before the first packet is muxed
                vout = out.add_stream_from_template(first.streams.video[0])
                header = bytes(first.streams.video[0].codec_context.extradata or b"")
            astream = None
            if rate_hz and channels:
                astream = out.add_stream(audio_codec(path), rate=int(rate_hz),
                                         layout="mono" if channels == 1 else "stereo")
            for segment in segments:
                with open_media(segment, "Segment") as inp:
                    vin = inp.streams.video[0]
                    if bytes(vin.codec_context.extradata or b"") != header:
                        raise OutputError(f"Segment '{segment}' was encoded with other H.264 settings than the "
                                          "first segment; delete the job's work folder and run it again.")
                    frames += _copy_packets(out, inp, vin, vout, frames / rate)
            if astream is not None:
                mux_audio(out, astream, audio, frames, rate)
        finally:
            out.close()
    return frames


def _copy_packets(out, inp, vin, vout, offset: Fraction) -> int:
    """Mux every packet of ``vin`` into ``vout`` shifted by ``offset`` seconds; returns the frame count."""
    shift = int(round(offset / Fraction(vin.time_base)))
    count = 0
    for packet in inp.demux(vin):
        if packet.dts is None and packet.pts is None:  # the demuxer's end-of-stream marker
            continue
        if packet.pts is not None:
            packet.pts += shift
        if packet.dts is not None:
            packet.dts += shift
        packet.stream = vout
        out.mux(packet)
        count += 1
    return count

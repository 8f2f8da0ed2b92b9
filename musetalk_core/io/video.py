"""Reading and writing video, audio and still images with PyAV only (no system ffmpeg, no temporary PNGs).

Used by the command line; the graph uses ComfyUI's own LoadVideo / LoadAudio / CreateVideo / SaveVideo instead.

- frames are uint8 RGB tensors (N, H, W, 3), as everywhere in the library;
- the frame rate is an exact ``Fraction`` taken from the stream's average rate (29.97 fps stays 30000/1001);
- audio is ComfyUI's AUDIO mapping ``{"waveform": float32 (1, C, S), "sample_rate": int}``, so the CLI hands the
  pipeline exactly what LoadAudio would;
- ``write_video`` muxes H.264 video and AAC audio in one pass into a temporary file next to the output and renames
  it only on success (``atomic_output``): a failed or interrupted run never leaves a half-written file, an OS
  refusal (disk full, a path the OS will not create) is an ``OutputError`` naming the output, and the file gets
  the mode any new file of the user gets (0666 minus the umask, e.g. 0644), not a private temp file's 0600.
"""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from .background import BackgroundWorker
from ..errors import InputError, NoFramesError, OutputError

PathLike = Union[str, os.PathLike]
AUDIO_CHUNK = 1 << 16  # audio samples per frame handed to the AAC encoder (VideoWriter.finish)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


@dataclass(frozen=True)
class VideoData:
    frames: torch.Tensor  # uint8 (N, H, W, 3) RGB
    fps: Fraction
    audio: Optional[dict]  # AUDIO mapping of the file's first audio stream, or None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _check_readable(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file '{path}' does not exist. Check the path.")
    if not path.is_file():
        raise InputError(f"{what} path '{path}' is not a file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} file '{path}' cannot be read (permission denied).")
    return path


def open_media(path: Path, what: str):
    """``av.open`` for reading, a file that will not open being an InputError that says what to give instead."""
    import av

    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} file '{path}' could not be opened as a media file ({exc}). "
                         f"Give a video/audio file that ffmpeg can read (mp4, mov, mkv, webm, wav, mp3, m4a...).") from None


def stream_fps(stream) -> Fraction:
    """The exact frame rate of a video stream: average rate, else guessed rate, else base rate."""
    for rate in (stream.average_rate, getattr(stream, "guessed_rate", None), stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    raise InputError("the video stream declares no frame rate; re-encode it or give --fps with an image.")


def _decode_audio(container, path: Path, what: str) -> Optional[dict]:
    import av

    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    chunks = []
    rate = None
    try:
        for frame in container.decode(stream):
            rate = rate or frame.sample_rate
            data = frame.to_ndarray()
            fmt = frame.format
            if not fmt.is_planar:  # packed: (1, S*C) -> (C, S)
                data = data.reshape(-1, len(frame.layout.channels)).T
            if data.dtype.kind in "iu":
                info = np.iinfo(data.dtype)
                data = data.astype(np.float32) / float(max(abs(info.min), info.max))
            chunks.append(data.astype(np.float32, copy=False))
    except av.error.FFmpegError as exc:
        raise InputError(f"{what} file '{path}': its audio stream could not be decoded ({exc}).") from None
    rate = rate or stream.sample_rate or stream.codec_context.sample_rate
    if not chunks:
        samples = np.zeros((max(1, stream.codec_context.channels or 1), 0), np.float32)
    else:
        samples = np.concatenate(chunks, axis=1)
    return {"waveform": torch.from_numpy(np.ascontiguousarray(samples)).unsqueeze(0), "sample_rate": int(rate)}


def _first_video_stream(container, path):
    """The file's first video stream, or an InputError saying what the file is instead."""
    if not container.streams.video:
        kind = "an audio-only file" if container.streams.audio else "a file without a video stream"
        raise InputError(f"Video file '{path}' is {kind}. Give a video with --video "
                         f"(or a still image with --image), and the sound with --audio.")
    return container.streams.video[0]


def read_video(path: PathLike, with_audio: bool = True) -> VideoData:
    """All frames of the first video stream (uint8 RGB, as displayed: a display matrix is applied), its exact fps,
    and its audio (if any)."""
    import av

    from .orientation import of_frame

    path = _check_readable(path, "Video")
    with open_media(path, "Video") as container:
        stream = _first_video_stream(container, path)
        fps = stream_fps(stream)
        stream.thread_type = "AUTO"
        frames = []
        orientation = None
        try:
            for frame in container.decode(stream):
                if orientation is None:  # the display matrix (portrait phone videos): frames as displayed
                    orientation = of_frame(frame)
                frames.append(np.ascontiguousarray(orientation.apply(frame.to_ndarray(format="rgb24"))))
        except av.error.FFmpegError as exc:
            if not frames:
                raise InputError(f"Video file '{path}' could not be decoded ({exc}).") from None
            # A damaged tail: keep what decoded, as players do.
    if not frames:
        raise InputError(f"Video file '{path}' has no frames. Give a video with at least one frame.")
    audio = None
    if with_audio:
        with open_media(path, "Video") as container:
            audio = _decode_audio(container, path, "Video")
    return VideoData(torch.from_numpy(np.stack(frames)), fps, audio)


def open_video(path: PathLike):
    """The first video stream of a file as a lazy ``sources.VideoFileSource`` (nothing decoded yet)."""
    from .sources import VideoFileSource

    path = _check_readable(path, "Video")
    with open_media(path, "Video") as container:
        stream_fps(_first_video_stream(container, path))
    try:
        return VideoFileSource(path, name="--video")
    except NoFramesError:
        raise InputError(f"Video file '{path}' has no frames. Give a video with at least one frame.") from None


def check_audio_duration(audio: Mapping[str, Any], fps, name: str = "audio") -> None:
    """At least one video frame of sound (checked before any frame is decoded or model loaded)."""
    rate = int(audio["sample_rate"])
    samples = int(audio["waveform"].shape[-1])
    if rate <= 0 or samples * float(fps) < rate:
        ms = 1000.0 * samples / rate if rate > 0 else 0.0
        raise InputError(f"{name}: {ms:.1f} ms of audio is shorter than one video frame at {float(fps):g} fps "
                         f"({1000 / float(fps):.1f} ms). Give a longer audio clip.")


def read_image(path: PathLike) -> torch.Tensor:
    """A still image as uint8 (1, H, W, 3) RGB (EXIF orientation applied, alpha dropped), like core LoadImage."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _check_readable(path, "Image")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            arr = np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"Image file '{path}' could not be read as an image ({exc}). Give a PNG/JPEG/WebP file.") from None
    return torch.from_numpy(arr).unsqueeze(0)


def read_audio(path: PathLike) -> dict:
    """The first audio stream of any file ffmpeg reads, as ComfyUI's AUDIO mapping (native sample rate)."""
    path = _check_readable(path, "Audio")
    with open_media(path, "Audio") as container:
        audio = _decode_audio(container, path, "Audio")
    if audio is None:
        raise InputError(f"Audio file '{path}' has no audio stream. Give a file with sound (wav, mp3, m4a, or a "
                         f"video with an audio track).")
    if audio["waveform"].shape[-1] == 0:
        raise InputError(f"Audio file '{path}' has an audio stream with no samples.")
    return audio


def check_output_path(path: PathLike) -> Path:
    """The output's folder must exist and be writable; the file name must end in a container PyAV can write."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        if not folder.is_dir():
            raise InputError(f"Output folder '{folder}' does not exist. Create it first or choose another --output.")
        if not os.access(folder, os.W_OK):
            raise InputError(f"Output folder '{folder}' is not writable.")
        if path.is_dir():
            raise InputError(f"Output path '{path}' is a folder; give a file name such as out.mp4.")
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise InputError(f"Output path '{path}' cannot be used: {exc.strerror or exc}. Choose another --output.") from None
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        raise InputError(f"Output file '{path}' must end in .mp4, .mov, .mkv or .m4v (H.264 + AAC; .mkv: H.264 + "
                         "FLAC).")
    return path


def audio_codec(path: PathLike) -> str:
    """The audio codec written into ``path``: AAC, except FLAC in .mkv. AAC's last frame always holds 1024 samples
    and its encoder delay comes first: MP4 / MOV record the exact length in an edit list, Matroska keeps the whole
    last frame (0.448 s of sound for 0.400 s of video at 16 kHz) and declares the delay in its durations as well.
    FLAC has neither (a short last frame, no delay), so every container holds exactly frames / fps of audio."""
    return "flac" if Path(path).suffix.lower() == ".mkv" else "aac"


def file_key(path: PathLike):
    """One key per file: device and inode for an existing file (so a symbolic or a hard link to it gives the same
    key), else the path with links resolved (a file not written yet)."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.realpath(path)


def refuse_overwriting_inputs(output: PathLike, inputs: Mapping[str, Optional[PathLike]],
                              option: str = "--output") -> None:
    """The output must not be one of the inputs (also through a symbolic or a hard link): writing the result
    there would replace the source the run reads, and the user's original would be lost. ffmpeg refuses the
    same. ``inputs``: what each input is called in a message (``--video``) -> its path (None: not given)."""
    for name, path in inputs.items():
        if path is not None and file_key(output) == file_key(path):
            raise InputError(f"{option} '{output}' is the same file as {name} '{path}': writing the result there "
                             f"would replace your source. Choose another {option} file name.")


def _muxer_options(path: PathLike, audio_rate: Optional[int]) -> dict:
    """MP4 / MOV / M4V with audio: the movie timescale is the audio's sample rate, so the edit list that trims the
    AAC track says its length to the sample (at ffmpeg's default of 1000 per second it said 14685 of 14715 samples
    for 10 frames at 29.97 fps and 44.1 kHz: 0.7 ms short)."""
    if audio_rate and Path(path).suffix.lower() in (".mp4", ".mov", ".m4v"):
        return {"movie_timescale": str(int(audio_rate))}
    return {}


def _output_failure(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "free some space or choose another --output on a disk with room"
    else:
        advice = "choose another --output in a normal folder you can write to"
    return OutputError(f"Output file '{path}' could not be written: {reason}. Nothing was written; {advice}.")


@contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a new temporary file next to ``path``; rename it to ``path`` when the block succeeds.

    On any failure the temporary file is removed. OS errors (disk full, quota, a folder the OS refuses to create
    files in although access() allowed it) become an OutputError that names the output. The file is created
    with mode 0666 and the OS applies the user's umask, as for any file the user creates.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        for _ in range(16):  # O_EXCL: never reuse or clobber a file another run is writing
            # the stem is shortened so that the temporary name fits wherever the output's name fits
            candidate = folder / f".{path.stem[:64]}.{secrets.token_hex(4)}.tmp{path.suffix}"
            try:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            tmp = candidate
            break
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary file name")
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise _output_failure(path, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _frame_uint8(frame: torch.Tensor) -> np.ndarray:
    """One (H, W, C) frame -> uint8 RGB numpy (converted frame by frame: no second copy of a long video)."""
    if frame.dtype != torch.uint8:
        frame = (frame.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return frame[..., :3].cpu().numpy()


# libx264's speed / size trade-off at a given crf: each step faster encodes quicker into a larger file; medium is
# ffmpeg's default (and this pack's)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
ENCODE_GROUP_PIXELS = 8 * 1280 * 720  # frames per hand-over to the encoder: 8 at 720p, 1 at 4K (memory O(group))


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
        self.rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
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
                _mux_audio(self.container, self.astream, audio, self.frames, self.rate)
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


def _audio_samples(audio: Optional[Mapping[str, Any]], frames: int, rate: Fraction) -> Optional[np.ndarray]:
    """float32 (C <= 2, S) of the AUDIO mapping trimmed to ``frames / rate`` seconds, or None if empty. A view of
    the waveform where it is float32 on the CPU already (a 10-minute 48 kHz stereo track is 230 MB)."""
    if audio is None:
        return None
    waveform = audio["waveform"]
    sr = int(audio["sample_rate"])
    wav = waveform[0] if waveform.ndim == 3 else waveform
    wav = wav.detach().to(torch.float32).cpu().numpy()
    keep = int(round(float(frames / rate) * sr))
    samples = wav[:2, :keep]
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        return None
    return samples


def _mux_audio(container, astream, audio: Optional[Mapping[str, Any]], frames: int, rate: Fraction) -> None:
    """The whole track as ONE encode (AAC: one priming delay at the start, none anywhere else), trimmed to
    ``frames / rate`` seconds (the stream's codec: ``audio_codec``)."""
    import av

    samples = _audio_samples(audio, frames, rate)
    if samples is None:
        return
    layout = astream.layout.name
    # in pieces of AUDIO_CHUNK samples (the encoder re-cuts them into AAC frames: the same packets as one frame of
    # the whole track), so a long track is not copied whole once more
    for first in range(0, samples.shape[1], AUDIO_CHUNK):
        piece = np.ascontiguousarray(samples[:, first:first + AUDIO_CHUNK])
        if piece.shape[0] == 1 and layout == "stereo":
            piece = np.repeat(piece, 2, 0)
        aframe = av.AudioFrame.from_ndarray(piece[: (1 if layout == "mono" else 2)], format="fltp", layout=layout)
        aframe.sample_rate = astream.sample_rate
        aframe.pts = first
        container.mux(astream.encode(aframe))
    container.mux(astream.encode())


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
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
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
                _mux_audio(out, astream, audio, frames, rate)
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


def audio_layout(audio: Optional[Mapping[str, Any]]) -> Tuple[Optional[int], int]:
    """(sample rate, channels written (1 or 2)) of an AUDIO mapping; (None, 0) without audio."""
    if audio is None:
        return None, 0
    waveform = audio["waveform"]
    channels = int(waveform.shape[-2]) if waveform.ndim >= 2 else 1
    if waveform.shape[-1] == 0 or channels == 0:
        return None, 0
    return int(audio["sample_rate"]), min(channels, 2)


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


def probe(path: PathLike) -> dict:
    """Frame count, fps and audio duration of a written file (for tests and the CLI's final report)."""
    path = _check_readable(path, "Video")
    with open_media(path, "Video") as container:
        info = {"frames": 0, "fps": None, "audio_seconds": None, "audio_samples": 0, "sample_rate": None}
        if container.streams.video:
            vs = container.streams.video[0]
            info["fps"] = stream_fps(vs)
            info["frames"] = sum(1 for _ in container.decode(vs))
    with open_media(path, "Video") as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            declared = stream.duration * stream.time_base if stream.duration is not None else None
            audio = _decode_audio(container, path, "Video")
            info["audio_samples"] = int(audio["waveform"].shape[-1])
            info["sample_rate"] = audio["sample_rate"]
            # The stream's declared duration: AAC decoders hand back whole 1024-sample frames, the container
            # records the exact length that was encoded.
            info["audio_seconds"] = (float(declared) if declared is not None
                                     else info["audio_samples"] / audio["sample_rate"])
    return info

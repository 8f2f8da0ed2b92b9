"""Frame sources: "N frames you can read by index", from an IMAGE batch or from a video file read lazily.

The streaming pipeline never holds a whole video. It asks a source for the frames of one chunk at a time
(``read(indices)`` -> uint8 (k, H, W, 3) RGB) and asks again when a frame mapping (ping-pong, loop) comes back to
frames it has already used.

- ``TensorSource``: an IMAGE batch (float 0..1 or uint8) already in memory; frames are converted per chunk.
- ``VideoFileSource``: the first video stream of a file (a path or a seekable file object) decoded with PyAV.
  Opening it only demuxes the packets (no decoding) to learn the frame count and each frame's timestamp; reads
  decode forward from the current position and seek to the nearest keyframe when they go backwards or far ahead,
  so the pixels equal a decode of the whole file in order. Frames come out as displayed: a display matrix (portrait
  phone videos) is applied (musetalk_core.io.orientation), so ``frame_size`` is the upright size.
- ``as_source``: accepts either of those, an IMAGE tensor, a path, or any object with ComfyUI's VIDEO interface
  (``get_stream_source()`` giving a path or BytesIO, else ``get_components().images``), duck-typed: the core
  imports nothing from ComfyUI.
"""

from __future__ import annotations

import hashlib
import io
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import InputError, NoFramesError
from .frames import frames_fingerprint, put_frame, rgb_frames, rgb_to_uint8
from .media_open import stream_fps

SEEK_AHEAD = 64  # decoding forward over fewer frames than this is cheaper than a seek


class FrameSource:
    """Interface: ``num_frames``, ``frame_size`` (H, W), ``fps`` (Fraction or None), ``read(indices)``.

    ``read`` gives uint8 RGB frames in torch's own memory (contiguous, 64-byte aligned), made by torch on the
    calling thread: frames are read ahead on a thread while the networks run, and that thread must do its copy
    with torch for the networks to keep their speed (io.frames.put_frame says why)."""

    num_frames: int
    frame_size: Tuple[int, int]
    fps: Optional[Fraction] = None
    name: str = "images"

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        return None


class TensorSource(FrameSource):
    """An IMAGE batch (B, H, W, C) float 0..1 or uint8 held by the caller."""

    def __init__(self, images: torch.Tensor, name: str = "images", fps: Optional[Fraction] = None):
        self.images = rgb_frames(images, name)  # checked once; RGB view as every IMAGE reader sees it
        self.name = name
        self.fps = fps
        self.num_frames = int(self.images.shape[0])
        self.frame_size = (int(self.images.shape[1]), int(self.images.shape[2]))

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return rgb_to_uint8(self.images[idx.to(self.images.device)]).cpu()

    def fingerprint(self) -> str:
        return frames_fingerprint(self.images)


class VideoFileSource(FrameSource):
    """The first video stream of a file, decoded lazily (see the module docstring)."""

    def __init__(self, file: Union[str, os.PathLike, io.IOBase], name: str = "video"):
        import av

        self.name = name
        self.file = file
        self.label = str(file) if isinstance(file, (str, os.PathLike)) else f"<{type(file).__name__}>"
        if isinstance(file, (str, os.PathLike)) and not Path(file).is_file():
            raise InputError(f"'{name}': the video file '{file}' does not exist. Check the path, or load the video "
                             "again.")
        try:
            self._container = av.open(self._rewound(), mode="r")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"'{name}': '{self.label}' could not be opened as a video ({exc}). Check that it is "
                             "a complete video file (it plays in a video player); if it does not, re-export or "
                             "re-download it as MP4 (H.264).") from None
        if not self._container.streams.video:
            audio_only = bool(self._container.streams.audio)
            self._container.close()
            if audio_only:
                raise InputError(f"'{name}': '{self.label}' holds only sound (an audio-only file), no pictures. "
                                 "Connect the video itself here, and give its sound to the audio input "
                                 "(LoadAudio).")
            raise InputError(f"'{name}': '{self.label}' has no video stream. Pick a file that holds the video "
                             "stream (re-export it with its video track).")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.fps = stream_fps(self._stream)
        self._pts = self._index_packets()
        self.num_frames = len(self._pts)
        declared = self._declared_frames()
        self._container.close()
        if self.num_frames == 0:
            raise NoFramesError(f"'{name}': '{self.label}' has a video stream with no frames in it (an empty or "
                                "unfinished export). Re-export the video with at least one frame, or check that "
                                "the right file is loaded.")
        if declared and self.num_frames < declared - max(2, declared // 50):
            raise InputError(f"'{name}': decoding '{self.label}' stopped at frame {self.num_frames} of the "
                             f"{declared} its header declares: the file is damaged or truncated. Re-encode or "
                             "re-download it.")
        from .orientation import of_file

        # the display matrix (portrait phone videos): frames are handed out as displayed, turned upright
        self.orientation = of_file(self.file)
        self._container = av.open(self._rewound(), mode="r")  # a fresh demuxer: decoding starts at frame 0
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._index_of = {p: i for i, p in enumerate(self._pts)}
        ctx = self._stream.codec_context
        self.frame_size = self.orientation.size(int(ctx.height), int(ctx.width))
        self._frames: Optional[Iterator] = self._container.decode(self._stream)
        self._next = 0  # index of the frame the open decoder yields next

    def _rewound(self):
        if isinstance(self.file, io.IOBase):
            self.file.seek(0)
            return self.file
        return str(self.file)

    def _index_packets(self) -> List[int]:
        """Presentation timestamps of every frame, from the packets alone (nothing decoded)."""
        import av

        pts = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size and packet.pts is not None:
                    pts.append(int(packet.pts))
        except av.error.FFmpegError:
            pass  # a damaged tail: the frames before it are still readable; reads past it report the frame
        return sorted(set(pts))

    def _declared_frames(self) -> int:
        """The frame count the header promises (0 when it says nothing), to notice a truncated file."""
        if self._stream.frames:
            return int(self._stream.frames)
        duration = self._container.duration  # microseconds
        if duration and duration > 0:
            return int(round(duration / 1_000_000 * float(self.fps)))
        return 0

    def _seek(self, index: int) -> None:
        self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._next = -1  # unknown until the first decoded frame tells us

    def _decode_next(self, wanted: int):
        import av

        try:
            frame = next(self._frames)
        except (StopIteration, av.error.FFmpegError) as exc:
            self._frames = None
            detail = f" ({exc})" if isinstance(exc, av.error.FFmpegError) else ""
            raise InputError(f"'{self.name}': decoding '{self.label}' stopped at frame {wanted} of "
                             f"{self.num_frames}{detail}: the file is damaged or truncated. Re-encode or "
                             "re-download it.") from None
        index = self._index_of.get(frame.pts)
        if index is None:
            index = self._next if self._next >= 0 else 0
        self._next = index + 1
        return index, frame

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        order = [int(i) for i in indices]
        h, w = self.frame_size
        out = torch.empty((len(order), h, w, 3), dtype=torch.uint8)  # torch's memory: see frames.put_frame
        first = {}  # frame index -> its first row in ``out``
        for k, i in enumerate(order):
            first.setdefault(i, k)
        for target in sorted(first):
            if not 0 <= target < self.num_frames:
                raise IndexError(f"frame {target} out of range 0..{self.num_frames - 1}")
            if self._frames is None or target < self._next or target - self._next > SEEK_AHEAD:
                self._seek(target)
            while True:
                index, frame = self._decode_next(target)
                if index == target:
                    put_frame(out, first[target], self.orientation.apply(frame.to_ndarray(format="rgb24")))
                    break
                if index > target:  # the target never came out: a gap in the stream
                    raise InputError(f"'{self.name}': frame {target} of '{self.label}' could not be decoded.")
        for k, i in enumerate(order):
            if first[i] != k:  # a frame asked for twice (ping-pong at a chunk edge): decoded once
                out[k].copy_(out[first[i]])
        return out

    def fingerprint(self) -> str:
        """The file's identity (path, size, modification time, frames, size), without decoding anything."""
        if isinstance(self.file, (str, os.PathLike)):
            st = os.stat(self.file)
            key = f"{os.path.abspath(self.file)}:{st.st_size}:{st.st_mtime_ns}"
        else:
            key = f"{id(self.file)}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return f"{self.num_frames}x{self.frame_size[0]}x{self.frame_size[1]}:file:{digest}"

    def close(self) -> None:
        self._frames = None
        self._container.close()


def is_video_object(obj) -> bool:
    """Duck-typed ComfyUI VIDEO (comfy_api VideoInput): has get_components() or get_stream_source()."""
    return callable(getattr(obj, "get_stream_source", None)) or callable(getattr(obj, "get_components", None))


def as_source(obj, name: str = "images") -> FrameSource:
    """A FrameSource for an IMAGE tensor, a path, a FrameSource, or a ComfyUI VIDEO object."""
    if isinstance(obj, FrameSource):
        return obj
    if isinstance(obj, torch.Tensor):
        return TensorSource(obj, name)
    if isinstance(obj, (str, os.PathLike)):
        return VideoFileSource(obj, name)
    if is_video_object(obj):
        stream = None
        if callable(getattr(obj, "get_stream_source", None)):
            try:
                stream = obj.get_stream_source()
            except NotImplementedError:
                stream = None
        if isinstance(stream, (str, os.PathLike, io.IOBase)):
            return VideoFileSource(stream, name)
        components = obj.get_components()  # an in-memory VIDEO (VideoFromComponents): its IMAGE batch
        rate = getattr(components, "frame_rate", None)
        return TensorSource(components.images, name, Fraction(rate) if rate is not None else None)
    raise InputError(f"'{name}' must be an IMAGE batch or a VIDEO, got {type(obj).__name__}.")


def prefetched(source: FrameSource, groups: Sequence[Sequence[int]]) -> Iterator[torch.Tensor]:
    """``source.read(g)`` for each group in order, the next group decoded on a thread while the caller works on
    the current one (PyAV decodes without the GIL). One read at a time, so sources need no locking; one chunk more
    in memory. Where a GPU consumer overlaps with decoding."""
    from concurrent.futures import ThreadPoolExecutor

    groups = list(groups)
    if not groups:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="musetalk-read") as pool:
        pending = pool.submit(source.read, groups[0])
        for k in range(len(groups)):
            frames = pending.result()
            if k + 1 < len(groups):
                pending = pool.submit(source.read, groups[k + 1])
            yield frames

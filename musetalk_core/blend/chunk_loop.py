"""The one compositing loop every generator shares: output frames chunk by chunk, over a frame source, to a sink.

Per output frame, everything that is not pixels is decided once (``ChunkBlender``): its source frame, whether it
gets a generated face, its silence weight. ``ChunkBlender.chunks`` reads the source frames of each chunk ahead on a
thread, blends them and hands the chunk on; ``blend_into`` passes every chunk to a sink (sinks.py: an IMAGE that
keeps the caller's float pixels, or the video writer's uint8 frames). Only the paste-back differs per generator
(``ChunkBlender.paste``): MuseTalk's 256 px face into the face box through the parsing mask (box_paste.Blender),
LatentSync's inverse affine warp (generators/latentsync/restore.py).
"""

from __future__ import annotations

from contextlib import closing
from typing import Callable, List, Optional

import torch

from ..hooks import NO_HOOKS, RunHooks
from ..io.frames import image_to_uint8
from .silence_fade import frame_weights

FacesOf = Callable[[List[int]], torch.Tensor]  # output frames (absolute indices) -> their generated faces


def to_uint8(chunk: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """Blended float frames -> uint8 as the video writer rounds them (round(x * 255)). ``in_place``: ``chunk``
    (float32, not needed afterwards) is overwritten instead of two more float copies of it being made."""
    if in_place and chunk.dtype == torch.float32:
        return chunk.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return (chunk.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


class ChunkBlender:
    """The compositing of output frames, one chunk at a time, for any frame source; subclasses paste the faces.

    ``source_index``: the source frame of each output frame; ``generated_has_face``: the output frames with a
    generated face (a subclass may narrow ``active`` further); ``silent``: per output frame silence flags, used
    with ``silence_handling`` (weight 0 there, faded over ``silence_fade_frames`` around)."""

    # frame pixels per output chunk (16 1080p frames; fewer frames above 1080p). Chunks are composited
    # independently of each other, so this bounds memory without changing a pixel.
    CHUNK_PIXELS = 40_000_000

    def __init__(self, source_index: torch.Tensor, generated_has_face: torch.Tensor, device: torch.device, *,
                 silent: Optional[torch.Tensor] = None, silence_handling: bool = False, silence_fade_frames: int = 3):
        self.device = torch.device(device)
        self.source = source_index.detach().to("cpu").long()
        self.active = generated_has_face.detach().to("cpu").bool().reshape(-1).numpy().copy()
        self.weights = frame_weights(int(self.source.numel()), silent, silence_handling, silence_fade_frames)

    def rows(self, start: int, stop: int) -> List[int]:
        """Output frames of the chunk that get a generated face (face present, not fully silent)."""
        return [i for i in range(start, stop) if self.active[i] and self.weights[i] > 0.0]

    def paste(self, chunk: torch.Tensor, start: int, rows: List[int], generated_faces: FacesOf) -> None:
        """Composite the generated faces of output frames ``rows`` into ``chunk`` (float32 frames start.., on the
        device, in place), each weighted by ``self.weights``. The generator's own paste-back."""
        raise NotImplementedError

    def blend(self, start: int, stop: int, raw: torch.Tensor, generated_faces: FacesOf) -> torch.Tensor:
        """float32 (stop - start, H, W, 3) on the device: source frames ``raw`` (float IMAGE values or uint8) of
        output frames start..stop-1 with their faces composited. Pixels no face touches keep the float values of
        ``raw``. ``generated_faces(rows)`` gives the faces of the output frames ``rows`` (absolute indices)."""
        if raw.is_floating_point() and raw.shape[-1] == 3:
            chunk = raw.to(device=self.device, dtype=torch.float32)
        else:  # uint8, grayscale or RGBA input: through the standard conversion (divided in place: one copy)
            chunk = image_to_uint8(raw, "images", device=self.device).to(torch.float32).div_(255.0)
        rows = self.rows(start, stop)
        if rows:
            self.paste(chunk, start, rows, generated_faces)
        return chunk

    def blend_uint8(self, start: int, stop: int, raw: torch.Tensor, generated_faces: FacesOf) -> torch.Tensor:
        """uint8 (stop - start, H, W, 3) on the CPU: ``blend`` rounded as the video writer rounds it."""
        return to_uint8(self.blend(start, stop, raw, generated_faces), in_place=True).cpu()

    def stream(self, source, step: int, faces_of: FacesOf, before=None, first: int = 0, last: Optional[int] = None):
        """(start, stop, uint8 frames on the CPU) of every output chunk of ``step`` frames, in order (``chunks``
        with ``blend_uint8``)."""
        return self.chunks(source, step, faces_of, as_float=False, before=before, first=first, last=last)

    def chunks(self, source, step: int, faces_of: FacesOf, *, as_float: bool, before=None, first: int = 0,
               last: Optional[int] = None):
        """(start, stop, blended frames) of every output chunk of ``step`` frames, in order: the source frames are
        read ahead on a thread (sources.prefetched) and blended, as float32 frames on the device (``blend``,
        ``as_float``) or uint8 frames on the CPU (``blend_uint8``). ``before(last_row)`` runs before a chunk with
        faces to composite (the streaming core generates them there). Close the generator (e.g.
        contextlib.closing) to stop the reader when the caller stops early.

        ``first``/``last``: only output frames first..last-1 (a segment of a split job); chunks start at ``first``,
        so a segment that starts on a multiple of ``step`` blends the very chunks of the whole run."""
        from ..io.sources import prefetched

        h, w = (int(v) for v in source.frame_size)
        t, step = int(self.source.numel()), max(1, min(int(step), self.CHUNK_PIXELS // max(1, h * w)))
        end = t if last is None else min(t, int(last))
        starts = range(int(first), end, step)
        reads = prefetched(source, [self.source[a:min(a + step, end)].tolist() for a in starts])
        try:
            for start, raw in zip(starts, reads):
                stop = min(end, start + step)
                rows = self.rows(start, stop)
                if rows and before is not None:
                    before(rows[-1])
                out = (self.blend if as_float else self.blend_uint8)(start, stop, raw, faces_of)
                del raw  # before the next read-ahead starts: two source chunks alive at most
                yield start, stop, out
        finally:
            reads.close()  # waits for a read still running on the prefetch thread

    def blend_into(self, sink, source, step: int, faces_of: FacesOf, hooks: Optional[RunHooks] = None) -> None:
        """Every output chunk, blended over its source frames, to ``sink.put(start, stop, frames)`` in order;
        ``sink.float_frames`` picks float32 frames (``blend``) or uint8 ones (``blend_uint8``)."""
        hooks = hooks or NO_HOOKS
        with closing(self.chunks(source, step, faces_of, as_float=sink.float_frames)) as chunks:
            for start, stop, frames in chunks:
                sink.put(start, stop, frames)
                hooks.step(stop - start)


def stream_layers(layers, source, step: int, first: int = 0, last: Optional[int] = None, as_float: bool = False):
    """(start, stop, frames) of every output chunk with the faces of several speakers: each chunk's source frames
    are read once and every layer (blender, faces_of, before) pastes its faces in turn, in order, over what the
    layers before it made; uint8 CPU frames (``blend_uint8``) or float32 device frames (``blend``, ``as_float``).
    The layers share one frame mapping. One layer gives exactly ``ChunkBlender.chunks``' frames (the same reads,
    rows, ``before`` calls and paste)."""
    from ..io.sources import prefetched

    base = layers[0][0]
    h, w = (int(v) for v in source.frame_size)
    t, step = int(base.source.numel()), max(1, min(int(step), base.CHUNK_PIXELS // max(1, h * w)))
    end = t if last is None else min(t, int(last))
    starts = range(int(first), end, step)
    reads = prefetched(source, [base.source[a:min(a + step, end)].tolist() for a in starts])
    try:
        for start, raw in zip(starts, reads):
            stop = min(end, start + step)
            out = raw
            for blender, faces_of, before in layers:
                rows = blender.rows(start, stop)
                if rows and before is not None:
                    before(rows[-1])
                out = (blender.blend if as_float else blender.blend_uint8)(start, stop, out, faces_of)
            del raw
            yield start, stop, out
    finally:
        reads.close()


def blend_layers_into(sink, layers, source, step: int, hooks: Optional[RunHooks] = None) -> None:
    """``ChunkBlender.blend_into`` for several speakers' layers (see ``stream_layers``)."""
    hooks = hooks or NO_HOOKS
    with closing(stream_layers(layers, source, step, as_float=sink.float_frames)) as chunks:
        for start, stop, frames in chunks:
            sink.put(start, stop, frames)
            hooks.step(stop - start)

"""A live lip-sync session over a prepared avatar: audio in as it arrives, output frames out in order.

One clock of output frames at the avatar's fps: output frame k shows avatar.idle_order frame k, whether it is an
idle frame (``idle_frame``: no audio flows, no generation) or a speech frame. Speech (``push_audio`` .. ``finish``:
an utterance) becomes Whisper windows as it arrives (stream_windows.StreamingWindows); an utterance of D seconds
has floor(D * fps) frames, numbered on from the clock when they are scheduled. A speech frame is generated when its
source frame has a face and its audio is not silent (audio/silence.py's RMS test, options.silence_threshold_db);
otherwise the source frame shows (mouth at rest). Around silent frames the mouth fades over
options.silence_fade_frames frames, as the offline core's silence handling does, so a session is the core's run with
silence_handling on, frame_mapping "bounce" and the avatar's blend settings.

The caller's loop (a server runs it for many sessions, generate_batch over the items of all of them):

    session.push_audio(chunk, rate)            # any chunk size, rate, int16 or float, mono or (C, S)
    items = session.work(limit)                # frames ready that need a generated face
    session.deliver(items, generate_batch(models, items))
    for k, image in session.frames(): ...      # finished frames, in order, each once
    ... session.finish()                       # end of the speech: the rest becomes ready

Equality with the offline core: given the offline windows (``windows=`` a factory of an object with
StreamingWindows' methods), the generated faces (in batches of the core's batch size: run_session) and the
blended frames equal the core's bit for bit (tests/test_realtime_session.py). With live windows the frames differ
only through the windows (stream_windows.py says by how much).

Latency: ``lookahead_ms`` is the audio a frame needs after its start before it can be made (the window, the
block wait and the silence fade's look-ahead: 280 ms at 25 fps with the defaults), plus the compute (encoder call,
UNet + decode, blend; BENCHMARKS.md, "Real-time sessions").

Memory: the frames scheduled and not yet handed out (their windows until generated, their faces until blended),
and StreamingWindows' bounded buffers; what was handed out is dropped. ``held()`` reports it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable, Deque, List, Optional, Tuple

import numpy as np
import torch

from ..blend.box_paste import Blender
from ..errors import InputError
from ..options import LipsyncOptions
from .stream_audio import To16k, check_rate, mono_float
from .stream_windows import DEFAULT_BLOCK_MS, DEFAULT_SETTLE_MS, StreamingWindows, window_lookahead_ms

BLEND_GROUP = 8   # frames composited per Blender call
CHUNK_MS = 20     # run_session's audio chunks

__all__ = ["AvatarSession", "StreamingWindows", "WorkItem", "generate_batch", "run_session"]


@dataclass(frozen=True)
class WorkItem:
    frame: int                # the session's output frame number
    latent: torch.Tensor      # (8, 32, 32) the avatar's latent of the source frame shown
    window: torch.Tensor      # (50, 384) Whisper window of that frame (before positional encoding)
    session_id: str = ""      # the session that made it (a batcher delivers the faces back to it)


class _Frame:
    """A scheduled output frame until it is handed out."""

    __slots__ = ("number", "source", "row", "utt_frame", "silent", "window", "issued", "face", "weight")

    def __init__(self, number: int, source: int, row: int, utt_frame: int, silent: bool, window):
        self.number, self.source, self.row, self.utt_frame = number, source, row, utt_frame
        self.silent, self.window = silent, window
        self.issued, self.face, self.weight = False, None, None

    @property
    def generated(self) -> bool:
        return self.row >= 0 and not self.silent


class AvatarSession:
    """One live lip-sync session (module docstring). ``windows``: a factory () -> StreamingWindows-like object
    (tests give the offline windows); ``block_ms`` / ``settle_ms`` / ``context_seconds``: StreamingWindows' block,
    settle and encoder context."""

    def __init__(self, models, avatar, options: Optional[LipsyncOptions] = None, session_id: str = "", *,
                 block_ms: int = DEFAULT_BLOCK_MS, settle_ms: int = DEFAULT_SETTLE_MS,
                 context_seconds: float = 30.0, windows: Optional[Callable[[], object]] = None):
        from .avatar import check_models

        options = options or LipsyncOptions()
        if options.generator != "musetalk":
            raise InputError(f"Real-time sessions run MuseTalk only, not '{options.generator}': LatentSync's "
                             "diffusion (20 UNet3D steps per 16 frames) is far too slow for real time.")
        if options.feature_mode != "reference":
            raise InputError("Real-time sessions compute the 'reference' Whisper features (the v1.5 model's); "
                             f"feature_mode '{options.feature_mode}' needs the whole track at once.")
        check_models(avatar, models)
        self.models, self.avatar, self.options, self.session_id = models, avatar, options, str(session_id)
        self.fps = float(avatar.fps)
        self.fade = int(options.silence_fade_frames)
        settings = avatar.settings
        self.blur_factor = float(settings.get("blur_factor", options.blur_factor))
        self.upper_boundary_ratio = float(settings.get("upper_boundary_ratio", options.upper_boundary_ratio))
        self._slot = avatar.latents.latent_slot()   # source frame -> latent row (-1: no face)
        self._blender = _AvatarBlender(avatar.faces, models.device, self.blur_factor, self.upper_boundary_ratio)
        self._latents = avatar.latents.latents
        self._new_windows = windows or (lambda: StreamingWindows(
            models, self.fps, options.audio_padding_left, options.audio_padding_right,
            silence_threshold_db=options.silence_threshold_db, block_ms=block_ms, settle_ms=settle_ms,
            context_seconds=context_seconds))
        if windows is None:
            self._new_windows()  # the settings checked now, not at the first chunk of audio
        self.lookahead_ms = window_lookahead_ms(self.fps, options.audio_padding_left, options.audio_padding_right,
                                                block_ms, settle_ms, self.fade)
        self._clock = 0          # the next output frame number to assign
        self._pending: Deque[_Frame] = collections.deque()   # scheduled, not handed out, in order
        self._windows = None     # the utterance's StreamingWindows
        self._to16k: Optional[To16k] = None
        self._scheduled = 0      # utterance frames scheduled
        self._flags: List[bool] = []   # utterance silence flags from _flags_from on
        self._flags_from = 0
        self._finished = True    # no utterance under way

    # --------------------------------------------------------------------------------------------- audio in

    def push_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """A chunk of speech: float32 in [-1, 1] or int16, mono (S,) or (C, S), any size and rate (resampled to
        16 kHz). After ``finish`` it starts the next utterance."""
        rate = check_rate(sample_rate)
        mono = mono_float(samples)
        if self._finished:
            self._start_utterance(rate)
        elif rate != self._to16k.rate:
            raise InputError(f"audio chunk at {rate} Hz in the middle of speech sent at {self._to16k.rate} Hz: "
                             "keep one sample rate per utterance (finish it first).")
        self._windows.push(self._to16k.push(mono))

    def _start_utterance(self, rate: int) -> None:
        self._windows, self._to16k = self._new_windows(), To16k(rate)
        self._scheduled, self._flags, self._flags_from, self._finished = 0, [], 0, False

    def finish(self) -> None:
        """End of speech: the utterance's last frames become ready (their windows see no audio after the end)."""
        if self._finished:
            return
        self._windows.push(self._to16k.finish())
        self._windows.finish()
        self._schedule()
        self._finished = True
        self._windows = None

    @property
    def done(self) -> bool:
        """Finished (no utterance under way) and every frame handed out."""
        return self._finished and not self._pending

    # --------------------------------------------------------------------------------------------- scheduling

    def _schedule(self) -> None:
        """Frames whose windows are known get their output numbers (from the clock) and their source frames."""
        sw = self._windows
        if sw is None:
            return
        first, last = self._scheduled, sw.available()
        if last > first:
            windows, silent = sw.take(first, last)
            sources = self.avatar.idle_order(last - first, self._clock).tolist()
            rows = self._slot[sources].tolist()
            flags = silent.tolist()
            for k in range(last - first):
                self._pending.append(_Frame(self._clock + k, sources[k], rows[k], first + k, bool(flags[k]),
                                            windows[k]))
            self._clock += last - first
            self._scheduled = last
            known = self._flags_from + len(self._flags)
            self._flags.extend(flags[known - first:])
        known = self._flags_from + len(self._flags)
        ahead = sw.silence_known()
        if ahead > known:  # the fade looks ahead: flags need the audio only
            self._flags.extend(sw.silent(known, ahead).tolist())
        self._weigh(finished=sw.finished)

    def _weigh(self, finished: bool) -> None:
        """The mouth's weight of each scheduled speech frame whose neighbours' flags (fade frames each side) are
        known: silence_fade.silence_weights over them, as the offline run computes it over the whole track."""
        from ..blend.silence_fade import silence_weights

        known = self._flags_from + len(self._flags)
        lowest = None
        for entry in self._pending:
            if entry.weight is not None:
                continue  # weighed (an earlier utterance's all were, when it finished)
            j = entry.utt_frame
            if not finished and j + self.fade >= known:
                lowest = j if lowest is None else lowest
                break
            lo, hi = max(self._flags_from, j - self.fade), min(known, j + self.fade + 1)
            flags = torch.tensor(self._flags[lo - self._flags_from:hi - self._flags_from], dtype=torch.bool)
            entry.weight = float(silence_weights(flags, self.fade)[j - lo])
        # flags no frame still to be weighed reads
        keep_from = (lowest if lowest is not None else self._scheduled) - self.fade
        if keep_from > self._flags_from:
            drop = min(keep_from - self._flags_from, len(self._flags))
            del self._flags[:drop]
            self._flags_from += drop

    # --------------------------------------------------------------------------------------------- generation

    def work(self, limit: int) -> List[WorkItem]:
        """Up to ``limit`` frames ready that need a generated face, in order (each given out once)."""
        self._schedule()
        items = []
        for entry in self._pending:
            if len(items) >= int(limit):
                break
            if entry.generated and not entry.issued:
                items.append(WorkItem(entry.number, self._latents[entry.row], entry.window, self.session_id))
                entry.issued, entry.window = True, None
        return items

    def pending_work(self) -> int:
        """How many frames ready now need a generated face (what ``work`` would give with no limit)."""
        self._schedule()
        return sum(1 for e in self._pending if e.generated and not e.issued)

    def deliver(self, items: List[WorkItem], faces: torch.Tensor) -> None:
        """The generated faces (uint8 (k, 256, 256, 3), any device) of items this session's ``work`` gave."""
        if not isinstance(faces, torch.Tensor) or faces.dtype != torch.uint8 or faces.ndim != 4 \
                or tuple(faces.shape[1:]) != (256, 256, 3) or faces.shape[0] != len(items):
            shape = tuple(faces.shape) if isinstance(faces, torch.Tensor) else type(faces).__name__
            raise ValueError(f"deliver: expected uint8 faces ({len(items)}, 256, 256, 3), got {shape}")
        base = self._pending[0].number if self._pending else self._clock
        for item, face in zip(items, faces):
            k = item.frame - base
            entry = self._pending[k] if 0 <= k < len(self._pending) else None
            if entry is None or entry.number != item.frame or not entry.issued or entry.face is not None \
                    or (item.session_id and item.session_id != self.session_id):
                raise ValueError(f"deliver: frame {item.frame} (session '{item.session_id}') is not waiting for a "
                                 f"face in session '{self.session_id}'")
            entry.face = face

    # --------------------------------------------------------------------------------------------- frames out

    def frames(self) -> List[Tuple[int, np.ndarray]]:
        """Finished output frames (number, uint8 (H, W, 3)), in order, each once."""
        self._schedule()
        out = []
        while self._pending:
            group = []
            for entry in self._pending:
                if len(group) == BLEND_GROUP or not self._finished_frame(entry):
                    break
                group.append(entry)
            if not group:
                break
            out.extend(self._blend(group))
            for _ in group:
                self._pending.popleft()
        return out

    @staticmethod
    def _finished_frame(entry: _Frame) -> bool:
        return not entry.generated or (entry.face is not None and entry.weight is not None)

    def _blend(self, group: List[_Frame]) -> List[Tuple[int, np.ndarray]]:
        """The group's source frames with their faces pasted (blend.box_paste.Blender over the avatar's faces)."""
        sources = [e.source for e in group]
        raw = torch.from_numpy(np.array(self.avatar.frames[np.asarray(sources, dtype=np.int64)]))
        pasted = [e.face is not None and e.generated for e in group]
        if any(pasted):
            weights = [e.weight if p else 0.0 for e, p in zip(group, pasted)]
            self._blender.set_frames(sources, pasted, weights)
            faces = [e.face for e in group]
            raw = self._blender.blend_uint8(0, len(group), raw, lambda rows: torch.stack([faces[i] for i in rows]))
        frames = raw.numpy()
        for e in group:
            e.face = None
        return [(e.number, frames[i]) for i, e in enumerate(group)]

    def idle_frame(self) -> Tuple[int, np.ndarray]:
        """The next output frame while no audio flows: its source frame as it is (no generation). Refused
        (RuntimeError) while speech frames are scheduled and not handed out: they come first (``frames``)."""
        self._schedule()
        if self._pending:
            raise RuntimeError(f"idle_frame: speech frames {self._pending[0].number}.. are still to be handed out "
                               "(frames()); the clock shows them first")
        number = self._clock
        source = int(self.avatar.idle_order(1, number)[0])
        self._clock += 1
        return number, np.array(self.avatar.frames[source])

    @property
    def speaking(self) -> bool:
        """An utterance is under way or its frames are still to be handed out (idle_frame would be refused once
        they are scheduled)."""
        return not self._finished or bool(self._pending)

    def held(self) -> dict:
        """What the session holds now: bounded by the frames not yet handed out, not by the session's length."""
        out = {"pending_frames": len(self._pending), "flags": len(self._flags),
               "windows": sum(1 for e in self._pending if e.window is not None),
               "faces": sum(1 for e in self._pending if e.face is not None)}
        if self._windows is not None and hasattr(self._windows, "held"):
            out.update(self._windows.held())
        return out


class _AvatarBlender(Blender):
    """blend.box_paste.Blender for a session: made once over the avatar's frames (every face's box and mask
    checked, blurred masks cached from call to call), then pointed at each group of output frames it composites."""

    def __init__(self, faces, device, blur_factor: float, upper_boundary_ratio: float):
        super().__init__(faces, torch.arange(faces.num_frames), faces.has_face, device, blur_factor=blur_factor,
                         upper_boundary_ratio=upper_boundary_ratio)
        self.usable = self.active.copy()  # per source frame: a face whose box and mask are usable

    def set_frames(self, sources: List[int], pasted: List[bool], weights: List[float]) -> None:
        """Output frames 0..len-1 of the next blend_uint8 call: their source frames, which get a face, and the
        mouth's weight (the utterance's silence fade: a group alone cannot see its neighbours)."""
        self.source = torch.tensor(sources, dtype=torch.long)
        self.active = self.usable[np.asarray(sources, dtype=np.int64)] & np.asarray(pasted, dtype=bool)
        self.weights = np.asarray(weights, dtype=np.float64)


def generate_batch(models, items: List[WorkItem], decoder: str = "vae", acceleration="off",
                   batch_size: Optional[int] = None) -> torch.Tensor:
    """One UNet (+ decoder) pass over work items of any sessions -> uint8 (k, 256, 256, 3) on the models' device,
    in the items' order: generate.unet_decode at t = 0, as the offline core runs a batch.

    ``acceleration``: the offline core's opt-in (generators/musetalk/accel.py). With ``compile`` or ``cuda_graphs``
    the step is built once for ``batch_size`` rows (default: len(items)) and cached on the models, so a server
    compiles or captures once; shorter calls are padded (compile) or run eagerly (graphs), longer ones split."""
    from ..generators.musetalk.generate import batch_step, check_generation_settings

    speed = check_generation_settings(decoder, acceleration)
    device = models.device
    if not items:
        return torch.zeros((0, 256, 256, 3), dtype=torch.uint8, device=device)
    batch = int(batch_size or len(items))
    if decoder == "taesd":
        from ..weights.loading import ensure_network

        ensure_network(models, "taesd")
    with models.use("unet", decoder, "pe") as (unet, dec, pe), \
            batch_step(models, unet, dec, pe, decoder, batch, speed) as run:
        dtype = next(unet.parameters()).dtype
        lat = torch.stack([item.latent for item in items]).to(device=device, dtype=dtype)
        audio = torch.stack([item.window for item in items]).to(device=device, dtype=dtype)
        # a graph replay returns a view of its output buffer: copied out before the next call
        parts = [run(lat[a:a + batch], audio[a:a + batch]) for a in range(0, len(items), batch)]
        return torch.cat(parts) if len(parts) > 1 or speed.cuda_graphs else parts[0]


def warm_up(models, decoder: str = "vae", acceleration="off", batch_size: int = 8) -> float:
    """Build the accelerated step (compile, graph capture) before the first client instead of in its first batch:
    one generate_batch of ``batch_size`` blank items under inference mode (as the server's steps run). Returns
    the seconds it took (0 when the acceleration builds nothing)."""
    import time

    from ..generators.musetalk.generate import check_generation_settings

    if not check_generation_settings(decoder, acceleration).static_shapes:
        return 0.0
    start = time.perf_counter()
    blank = WorkItem(-1, torch.zeros(8, 32, 32), torch.zeros(50, 384))
    with torch.inference_mode():
        generate_batch(models, [blank] * int(batch_size), decoder, acceleration, batch_size)
    return time.perf_counter() - start


def run_session(models, avatar, audio: dict, options: Optional[LipsyncOptions] = None, batch_size: int = 8,
                **session_args) -> List[np.ndarray]:
    """A whole AUDIO through a session in 20 ms chunks -> its frames (tests, the command line). Faces are made in
    batches of ``batch_size`` consecutive frames, as the offline core batches them (so equal windows give equal
    faces). ``session_args``: AvatarSession's keyword arguments."""
    from ..audio.clip import audio_to_mono16k

    options = options or LipsyncOptions()
    audio_to_mono16k(audio)  # the AUDIO checked as the offline core checks it
    rate = int(audio["sample_rate"])
    wave = audio["waveform"]
    wave = (wave if isinstance(wave, torch.Tensor) else torch.as_tensor(np.asarray(wave))).detach().cpu()
    wave = wave.reshape(-1, wave.shape[-1]) if wave.ndim > 1 else wave[None]
    session = AvatarSession(models, avatar, options, **session_args)
    step = max(1, rate * CHUNK_MS // 1000)
    out: List[np.ndarray] = []

    def run(full_batches_only: bool) -> None:
        while True:
            if full_batches_only and session.pending_work() < batch_size:
                break
            items = session.work(batch_size)
            if not items:
                break
            session.deliver(items, generate_batch(models, items, options.decoder, options.acceleration,
                                                  batch_size))
        out.extend(image for _, image in session.frames())

    with torch.inference_mode():  # as the server's steps run
        for start in range(0, int(wave.shape[-1]), step):
            session.push_audio(wave[:, start:start + step].numpy(), rate)
            run(full_batches_only=True)
        session.finish()
        run(full_batches_only=False)
    if not session.done:
        raise AssertionError("run_session: frames were left in the session")
    return out

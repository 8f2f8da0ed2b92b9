"""Whisper windows of a live 16 kHz stream, made as the audio arrives (``StreamingWindows``).

Offline (audio/windows.py, feature_mode "reference") the track is cut into 30 s segments; each is padded with zeros
to 30 s, turned into its own log-mel (normalised on its own) and encoded in one call; frame i's window reads the rows
``reference_window_rows`` gives. Live, the audio after "now" does not exist yet. Every ``block_ms`` of audio, one
encoder call encodes the current segment as the reference would if the track ended there: the segment's audio so
far, at its own place in the segment (the positions the offline encoding gives it), zero-padded to 30 s. Of its
1500 rows, those with at least ``settle_ms`` of audio after them that were not
kept before are kept; a frame's window is known once every row it reads is kept and the audio covers the frame.
The windows are then those of ``reference_window_rows`` exactly (padding 2/2 by default), and the silence flags are
audio/silence.py's RMS test over the same rows (running sums added in the same order: the offline flags bit for
bit). At ``finish`` the last call sees the whole remaining audio, as the offline track's end does.

Look-ahead (``lookahead_ms``): the audio needed after a frame's start before its window is known. At 25 fps with
padding 2/2 a window reads Whisper rows up to 120 ms after the frame's start; add ``settle_ms`` and the wait for the
next block boundary (up to one block less 40 ms): 120 + 0 + 160 = 280 ms worst case with the defaults (200 ms
blocks, no settle), 120 ms at best. ``LOOKAHEAD_MS`` is that worst case at 25 fps.

Encoder context (``context_seconds``, opt-in; 30 = the whole segment, the default): with less, a call encodes only
the last ``context_seconds`` of the segment's audio so far (from the segment's start while there is less), each row
at its place in the segment, attention over those rows only (whisper_encoder.window_states; whisper.cpp's
"audio_ctx" for its real-time mode). A call then costs about context/30 of a whole segment's (the layers' matrix
products, and attention's quadratically less), but a row no longer sees the audio before the window nor the
segment's zero padding, so the windows move further from the offline encoding (BENCHMARKS.md, "Real-time sessions",
measured on random weights only).

Block size: an encoder call costs the same whatever audio it holds (30 s of mel by default), so the block sets the
encoder calls per second of audio (1000 / block_ms: 5 at 200 ms) against the wait for a boundary (up to a block
less one frame): 100 ms blocks cut the worst look-ahead to 200 ms for 10 calls a second, 400 ms blocks raise it
to 480 ms for 2.5. Whisper-tiny's encoder takes milliseconds on a GPU; on a CPU it is a large part of a session's
cost (BENCHMARKS.md, "Real-time sessions").

How far the live windows are from the offline encoding of the same audio (``python -m benchmarks.realtime
--fidelity --real-encoder``: 12 s of speech-like audio, benchmarks.synthetic.make_audio, 20 ms chunks, 200 ms
blocks; relative L2 per frame ||live - offline|| / ||offline||, median / p90 / max over 300 frames):

    median / p90 / max                                  settle 0 ms          80 ms                200 ms
    tests' tiny Whisper (random positions)              0.191 0.337 0.390    0.188 0.334 0.387    0.183 0.331 0.383
    whisper-tiny's size, random weights, sinusoids      0.112 0.239 0.266    0.110 0.237 0.264    0.107 0.234 0.261

The difference is the audio still to come in the offline segment: the encoder's attention spans all 30 s, so the
offline state of a row also holds the seconds of speech after it, which live are not there yet. It is not the
log-mel's normalisation (an offline mel with everything after "now" set to its floor gives the same distance) nor
the immediate neighbourhood (settling 200 ms changes the median by 4%): on the real-size architecture it is 0.22
with 10 s of the offline track still to come, 0.11 with 6 s, 0.04 with 2 s, and 0 for the rows of the final call
(``finish``). The stem rows (conv only) are equal. Random weights attend everywhere alike; how much a trained
Whisper's states depend on the seconds ahead was not measurable here (no real weights), so ``settle_ms`` stays a
setting, 0 by default (each 20 ms of it is 20 ms of latency).

Memory: the current segment's audio (at most 30 s; with a shorter ``context_seconds``, that and two blocks), the encoder rows not yet read by
every later window and their running sums: nothing grows with the stream's length, as long as the caller takes the
windows as they become available (``take``).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from ..audio.clip import SAMPLE_RATE, SAMPLES_PER_WHISPER_FRAME, WHISPER_FPS, check_fps, frame_count
from ..audio.windows import _check_settings, reference_window_rows
from ..audio.whisper_states import SEGMENT_SAMPLES, feature_extractor
from ..errors import InputError

ROW_MS = 1000 // WHISPER_FPS  # 20 ms per Whisper row
SEGMENT_ROWS = SEGMENT_SAMPLES // SAMPLES_PER_WHISPER_FRAME  # 1500
DEFAULT_BLOCK_MS = 200
DEFAULT_SETTLE_MS = 0


def window_lookahead_ms(fps: float, pad_left: int, pad_right: int, block_ms: int, settle_ms: int,
                        flag_frames: int = 0) -> int:
    """The most audio (ms) any frame needs after its start before its window is known, and the silence flags of
    the ``flag_frames`` frames after it (a silence cross-fade looks that far ahead): one period of frames."""
    m = WHISPER_FPS / fps
    window = 2 * (pad_left + pad_right + 1)
    block, settle = block_ms // ROW_MS, settle_ms // ROW_MS

    def rows_read(i: int) -> int:  # frame i reads rows below this
        return int(math.floor(i * m)) - math.ceil(m) * pad_left + window

    worst = 0.0
    for i in range(int(math.ceil(fps)) * 4 + 1):  # the pattern repeats every second of frames
        encoded = max(block, -(-(rows_read(i) + settle) // block) * block)  # the first call that keeps them
        flags = rows_read(i + flag_frames) * ROW_MS  # the flags need the audio only, no encoder call
        covered = (i + flag_frames + 1) * 1000.0 / fps  # ... and the audio covers those frames
        worst = max(worst, max(encoded * ROW_MS, flags, covered) - i * 1000.0 / fps)
    return int(math.ceil(worst))


def check_blocks(block_ms, settle_ms) -> None:
    """The encoder block and settle: whole Whisper rows (20 ms), a block of one row at least."""
    for name, value in (("block_ms", block_ms), ("settle_ms", settle_ms)):
        try:
            whole = int(value) == value
        except (TypeError, ValueError):
            whole = False
        if not whole or value % ROW_MS or value < (ROW_MS if name == "block_ms" else 0):
            raise InputError(f"{name}: expected a multiple of {ROW_MS} ms (a Whisper row), got {value!r}.")


def check_context(context_seconds: float, block_and_settle_rows: int) -> Optional[int]:
    """The encoder window in rows for ``context_seconds`` (None: 30, the whole segment as offline). A window must
    hold the rows one call keeps (a block and the settle) and a second of audio before them."""
    try:
        value = float(context_seconds)
    except (TypeError, ValueError):
        value = float("nan")
    least = max(1.0, 2 * block_and_settle_rows * ROW_MS / 1000.0)
    if not least <= value <= 30.0 or abs(value * 1000 / ROW_MS - round(value * 1000 / ROW_MS)) > 1e-6:
        raise InputError(f"context_seconds: expected {least:g} to 30 seconds (a whole segment), in steps of "
                         f"{ROW_MS} ms, got {context_seconds!r}.")
    return None if value == 30.0 else int(round(value * 1000)) // ROW_MS


class StreamingWindows:
    """Incremental Whisper windows (T, 50, 384) and silence flags of a live mono 16 kHz stream (module docstring).

    ``push`` audio in any chunk size, ``finish`` at its end; frames 0..available()-1 have windows; ``take`` them in
    order (first = where the last take stopped). ``encoder_calls`` counts the encoder calls made."""

    LOOKAHEAD_MS = window_lookahead_ms(25.0, 2, 2, DEFAULT_BLOCK_MS, DEFAULT_SETTLE_MS)

    def __init__(self, models, fps, audio_padding_left: int = 2, audio_padding_right: int = 2,
                 context_seconds: float = 30.0, silence_threshold_db: float = -45.0,
                 block_ms: int = DEFAULT_BLOCK_MS, settle_ms: int = DEFAULT_SETTLE_MS):
        self.models = models
        self.fps = check_fps(fps)
        self.pad_left, self.pad_right, self.threshold = _check_settings(
            "reference", audio_padding_left, audio_padding_right, silence_threshold_db)
        check_blocks(block_ms, settle_ms)
        self.block_rows = int(block_ms) // ROW_MS
        self.settle_rows = int(settle_ms) // ROW_MS
        self.window_rows = check_context(context_seconds, self.block_rows + self.settle_rows)
        # audio held for later calls: a call's window may start up to a block (and the settle) before the last
        # window_rows rows of what has arrived
        self.context_samples = SEGMENT_SAMPLES if self.window_rows is None else \
            (self.window_rows + self.block_rows + self.settle_rows + 1) * SAMPLES_PER_WHISPER_FRAME
        self.lookahead_ms = window_lookahead_ms(self.fps, self.pad_left, self.pad_right, int(block_ms),
                                                int(settle_ms))
        self.window = 2 * (self.pad_left + self.pad_right + 1)
        self._m = WHISPER_FPS / self.fps
        self.encoder_calls = 0
        self.received = 0                 # 16 kHz samples pushed
        self._audio = np.zeros(0, np.float32)
        self._audio_from = 0              # the sample _audio[0] is
        self._arrived: list = []          # chunks pushed since, joined to _audio when a call reads it (not at each
                                          # 20 ms chunk: that would copy the whole segment 50 times a second)
        self._encoded_to = 0              # the row boundary the last block call's audio ended at
        self._states: Optional[torch.Tensor] = None  # kept rows _states_from.. (n, 5, 384)
        self._states_from = 0
        self.kept = 0                     # rows 0..kept-1 are final
        self._energy = np.zeros(1, np.float64)  # running sum of squares at row edges _energy_from..
        self._energy_from = 0
        self._carry = 0.0                 # the running sum at self.received
        self._taken = 0
        self.finished = False
        self.length: Optional[int] = None       # rows of the whole stream (known at finish)
        self.num_frames: Optional[int] = None   # frames of the whole stream (known at finish)

    # ------------------------------------------------------------------------------------------- audio in

    def push(self, pcm16k: np.ndarray) -> None:
        """Mono float32 samples at 16 kHz (any count); runs the encoder for every block boundary they pass."""
        if self.finished:
            raise RuntimeError("StreamingWindows: push after finish")
        x = np.ascontiguousarray(np.asarray(pcm16k, dtype=np.float32).reshape(-1))
        if not x.size:
            return
        self._add_energy(x)
        self._arrived.append(x)
        self.received += int(x.size)
        while self.received >= (self._encoded_to + self.block_rows) * SAMPLES_PER_WHISPER_FRAME:
            self._encoded_to += self.block_rows
            self._encode_until(self._encoded_to * SAMPLES_PER_WHISPER_FRAME,
                               max(self.kept, self._encoded_to - self.settle_rows))

    def finish(self) -> None:
        """End of the stream: every remaining row is encoded with the audio there is; every frame becomes ready."""
        if self.finished:
            return
        self.finished = True
        self.length = int(math.floor((self.received / SAMPLE_RATE) * WHISPER_FPS))  # as reference_blocks
        self.num_frames = frame_count(self.received, self.fps)
        self._encode_until(self.received, self.length)
        self._audio, self._arrived = np.zeros(0, np.float32), []

    def _add_energy(self, x: np.ndarray) -> None:
        """Running sums of squares at each row edge the new samples reach, in silence.py's order (sequential from
        the previous total, so each equals the offline value bit for bit)."""
        squares = x.astype(np.float64)
        np.square(squares, out=squares)
        running = np.cumsum(np.concatenate([[self._carry], squares]))  # running[j]: first received + j samples
        step = SAMPLES_PER_WHISPER_FRAME
        first_edge = -(-(self.received + 1) // step)  # edges strictly after what was there
        positions = np.arange(first_edge * step, self.received + x.size + 1, step) - self.received
        self._energy = np.concatenate([self._energy, running[positions]])
        self._carry = float(running[-1])

    # ------------------------------------------------------------------------------------------- encoding

    def _encode_until(self, audio_end: int, keep_to: int) -> None:
        """Encode each 30 s segment holding rows kept..keep_to-1 with the audio up to sample ``audio_end`` and keep
        those rows."""
        if keep_to <= self.kept:
            return
        if self._arrived:
            self._audio = np.concatenate([self._audio] + self._arrived)
            self._arrived = []
        segments = range(self.kept // SEGMENT_ROWS, (keep_to - 1) // SEGMENT_ROWS + 1)
        pieces, firsts = [], []
        for s in segments:
            start = s * SEGMENT_SAMPLES
            end = min(audio_end, start + SEGMENT_SAMPLES)
            if self.window_rows is None:  # the whole segment so far, zero-padded to 30 s by the log-mel
                first, span = 0, end - start
            else:  # the last window_rows rows of the audio so far (from the segment's start while shorter)
                end_row = -(-(end - start) // SAMPLES_PER_WHISPER_FRAME)
                first = max(0, end_row - self.window_rows)
                span = self.window_rows * SAMPLES_PER_WHISPER_FRAME
            begin = start + first * SAMPLES_PER_WHISPER_FRAME
            if begin < self._audio_from:
                raise AssertionError("StreamingWindows: an encoder call reads audio already dropped")
            audio = np.zeros(span, np.float32)
            audio[:end - begin] = self._audio[begin - self._audio_from:end - self._audio_from]
            pieces.append(audio)
            firsts.append(first)
        states = self._encode(pieces, None if self.window_rows is None else firsts)
        for k, s in enumerate(segments):
            lo, hi = max(self.kept, s * SEGMENT_ROWS), min(keep_to, (s + 1) * SEGMENT_ROWS)
            at = s * SEGMENT_ROWS + firsts[k]
            if lo < at:
                raise AssertionError("StreamingWindows: rows to keep before the encoder window")
            self._keep(states[k, lo - at:hi - at])
        # audio no later call reads: before the segment of the next row to keep, and before the context of the
        # earliest later call (finish, now)
        keep_from = min(self.received, max((self.kept // SEGMENT_ROWS) * SEGMENT_SAMPLES,
                                           self.received - self.context_samples))
        if keep_from > self._audio_from:
            self._audio = self._audio[keep_from - self._audio_from:].copy()
            self._audio_from = keep_from

    def _encode(self, pieces, firsts=None) -> torch.Tensor:
        """The encoder's 5 hidden states of 30 s segments (each zero-padded and normalised on its own, as
        whisper_states.segment_mels) -> (len(pieces), 1500, 5, 384) in the models' dtype on their device; with
        ``firsts`` (context_seconds < 30): of the window_rows rows from each piece's first row, attention over
        them only (whisper_encoder.window_states) -> (len(pieces), window_rows, 5, 384)."""
        from ..models.whisper_encoder import encoder_states, window_states

        extractor = feature_extractor(self.models)
        # on a GPU the log-mel is computed there (transformers' torch path; within 1e-5 of the CPU's): five 30 s
        # log-mels a second per stream would otherwise load the server's CPU
        where = {"device": str(self.models.device)} if self.models.device.type == "cuda" else {}
        mels = torch.cat([extractor(p, sampling_rate=SAMPLE_RATE, return_tensors="pt", **where).input_features
                          for p in pieces]).to(self.models.device, self.models.dtype)
        with self.models.use("whisper") as (encoder,):
            if firsts is None:
                states = encoder_states(encoder, mels, final_norm=True)
            else:  # a window's mel: its first 2 x window_rows frames (the rest is the extractor's zero padding)
                frames = 2 * self.window_rows
                states = torch.cat([window_states(encoder, mels[k:k + 1, :, :frames], first, final_norm=True)
                                    for k, first in enumerate(firsts)])
        self.encoder_calls += 1
        return states

    def _keep(self, rows: torch.Tensor) -> None:
        self._states = rows.clone() if self._states is None else torch.cat([self._states, rows])
        self.kept += int(rows.shape[0])

    # ------------------------------------------------------------------------------------------- windows out

    def _rows(self, first: int, last: int) -> torch.Tensor:
        length = self.length if self.finished else np.iinfo(np.int64).max // 4
        return reference_window_rows(last, self.fps, self.pad_left, self.pad_right, length, first=first)

    def available(self) -> int:
        """Frames 0..available()-1 have their windows (taken or not)."""
        return int(self.num_frames) if self.finished else max(self._taken, self._frames_below(self.kept))

    def silence_known(self) -> int:
        """Frames 0..silence_known()-1 have their silence flags: they need the audio only, not the encoder."""
        if self.finished:
            return int(self.num_frames)
        return max(self._taken, self._frames_below(self.received // SAMPLES_PER_WHISPER_FRAME))

    def _frames_below(self, rows: int) -> int:
        """How many frames read only rows below ``rows`` and lie within the audio received."""
        # frame i reads rows up to floor(i*m) - p*left + L - 1: all below ``rows`` while floor(i*m) <= top
        top = rows + math.ceil(self._m) * self.pad_left - self.window
        count = 0 if top < 0 else int(math.floor((top + 1) / self._m)) + 1
        while count > 0 and math.floor((count - 1) * self._m) > top:  # float guard at exact multiples
            count -= 1
        while math.floor(count * self._m) <= top:
            count += 1
        return min(frame_count(self.received, self.fps), count)

    def silent(self, first: int, last: int) -> torch.Tensor:
        """Silence flags of frames first..last-1 (not yet taken; last <= silence_known()), as ``take`` gives them."""
        if not self._taken <= first <= last <= self.silence_known():
            raise ValueError(f"silent({first}, {last}): frames {self._taken}..{self.silence_known() - 1} can be "
                             "asked")
        return self._silence(self._rows(first, last))

    def take(self, first: int, last: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Windows (last-first, 50, 384) in the models' dtype on their device, and silence flags (bool, CPU), of
        frames first..last-1. Frames are taken in order: ``first`` is where the previous take stopped; rows no later
        frame reads are dropped."""
        if first != self._taken or not first <= last <= self.available():
            raise ValueError(f"take({first}, {last}): the next frame is {self._taken} and frames up to "
                             f"{self.available()} are available")
        rows = self._rows(first, last)
        windows = self._gather(rows)
        silent = self._silence(rows)
        self._taken = last
        lowest = int(math.floor(last * self._m)) - math.ceil(self._m) * self.pad_left  # frame last's first row
        self._drop_before(None if self._all_taken() else max(0, lowest))
        return windows, silent

    def _all_taken(self) -> bool:
        return self.finished and self._taken >= self.num_frames

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        models = self.models
        if self._states is None:
            shape = (0, 5, 384)
            held = torch.zeros(shape, dtype=models.dtype, device=models.device)
        else:
            held = self._states
        table = torch.cat([held, held.new_zeros((1,) + tuple(held.shape[1:]))])
        idx = rows - self._states_from
        missing = rows < 0
        if bool((idx[~missing] < 0).any()) or bool((idx[~missing] >= held.shape[0]).any()):
            raise AssertionError("StreamingWindows: a window reads a row that is not held")
        idx[missing] = table.shape[0] - 1
        picked = table[idx.to(table.device).reshape(-1)]
        return picked.reshape(rows.shape[0], self.window * table.shape[1], table.shape[2])

    def _silence(self, rows: torch.Tensor) -> torch.Tensor:
        """audio/silence.py's flags for these windows: RMS over the 20 ms spans of their valid rows < threshold."""
        from ..audio.silence import window_levels

        return torch.from_numpy(window_levels(rows, self.received, self._energy_at) < self.threshold)

    def _energy_at(self, samples: np.ndarray) -> np.ndarray:
        """The running sum at each of ``samples`` (a row edge, or the end of the stream)."""
        out = np.empty(samples.shape, np.float64)
        at_end = samples == self.received
        edge = -(-samples // SAMPLES_PER_WHISPER_FRAME) - self._energy_from
        inside = ~at_end
        if bool((edge[inside] < 0).any()):
            raise AssertionError("StreamingWindows: a window reads a dropped energy edge")
        out[inside] = self._energy[edge[inside]]
        out[at_end] = self._carry
        return out

    def _drop_before(self, row: Optional[int]) -> None:
        """Forget the rows (states, running sums) below ``row`` (None: everything)."""
        if row is None:
            self._states, self._energy = None, self._energy[-1:]
            return
        if self._states is not None and row > self._states_from:
            drop = min(row - self._states_from, int(self._states.shape[0]))
            self._states = self._states[drop:].clone() if drop < self._states.shape[0] else None
            self._states_from += drop
        if row > self._energy_from:
            drop = min(row - self._energy_from, int(self._energy.shape[0]) - 1)
            self._energy = self._energy[drop:]
            self._energy_from += drop

    def held(self) -> dict:
        """What the stream holds now (audio samples, Whisper rows, running sums): bounded, whatever its length."""
        return {"audio_samples": int(self._audio.size) + sum(int(c.size) for c in self._arrived),
                "state_rows": 0 if self._states is None else int(self._states.shape[0]),
                "energy_edges": int(self._energy.size)}

"""Opt-in GPU speed settings for the UNet + decoder loop: memory format, static batches, CUDA graphs, torch.compile.

``acceleration`` is "off" (the default: eager, batch by batch, exactly as before) or flags joined by "+":

- ``channels_last``: the UNet's and the decoder's 4-D weights (and so their convolutions) in NHWC. Half-precision
  cuDNN convolutions run NHWC natively; NCHW inputs cost a layout transform around every convolution. Caveat: on
  torch <= 2.11 CUDA GroupNorm returns NCHW, so eager sd-vae resnets pay transforms at every norm: measure.
- ``cudnn_benchmark``: cuDNN autotunes each convolution shape once instead of using its heuristics (the shapes are
  few and fixed: one batch size, 32..256 pixels).
- ``cuda_graphs``: the whole step (positional encoding, UNet, decoder, uint8 conversion) captured once per batch
  size as a CUDA graph and replayed: no Python or kernel-launch overhead (~1,000 launches per UNet call, which at
  batch 8 is a measurable part of a 10 ms step).
- ``compile``: the step through torch.compile (Inductor, mode "default", see compile_mode; fuses GroupNorm + SiLU + residual adds,
  which the eager decoder runs as separate memory passes at 256x256). Compiling takes tens of seconds once per
  process and batch size: it pays on long videos only.

How each call runs is decided by ``call_plan`` (checked on the CPU in tests/test_accel.py):

- ``cuda_graphs`` (without ``compile``) on a CUDA device: a full batch replays the graph captured at the batch size;
  a shorter batch (the last one) runs eagerly at its own size, exactly as the default runs it. Padding it instead
  changed the real rows: cuBLAS and cuDNN may pick other kernels (summation orders) for another batch size, and the
  t = 0 embedding is computed at the batch size in use, so a padded last batch rounded differently (measured on an
  H100, tests/test_cuda.py, 7 frames at batch 3: 67.7 dB fp32 and 49.7 dB bf16 against the default, 2026-11-26).
  Full batches replayed from the graph equalled the default bit for bit in the same session (benchmarks.speed,
  128 frames in whole batches of 8 and 32). So ``cuda_graphs`` alone is meant to give the default's exact faces;
  the eager last batch is not yet checked on a GPU (benchmarks/gpu_session.sh ``graphs`` does).
- ``compile`` (alone or with ``cuda_graphs``): every call gets exactly ``batch`` rows, the last batch padded with
  copies of its last row, and only the real rows are returned (a new shape would compile again, tens of seconds).
  Inductor rounds differently from eager anyway (bf16: 41.1 dB against the default on an H100).
- On the CPU ``cuda_graphs`` changes nothing (there is no CPU graph capture): every call is the default's.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch

from ...errors import InputError

log = logging.getLogger(__name__)

FLAGS = ("channels_last", "cudnn_benchmark", "cuda_graphs", "compile")
# The choices offered in the node (any "+"-joined set of FLAGS is accepted by the library and the benchmarks).
ACCELERATIONS = ("off", "channels_last", "cuda_graphs", "channels_last+cuda_graphs",
                 "channels_last+cudnn_benchmark+cuda_graphs", "compile", "cuda_graphs+compile")


@dataclass(frozen=True)
class Acceleration:
    channels_last: bool = False
    cudnn_benchmark: bool = False
    cuda_graphs: bool = False
    compile: bool = False

    @classmethod
    def parse(cls, value) -> "Acceleration":
        if isinstance(value, Acceleration):
            return value
        text = str(value or "off").strip().lower()
        if text in ("off", "none", ""):
            return cls()
        flags = [f.strip() for f in text.split("+") if f.strip()]
        unknown = [f for f in flags if f not in FLAGS]
        if unknown:
            raise InputError(f"acceleration '{value}': unknown setting(s) {', '.join(unknown)}; use 'off' or any of "
                             f"{', '.join(FLAGS)} joined by '+' (e.g. 'channels_last+cuda_graphs').")
        return cls(**{f: True for f in flags})

    @property
    def static_shapes(self) -> bool:
        return self.cuda_graphs or self.compile

    @property
    def name(self) -> str:
        on = [f for f in FLAGS if getattr(self, f)]
        return "+".join(on) if on else "off"


_COMPILE_MODE = "default"


def set_compile_mode(mode: Optional[str]) -> None:
    """The Inductor mode later compiles use (None or "" = "default")."""
    global _COMPILE_MODE
    _COMPILE_MODE = str(mode or "default")


def compile_mode() -> str:
    """Inductor mode for ``compile``: "default" unless set_compile_mode said otherwise
    (the command line passes $MUSETALK_COMPILE_MODE, musetalk_core.environment). Not "reduce-overhead"
    (Inductor's own CUDA graphs: ``cuda_graphs`` captures the step already) and not "max-autotune" (it
    benchmarks every GEMM/convolution choice: many minutes for the 850 M-parameter UNet) unless asked for."""
    return _COMPILE_MODE


def set_channels_last(modules: Iterable[torch.nn.Module], channels_last: bool) -> None:
    """Put every 4-D parameter and buffer in NHWC (True) or back in NCHW (False), in place; no-op when already so.

    Going back matters: convolutions follow their weight's layout, so NHWC weights left behind by one run would
    change the kernels (and the rounding) of a later run with acceleration off."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for module in modules:
        tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t.ndim == 4]
        if any(not t.is_contiguous(memory_format=fmt) for t in tensors):
            module.to(memory_format=fmt)


@contextmanager
def backend_flags(accel: Acceleration, device: torch.device):
    """cuDNN autotuning for the duration of the run only (a process-wide switch other nodes should not inherit)."""
    if accel.cudnn_benchmark and torch.device(device).type == "cuda":
        cudnn = torch.backends.cudnn
        before = cudnn.benchmark
        cudnn.benchmark = True  # only this switch: precision settings (TF32) stay as the user has them
        try:
            yield
        finally:
            cudnn.benchmark = before
    else:
        yield


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x with its last row repeated up to ``rows`` rows (x itself when it has them already)."""
    n = int(x.shape[0])
    if n == rows:
        return x
    if n == 0 or n > rows:
        raise ValueError(f"cannot pad {n} rows to {rows}")
    return torch.cat([x, x[-1:].expand(rows - n, *x.shape[1:])])


# How StaticRunner runs one call (call_plan): fn on the rows as given; fn on the rows padded to the batch size;
# replay of the graph captured at the batch size (inputs padded when shorter).
EAGER, PADDED, GRAPH = "eager", "padded", "graph"


def call_plan(rows: int, batch: int, accel: Acceleration, graphs: bool) -> str:
    """EAGER, PADDED or GRAPH for a call of ``rows`` rows on a runner of ``batch`` rows; ``graphs``: CUDA graphs are
    captured (cuda_graphs on a CUDA device). Only ``compile`` pads a short batch (so it is not compiled again);
    with CUDA graphs alone a short batch runs eagerly, so that it is computed exactly as the default computes it."""
    rows, batch = int(rows), int(batch)
    if rows < 1 or rows > batch:
        raise ValueError(f"{rows} rows for a runner of batch {batch}")
    if graphs and accel.cuda_graphs and (rows == batch or accel.compile):
        return GRAPH
    if accel.compile:
        return PADDED
    return EAGER


class StaticRunner:
    """``fn(*inputs)`` on batches of at most ``batch`` rows, as the acceleration asks.

    Each call runs as ``call_plan`` says. EAGER: ``fn`` on the rows as given. PADDED: ``fn`` on exactly ``batch``
    rows, the first ``n`` output rows returned. GRAPH: the first such call warms ``fn`` up on a side stream and
    captures it; later calls copy the inputs into the captured buffers and replay. The returned tensor is then a
    view of the graph's output buffer: valid until the next call (copy it out first, as generate does).
    ``keep`` holds objects the captured graph reads (e.g. a precomputed embedding) alive as long as the runner.
    ``plans`` counts the calls per plan (what tests and benchmarks read).
    """

    def __init__(self, fn: Callable[..., torch.Tensor], batch: int, device: torch.device, accel: Acceleration,
                 keep: Sequence[object] = ()):
        self.batch = int(batch)
        self.device = torch.device(device)
        self.accel = accel
        self.keep = tuple(keep)
        self.fn = torch.compile(fn, dynamic=False, mode=compile_mode()) if accel.compile else fn
        self.use_graph = accel.cuda_graphs and self.device.type == "cuda"
        self.graph: Optional["torch.cuda.CUDAGraph"] = None
        self.static_inputs: list = []
        self.static_output: Optional[torch.Tensor] = None
        self.calls = 0
        self.plans = {EAGER: 0, PADDED: 0, GRAPH: 0}
        self.build_s = 0.0  # compile + warm-up + capture, the one-off cost (seconds, synchronised)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        n = int(inputs[0].shape[0])
        plan = call_plan(n, self.batch, self.accel, self.use_graph)
        self.calls += 1
        self.plans[plan] += 1
        if plan == EAGER:
            return self.fn(*inputs)
        if plan == PADDED:
            if self.plans[PADDED] == 1:  # the first padded call compiles: its time is build_s
                return self._timed(lambda: self.fn(*[pad_rows(x, self.batch) for x in inputs]))[:n]
            return self.fn(*[pad_rows(x, self.batch) for x in inputs])[:n]
        if self.graph is None:
            self._timed(lambda: self._capture(inputs))
        for buf, x in zip(self.static_inputs, inputs):
            buf[:n].copy_(x)
            if n < self.batch:
                buf[n:].copy_(x[-1:].expand(self.batch - n, *x.shape[1:]))
        self.graph.replay()
        return self.static_output[:n]

    def _timed(self, fn):
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda *a: None)
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        self.build_s += time.perf_counter() - start
        return out

    def _capture(self, inputs) -> None:
        self.static_inputs = [pad_rows(x, self.batch).clone() for x in inputs]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # lazy initialisation, cuDNN autotuning and compilation happen outside the capture
                self.fn(*self.static_inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_output = self.fn(*self.static_inputs)
        self.graph = graph
        log.info("MuseTalk: captured a CUDA graph for batch %d (%s)", self.batch, self.accel.name)


def _weights_key(modules: Sequence[torch.nn.Module]) -> tuple:
    """Where the weights live: a captured graph reads them by address, so moved weights need a new capture."""
    return tuple((p.device, p.data_ptr()) for m in modules for p in m.parameters())


RUNNER_SLOT = "_accel_runner"


def runner_for(store, key: tuple, modules: Sequence[torch.nn.Module],
               build: Callable[[], StaticRunner]) -> StaticRunner:
    """The runner cached in ``store`` (a MuseTalkModels' extras dict) for ``key``, or a new one from ``build``.

    One runner per models object, the most recent: a captured graph holds its own GPU memory pool, and several
    batch sizes would each hold one. Kept on the models so that dropped models take their graphs with them."""
    full_key = (key, _weights_key(modules))
    cached = store.get(RUNNER_SLOT)
    if cached is not None and cached[0] == full_key:
        return cached[1]
    store.pop(RUNNER_SLOT, None)  # free the old graph's memory before capturing a new one
    runner = build()
    store[RUNNER_SLOT] = (full_key, runner)
    return runner

"""The batch on Ray (the only module that imports ray; ray is an optional extra).

Each worker is a Ray actor holding one ``Worker``: it loads the networks on its first task and keeps them (one actor
per GPU, or ``--workers`` on CPUs). The driver keeps the ``Schedule`` and gives the next task to whichever actor is
idle, so a long job's segments run on every worker at once. Actors restart when their process dies
(``max_restarts=-1``); the task that was running is queued again and taken by the next idle actor (the restarted one
included), up to Schedule.max_attempts. Workers report blended frames to a small actor the driver polls for the
progress bar.

Every worker reads the inputs and models and writes into --output-dir by path: on a cluster these must be on a
filesystem every node sees, at the same paths (and the pack installed at the same path, or importable, on every
node).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional, Sequence

from .. import environment
from ..startup import apply_environment
from ..errors import InputError
from .schedule import Schedule
from .worker import Outcome, Worker

POLL_S = 0.5
RESTART_WAIT_S = 300.0  # a dead worker that has not restarted by then is given up (its node is gone)
PACK_ROOT = str(Path(__file__).resolve().parents[2])  # the folder musetalk_core is imported from


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs the optional 'ray' package: python install.py --with-ray "
                         "(or pip install 'musetalk-nodes[ray]').") from None
    return ray


class _Frames:
    """Blended frames reported by the workers, collected until the driver takes them (progress bar)."""

    def __init__(self):
        self.pending = []

    def add(self, key, frames: int) -> None:
        self.pending.append((key, frames))

    def take(self) -> list:
        out, self.pending = self.pending, []
        return out


class _Actor:
    def __init__(self, output_dir, models_dirs, split_seconds, frames, hook, threads: int):
        import torch

        apply_environment()  # MUSETALK_COMPILE_MODE / MUSETALK_CPU_THREADS in the worker's process, as on the CLI
        torch.set_num_threads(max(1, int(threads)))
        self.worker = Worker(Path(output_dir), models_dirs, split_seconds,
                             report=lambda key, n: frames.add.remote(key, n), hook=hook)

    def run(self, task) -> Outcome:
        return self.worker.run(task)

    def pid(self) -> int:
        return os.getpid()


def _connect(ray, address: str) -> bool:
    """Connect (or start a local cluster); True when this call started Ray and must shut it down."""
    if ray.is_initialized():
        return False
    ray.init(address=None if address in (None, "auto") else address, include_dashboard=False)
    return True


def _runtime_env() -> dict:
    """The workers import musetalk_core from where this driver does (the same path on every node)."""
    path = os.pathsep.join(p for p in (PACK_ROOT, environment.python_path()) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def _actor_options(ray, workers: Optional[int]):
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    count = int(workers or max(1, gpus))
    if gpus:
        return count, {"num_gpus": 1}, 1
    share = min(1.0, cpus / count)  # more workers than CPUs: share them rather than wait forever
    return count, {"num_cpus": share}, max(1, int(cpus // count))


def run_on_ray(schedule: Schedule, output_dir: Path, models_dirs: Sequence[Path], split_seconds: Optional[float],
               address: str, workers: Optional[int], on_frames: Callable[[int], None],
               hook: Optional[Callable[[str, int], None]] = None) -> None:
    """Run every task of ``schedule`` on Ray actors; returns when the schedule is empty and nothing runs."""
    ray = import_ray()
    started = _connect(ray, address)
    actors = []
    try:
        count, options, threads = _actor_options(ray, workers)
        frames = ray.remote(num_cpus=0)(_Frames).remote()
        actors.append(frames)  # killed with the workers: nothing of the batch stays on a long-lived cluster
        remote = ray.remote(max_restarts=-1, max_task_retries=0)(_Actor)
        args = (str(output_dir), [str(d) for d in models_dirs], split_seconds, frames, hook, threads)
        pool = [remote.options(runtime_env=_runtime_env(), **options).remote(*args) for _ in range(count)]
        actors += pool
        _drive(ray, schedule, pool, frames, on_frames)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def _drive(ray, schedule: Schedule, actors: list, frames, on_frames) -> None:
    idle, running, pings, waiting = list(actors), {}, {}, []
    reported = defaultdict(int)  # frames per running task, taken back from the bar if its worker dies

    def poll() -> None:
        for key, n in ray.get(frames.take.remote()):
            reported[key] += n
            on_frames(n)

    while True:
        while idle and (task := schedule.next()) is not None:
            actor = idle.pop(0)
            running[actor.run.remote(task)] = (actor, task)
        pings.update({actor.pid.remote(): (actor, tries) for actor, tries in _due(waiting)})
        if not running and (not schedule.has_work() or not (pings or waiting or idle)):
            break
        ready, _ = ray.wait(list(running) + list(pings), num_returns=1, timeout=POLL_S)
        poll()
        for ref in ready:
            if ref in pings:
                _pinged(ray, ref, *pings.pop(ref), idle, waiting)
                continue
            actor, task = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                on_frames(-reported.pop(task.key, 0))
                waiting.append((time.monotonic(), actor, 0))  # back in the pool once it answers again
                schedule.died(task, type(exc).__name__)
                continue
            except ray.exceptions.RayError as exc:
                outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
            reported.pop(task.key, None)
            idle.insert(0, actor)
            schedule.done(task, outcome)
    poll()
    while (task := schedule.next()) is not None:  # only when every worker is gone for good
        schedule.done(task, Outcome(error="every Ray worker died and none could be restarted; see the Ray logs"))


def _due(waiting: list) -> list:
    """(actor, tries) whose restart should be checked now (a ping every POLL_S, not a busy loop)."""
    now, due = time.monotonic(), []
    for item in list(waiting):
        if item[0] <= now:
            waiting.remove(item)
            due.append(item[1:])
    return due


def _pinged(ray, ref, actor, tries: int, idle: list, waiting: list) -> None:
    """A restarted actor that answers goes back to the pool; one still restarting is asked again later; one that
    has not come back after RESTART_WAIT_S leaves the pool (its node is gone)."""
    try:
        ray.get(ref)
    except ray.exceptions.RayActorError:
        if tries * POLL_S < RESTART_WAIT_S:
            waiting.append((time.monotonic() + POLL_S, actor, tries + 1))
        return
    idle.append(actor)

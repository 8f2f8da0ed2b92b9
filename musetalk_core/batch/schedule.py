"""The order of the work and the bookkeeping of results: one state machine for every runner (local or Ray).

Each job starts as a ``prepare`` task; its plan adds one ``render`` task per segment (put at the front of the
queue, so started jobs finish before new ones start and their work folders stay few); a job of several segments
ends with a ``join``. A task whose worker died is queued again (``died``), up to ``max_attempts`` times; a task
that returned an error fails its job alone. Finished and failed jobs become summary records through
``on_record(record, job)``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Dict, Iterable, Optional

from .worker import Outcome, Task


class Schedule:
    def __init__(self, jobs: Iterable, on_record: Callable[[dict, object], None],
                 on_frames_total: Optional[Callable[[int], None]] = None, max_attempts: int = 3):
        self.queue = deque(Task("prepare", job) for job in jobs)
        self.on_record = on_record
        self.on_frames_total = on_frames_total or (lambda n: None)
        self.max_attempts = int(max_attempts)
        self.plans: Dict[int, object] = {}
        self.left: Dict[int, set] = {}        # job index -> segments not rendered yet
        self.started: Dict[int, float] = {}
        self.attempts: Dict[int, int] = {}    # job index -> tasks of it retried after a worker died
        self.dispatched: Dict[tuple, float] = {}
        self.prepare_s: Dict[int, float] = {}  # job index -> seconds its prepare task took (the per-job fixed cost)
        self.closed: set = set()              # jobs with a record: their other tasks are dropped

    def next(self) -> Optional[Task]:
        while self.queue:
            task = self.queue.popleft()
            if task.job.index not in self.closed:
                self.started.setdefault(task.job.index, time.monotonic())
                self.dispatched[task.key] = time.monotonic()
                return task
        return None

    def has_work(self) -> bool:
        return any(task.job.index not in self.closed for task in self.queue)

    def done(self, task: Task, outcome: Outcome) -> None:
        index = task.job.index
        if index in self.closed:
            return
        if outcome.error is not None:
            self._record(task.job, error=outcome.error)
        elif task.kind == "prepare":
            plan = outcome.value
            self.plans[index] = plan
            self.prepare_s[index] = time.monotonic() - self.dispatched.pop(task.key, time.monotonic())
            self.left[index] = set(plan.segments)
            self.on_frames_total(plan.frames)
            self.queue.extendleft(Task("render", task.job, plan, s) for s in reversed(plan.segments))
        elif task.kind == "render":
            self.left[index].discard(task.segment)
            if not self.left[index]:
                if len(task.plan.segments) == 1:
                    self._record(task.job)
                else:
                    self.queue.appendleft(Task("join", task.job, task.plan))
        else:
            self._record(task.job)

    def died(self, task: Task, reason: str) -> None:
        """The worker running ``task`` died (killed, out of memory, node lost): run it again on any worker."""
        index = task.job.index
        if index in self.closed:
            return
        self.attempts[index] = self.attempts.get(index, 0) + 1
        if task.attempt >= self.max_attempts:
            self._record(task.job, error=f"the worker died {task.attempt} times running this job ({reason}); "
                                         "it may need more memory than a worker has: run it with a smaller "
                                         "batch_size or --split-seconds")
            return
        self.queue.appendleft(Task(task.kind, task.job, task.plan, task.segment, task.attempt + 1))

    def _record(self, job, error: Optional[str] = None) -> None:
        self.closed.add(job.index)
        plan = self.plans.get(job.index)
        seconds = time.monotonic() - self.started.get(job.index, time.monotonic())
        frames = plan.frames if plan is not None and error is None else 0
        record = {"line": job.line, "output": str(job.output), "job_id": job.id, "frames": frames,
                  "seconds": round(seconds, 3), "fps": round(frames / seconds, 3) if frames and seconds > 0 else 0.0,
                  "video_seconds": round(frames / float(plan.fps), 3) if frames else 0.0,
                  "segments": len(plan.segments) if plan is not None else 0,
                  "prepare_seconds": round(self.prepare_s.get(job.index, 0.0), 3),
                  "reused_video_material": bool(plan.reused_video) if plan is not None else False,
                  "retries": self.attempts.get(job.index, 0), "error": error}
        self.on_record(record, job)

"""The batch in this process: one worker, the tasks one after another (the very code a Ray actor runs)."""

from __future__ import annotations

from .schedule import Schedule
from .worker import Worker


def run_local(schedule: Schedule, worker: Worker) -> None:
    while True:
        task = schedule.next()
        if task is None:
            return
        schedule.done(task, worker.run(task))

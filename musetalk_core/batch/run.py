"""``python -m musetalk_core batch JOBS.jsonl --output-dir DIR [--ray auto|ADDRESS] [--workers N] [--split-seconds S]``.

The driver: reads and checks the jobs, skips the ones a previous run finished, hands the rest to a runner (this
process, or Ray actors), keeps one progress bar over all jobs (output frames done / total), and writes the summary
JSONL: one record per job in the file's order (output, frames, seconds, frames per second, error). Each finished
job also gets a done marker in the work folder (what a rerun checks, with the output file). The work folder
(``DIR/.musetalk-work``) is removed when every job has succeeded, and kept otherwise, so that a rerun reuses
finished segments and material.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List

from ..errors import InputError
from .jobs import BadJob, done_marker, finished_record, read_jobs, work_root, write_atomic

log = logging.getLogger(__name__)

EXIT_OK, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 3, 130


class _Bar:
    """One tqdm bar over every job's output frames; its total grows as jobs are prepared."""

    def __init__(self, enabled: bool, jobs: int):
        self.bar = None
        self.jobs, self.finished = jobs, 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=0, desc="MuseTalk batch", unit="frame", dynamic_ncols=True, file=sys.stderr)
            self.bar.set_postfix_str(f"jobs 0/{jobs}")

    def grow(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.total += int(frames)
            self.bar.refresh()

    def update(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.update(int(frames))

    def job_done(self) -> None:
        self.finished += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"jobs {self.finished}/{self.jobs}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Results:
    """Records by job line: appended to the summary as they come (to follow a long batch), and rewritten in the
    file's order at the end."""

    def __init__(self, output_dir: Path, summary: Path, bar: _Bar):
        self.output_dir, self.summary, self.bar = output_dir, summary, bar
        self.records: Dict[int, dict] = {}
        self.jobs: Dict[int, object] = {}
        summary.parent.mkdir(parents=True, exist_ok=True)
        self._live = open(summary, "w", encoding="utf-8")

    def add(self, record: dict, job=None) -> None:
        self.records[record["line"]] = record
        if job is not None and record.get("error") is None and not record.get("skipped"):
            marker = done_marker(self.output_dir, job)
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(marker, json.dumps(record).encode("utf-8"))
        self._live.write(json.dumps(record) + "\n")
        self._live.flush()
        self.bar.job_done()

    def close(self) -> List[dict]:
        self._live.close()
        ordered = [self.records[k] for k in sorted(self.records)]
        write_atomic(self.summary, "".join(json.dumps(r) + "\n" for r in ordered).encode("utf-8"))
        return ordered


def run_batch(args) -> int:
    from .worker import Worker

    output_dir = Path(os.path.abspath(args.output_dir))
    if not args.jobs.is_file():
        raise InputError(f"The jobs file '{args.jobs}' does not exist. Give a JSONL file: one job per line.")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--output-dir '{output_dir}' cannot be created ({exc.strerror}).") from None
    jobs = read_jobs(args.jobs, output_dir)
    bar = _Bar(not args.no_progress, len(jobs))
    results = Results(output_dir, Path(args.summary or output_dir / "summary.jsonl"), bar)
    todo = []
    for job in jobs:
        if isinstance(job, BadJob):
            results.add({"line": job.line, "output": job.name, "job_id": None, "frames": 0, "seconds": 0.0,
                         "fps": 0.0, "error": job.error})
        elif (done := finished_record(output_dir, job)) is not None:
            results.add({**done, "skipped": True})
        else:
            todo.append(job)
    from ..weights.files import default_models_dirs
    from .schedule import Schedule

    schedule = Schedule(todo, results.add, on_frames_total=bar.grow)
    interrupted = False
    try:
        if todo:
            dirs = args.models_dir or default_models_dirs()
            if args.ray:
                from .ray_runner import run_on_ray

                run_on_ray(schedule, output_dir, dirs, args.split_seconds, args.ray, args.workers, bar.update)
            else:
                run_local(schedule, Worker(output_dir, dirs, args.split_seconds,
                                           report=lambda key, n: bar.update(n)))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        records = results.close()
    failed = [r for r in records if r.get("error")]
    if not failed and not interrupted and len(records) == len(jobs):
        shutil.rmtree(work_root(output_dir), ignore_errors=True)
    skipped = sum(1 for r in records if r.get("skipped"))
    print(f"{len(records)} of {len(jobs)} job(s) accounted for: {len(records) - len(failed) - skipped} done, "
          f"{skipped} already done (skipped), {len(failed)} failed. Summary: {results.summary}")
    for record in failed:
        print(f"musetalk: job on line {record['line']} ({record['output']}) failed: {record['error']}",
              file=sys.stderr)
    if interrupted:
        print("musetalk: interrupted; finished jobs are kept and a rerun resumes the rest.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if failed else EXIT_OK


def run_local(schedule, worker) -> None:
    from .local import run_local as run

    run(schedule, worker)

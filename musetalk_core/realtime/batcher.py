"""The one place that computes: a task on the event loop that, over and over, hands one step to a single worker
thread. A step feeds every session its new audio, gathers the frames that need a generated face from all sessions
(fair shares of ``batch_size``), runs one ``generate_batch`` over them, delivers the faces and collects each
session's finished frames. One step at a time, so the GPU sees one batch at a time, from every session at once.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Tuple

import torch

from .live import Live

log = logging.getLogger("musetalk_core.realtime")
IDLE_WAIT_S = 0.02   # how long the batcher sleeps when no session had anything to do (audio arrival wakes it)
FEED_S = 0.4         # audio seconds a session takes in per step at most (a step stays short; shutdown is prompt)


class Batcher:
    def __init__(self, models, batch_size: int, generate: Callable, decoder: str = "vae",
                 acceleration: str = "off"):
        self.models = models
        self.batch_size = max(1, int(batch_size))
        self.generate = generate
        self.decoder = decoder
        self.acceleration = acceleration
        self.lives: List[Live] = []
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="musetalk-realtime")
        self.batches = 0
        self.generated = 0
        self._turn = 0
        self._wake = asyncio.Event()
        self._task = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="musetalk-batcher")

    def wake(self) -> None:
        self._wake.set()

    async def call(self, fn, *args):
        """Run ``fn`` on the worker thread, between steps (sessions are made there, beside the networks)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            lives = self.runnable()
            if not lives:
                await self._sleep()
                continue
            try:
                results, busy = await self.call(self.step, lives)
            except Exception:  # a bug in a step must not stop every session: say so, go on
                log.exception("MuseTalk real-time batcher step failed")
                await asyncio.sleep(IDLE_WAIT_S)
                continue
            for live, outcome in results.items():
                if isinstance(outcome, Exception):
                    log.error("MuseTalk real-time session %s failed: %s", live.id, outcome)
                    live.fail(f"the session failed: {outcome}")
                else:
                    live.take(*outcome)
            if not busy:
                await self._sleep()

    def runnable(self) -> List[Live]:
        """The sessions a step serves: open, not failed, and not already AHEAD_S of frames ahead of their pump
        (audio sent faster than real time waits as audio, not as frames)."""
        return [live for live in self.lives if not live.closed and live.error is None and not live.ahead()]

    async def _sleep(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), IDLE_WAIT_S)
        except asyncio.TimeoutError:
            pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.executor.shutdown(wait=True)   # a running step ends first: no thread outlives the server

    # ---- worker thread ----
    def step(self, lives: List[Live]) -> Tuple[Dict[Live, object], bool]:
        """{live: (frames, done) or the exception that ended it}, and whether there was work (generation, or audio
        still waiting): then the next step follows at once."""
        with torch.inference_mode():  # no autograd bookkeeping; the step's tensors stay in its thread's steps
            return self._step(lives)

    def _step(self, lives: List[Live]) -> Tuple[Dict[Live, object], bool]:
        failed: Dict[Live, object] = {}
        behind = False
        for live in lives:
            try:
                behind = live.feed(FEED_S) or behind
            except Exception as exc:  # bad audio ends that session only
                failed[live] = exc
        chosen = self._gather([live for live in lives if live not in failed], failed)
        if chosen:
            self._generate(chosen, failed)
        results: Dict[Live, object] = dict(failed)
        for live in lives:
            if live not in failed:
                try:
                    results[live] = live.collect()
                except Exception as exc:
                    results[live] = exc
        return results, bool(chosen) or behind

    def _gather(self, lives: List[Live], failed: Dict[Live, object]) -> Dict[Live, list]:
        """Up to batch_size work items, shared out: each session gets an equal share, and what a session leaves
        unused goes round again to those that had more. Who goes first rotates from step to step."""
        if not lives:
            return {}
        start = self._turn % len(lives)
        self._turn += 1
        active = lives[start:] + lives[:start]
        chosen: Dict[Live, list] = {}
        budget = self.batch_size
        while budget > 0 and active:
            share = max(1, budget // len(active))
            still = []
            for live in active:
                if budget <= 0:
                    break
                try:
                    items = live.work(min(share, budget))
                except Exception as exc:
                    failed[live] = exc
                    chosen.pop(live, None)
                    continue
                if items:
                    chosen.setdefault(live, []).extend(items)
                    budget -= len(items)
                if len(items) == share:
                    still.append(live)
            active = still
        return chosen

    def _generate(self, chosen: Dict[Live, list], failed: Dict[Live, object]) -> None:
        flat = [item for items in chosen.values() for item in items]
        try:
            faces = self.generate(self.models, flat, decoder=self.decoder, acceleration=self.acceleration,
                                  batch_size=self.batch_size)
        except Exception as exc:  # e.g. out of memory: each session's share again on its own, and only a session
            if len(chosen) > 1:   # whose own share fails is told (and ends)
                log.warning("MuseTalk real-time batch of %d sessions failed (%s); retrying each on its own",
                            len(chosen), exc)
                for live, items in chosen.items():
                    self._generate({live: items}, failed)
                return
            for live in chosen:
                failed[live] = exc
            return
        self.batches += 1
        self.generated += len(flat)
        at = 0
        for live, items in chosen.items():
            try:
                live.deliver(items, faces[at:at + len(items)])
            except Exception as exc:
                failed[live] = exc
            at += len(items)

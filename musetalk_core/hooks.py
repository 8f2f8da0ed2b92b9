"""Progress and interrupt hooks: how long loops in the library talk to whoever runs them.

The library never imports ComfyUI. A node passes ``RunHooks`` built from ComfyUI's ProgressBar and interrupt check;
the command line passes a tqdm bar; tests pass nothing (or a recorder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


def _noop_advance(n: int) -> None:
    return None


def _noop_check() -> None:
    return None


@dataclass
class RunHooks:
    """``advance(n)`` reports n more units of work done; ``check_interrupt()`` raises to stop the run."""

    advance: Callable[[int], None] = field(default=_noop_advance)
    check_interrupt: Callable[[], None] = field(default=_noop_check)

    def step(self, n: int = 1) -> None:
        """Report progress, then give the host a chance to interrupt (once per batch, never per pixel)."""
        self.advance(n)
        self.check_interrupt()


NO_HOOKS = RunHooks()

"""Process start-up of the command line and of Ray workers: the environment's settings handed to the library.

Nothing the nodes import reaches this module (inside ComfyUI the pack reads no environment variable).
"""

from __future__ import annotations


def apply_environment() -> None:
    """Hand the environment's settings to the library (command line and Ray workers, once at start)."""
    from . import cpu_pool, environment
    from .generators.musetalk import accel

    mode = environment.compile_mode()
    if mode:
        accel.set_compile_mode(mode)
    threads = environment.cpu_threads()
    if threads:
        cpu_pool.set_thread_count(threads)
    avatars = environment.avatars_dir()
    if avatars:
        from .realtime.avatar import set_avatars_dir

        set_avatars_dir(avatars)

"""The pack's environment variables, read here and nowhere else in the library or the nodes.

The command line (``python -m musetalk_core``, whose ``__main__`` calls ``apply()``), the batch's Ray workers and
``install.py`` read these; the library takes the settings as parameters / setters instead, so nothing ComfyUI imports
at start or runs during a prompt reads the environment (the Comfy Registry's scan flags that; README, "Comfy
Registry"). The one exception is the pack outside ComfyUI (tests, scripts), where the models folder falls back to
``$MUSETALK_MODELS_DIR`` through ``model_files.default_models_dirs``; inside ComfyUI the folders come from ComfyUI.

| variable | read by | meaning |
|---|---|---|
| MUSETALK_MODELS_DIR | command line, install.py, the pack outside ComfyUI | models folder(s), os.pathsep-separated, when no --models-dir |
| MUSETALK_COMPILE_MODE | command line, Ray workers | torch.compile mode for ``--acceleration ...+compile`` (default "default") |
| MUSETALK_CPU_THREADS | command line, Ray workers | threads of the per-frame CPU pool (default min(8, CPUs)) |
| MUSETALK_AVATARS_DIR | command line | the real-time avatars folder (default <first models folder>/avatars) |
| PYTHONPATH | the batch's Ray driver | passed on to the Ray workers with the pack's folder in front |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

MODELS_DIR = "MUSETALK_MODELS_DIR"
COMPILE_MODE = "MUSETALK_COMPILE_MODE"
CPU_THREADS = "MUSETALK_CPU_THREADS"
AVATARS_DIR = "MUSETALK_AVATARS_DIR"


def _get(name: str) -> str:
    return os.environ.get(name, "").strip()


def models_dirs() -> Optional[List[Path]]:
    """$MUSETALK_MODELS_DIR as folders (os.pathsep-separated), or None when unset."""
    value = _get(MODELS_DIR)
    dirs = [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    return dirs or None


def compile_mode() -> Optional[str]:
    """$MUSETALK_COMPILE_MODE, or None when unset."""
    return _get(COMPILE_MODE) or None


def cpu_threads() -> Optional[int]:
    """$MUSETALK_CPU_THREADS as a positive int, or None when unset or not one."""
    value = _get(CPU_THREADS)
    return int(value) if value.isdigit() and int(value) > 0 else None


def avatars_dir() -> Optional[Path]:
    """$MUSETALK_AVATARS_DIR as a folder, or None when unset."""
    value = _get(AVATARS_DIR)
    return Path(value).expanduser() if value else None


def python_path() -> str:
    """$PYTHONPATH as it is ('' when unset)."""
    return os.environ.get("PYTHONPATH", "")

"""The one place the pack reaches ComfyUI: folders, devices, memory management, progress and interrupts.

Every function falls back to plain behaviour when ComfyUI is absent (tests, the command line), so the nodes run
under plain pytest. Nothing here is imported at pack import time beyond this module itself, which imports no torch
models and touches no network.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from musetalk_core.weights import files as model_files
from musetalk_core.hooks import RunHooks
from musetalk_core.types import Placement

log = logging.getLogger(__name__)

FOLDER_KEY = "musetalk"


def _folder_paths():
    try:
        import folder_paths  # type: ignore

        return folder_paths
    except Exception:  # noqa: BLE001 - absent outside ComfyUI
        return None


def _model_management():
    try:
        import comfy.model_management as mm  # type: ignore

        return mm
    except Exception:  # noqa: BLE001
        return None


def in_comfyui() -> bool:
    return _folder_paths() is not None and _model_management() is not None


def register_model_folder() -> None:
    """Add models/musetalk to ComfyUI's folder registry (appending keeps extra_model_paths.yaml entries)."""
    fp = _folder_paths()
    if fp is None:
        return
    fp.add_model_folder_path(FOLDER_KEY, os.path.join(fp.models_dir, FOLDER_KEY))


def models_search_dirs() -> List[Path]:
    """ComfyUI: every folder registered under 'musetalk'. Elsewhere: $MUSETALK_MODELS_DIR or ./models/musetalk."""
    fp = _folder_paths()
    if fp is not None:
        try:
            return [Path(p) for p in fp.get_folder_paths(FOLDER_KEY)]
        except Exception:  # noqa: BLE001 - key not registered yet
            pass
    return model_files.default_models_dirs()


def intermediate_device() -> torch.device:
    """Where IMAGE / MASK / AUDIO outputs live (ComfyUI: CPU unless --gpu-only)."""
    mm = _model_management()
    if mm is not None:
        return mm.intermediate_device()
    return torch.device("cpu")


def torch_device(choice: str):
    """The node's device choice; inside ComfyUI, 'auto' means the device ComfyUI computes on (honours --cpu)."""
    mm = _model_management()
    if choice == "auto" and mm is not None:
        return mm.get_torch_device()
    return choice


def run_hooks(total: int) -> RunHooks:
    """Progress bar + interrupt check for a loop of ``total`` units (ComfyUI's ProgressBar when present)."""
    mm = _model_management()
    try:
        import comfy.utils  # type: ignore

        bar = comfy.utils.ProgressBar(max(int(total), 1))
        advance = bar.update
    except Exception:  # noqa: BLE001
        advance = None
    check = mm.throw_exception_if_processing_interrupted if mm is not None else None
    hooks = RunHooks()
    if advance is not None:
        hooks.advance = advance
    if check is not None:
        hooks.check_interrupt = check
    return hooks


class ComfyPlacement(Placement):
    """Networks go through ComfyUI's model management: wrapped once in a ModelPatcher, loaded with load_models_gpu.

    ComfyUI then offloads them when another model needs the VRAM and reloads them when a MuseTalk stage runs again.
    """

    def __init__(self):
        self._patchers = {}

    def _patcher(self, module: torch.nn.Module, device: torch.device):
        import comfy.model_patcher  # type: ignore

        mm = _model_management()
        key = id(module)
        if key not in self._patchers:
            self._patchers[key] = comfy.model_patcher.ModelPatcher(
                module, load_device=device, offload_device=mm.unet_offload_device())
        return self._patchers[key]

    def activate(self, modules: Sequence[torch.nn.Module], device: torch.device) -> None:
        mm = _model_management()
        if mm is None or device.type == "cpu":
            super().activate(modules, device)
            return
        try:
            mm.load_models_gpu([self._patcher(m, device) for m in modules])
        except Exception as exc:  # noqa: BLE001 - never fail a run over memory bookkeeping
            log.warning("MuseTalk: ComfyUI model management refused the networks (%s); moving them directly.", exc)
            super().activate(modules, device)


def placement() -> Optional[Placement]:
    return ComfyPlacement() if in_comfyui() else None


def soft_empty_cache() -> None:
    mm = _model_management()
    if mm is not None:
        mm.soft_empty_cache()


def temp_directory() -> Optional[Path]:
    """ComfyUI's temp/ (emptied by ComfyUI at start-up); None outside ComfyUI (the system temp dir is used)."""
    fp = _folder_paths()
    if fp is not None:
        try:
            return Path(fp.get_temp_directory())
        except Exception:  # noqa: BLE001
            return None
    return None


def video_from_file(path) -> object:
    """A VIDEO for a file we wrote (BlendAndAssemble's temp mp4): ComfyUI's own VideoFromFile when ComfyUI is
    present (SaveVideo/PreviewVideo take it), else the pack's duck-typed equivalent with the same methods.

    The file is ours alone and lives exactly as long as the VIDEO object: when ComfyUI drops the cached output (or
    the process ends) the file is deleted, so finished runs do not pile up in temp/ until the next restart."""
    try:
        from comfy_api.input_impl import VideoFromFile  # type: ignore

        video = VideoFromFile(str(path))
    except Exception:  # noqa: BLE001 - absent outside ComfyUI
        from musetalk_core.io.video import FileVideo

        video = FileVideo(path)
    weakref.finalize(video, _remove_quietly, str(path))
    return video


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:  # already gone (a user cleaned temp/), or held open on Windows: ComfyUI empties temp/ at start
        pass


def video_from_components(images, audio, fps) -> object:
    """A VIDEO holding frames in memory (the IMAGE path's output), ComfyUI's VideoFromComponents when present."""
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    try:
        from comfy_api.input_impl import VideoFromComponents  # type: ignore
        from comfy_api.util import VideoComponents  # type: ignore

        return VideoFromComponents(VideoComponents(images=images, audio=audio, frame_rate=rate))
    except Exception:  # noqa: BLE001
        from musetalk_core.io.video import ComponentsVideo

        return ComponentsVideo(images, audio, rate)

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


def avatars_directory() -> Path:
    """Where real-time avatars are saved: ComfyUI's models/musetalk/avatars; elsewhere the library's default
    (<first models folder>/avatars)."""
    fp = _folder_paths()
    if fp is not None:
        return Path(fp.models_dir) / FOLDER_KEY / "avatars"
    from musetalk_core.realtime.avatar import default_avatars_dir

    return default_avatars_dir(models_search_dirs())


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
        from .video_types import FileVideo

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
    from musetalk_core.io.frames import exact_rate

    rate = exact_rate(fps)
    try:
        from comfy_api.input_impl import VideoFromComponents  # type: ignore
        from comfy_api.util import VideoComponents  # type: ignore

        return VideoFromComponents(VideoComponents(images=images, audio=audio, frame_rate=rate))
    except Exception:  # noqa: BLE001
        from .video_types import ComponentsVideo

        return ComponentsVideo(images, audio, rate)


# ---------------------------------------------------------------------------------------------------------------
# Running first, and telling the user on the node (not only in the server log)
# ---------------------------------------------------------------------------------------------------------------

def async_nodes_supported() -> bool:
    """False only inside a ComfyUI without async node functions (before 0.3.45; comfy_execution.utils came with
    them). Outside ComfyUI nothing calls FUNCTION but tests, which keep the plain functions."""
    try:
        import comfy_execution.utils  # type: ignore # noqa: F401

        return True
    except Exception:  # noqa: BLE001 - absent, or an older ComfyUI
        return False


def run_early(cls):
    """Class decorator: ComfyUI's executor (0.8: ExecutionList.ux_friendly_pick_node) runs a ready node whose
    function is a coroutine before every other ready node. Cheap nodes that can refuse a prompt (the audio length)
    use it so that they refuse it before face detection, which ComfyUI often picks first otherwise. The coroutine
    only calls the plain function: the work, and its result, stay the same. Outside ComfyUI, or in a ComfyUI
    without async nodes, the class is left as it is."""
    cls.RUNS_EARLY = True  # what tests/workflow_runner.py orders by outside ComfyUI
    if not async_nodes_supported():
        return cls
    plain = getattr(cls, cls.FUNCTION)

    async def run_first(self, **inputs):
        return plain(self, **inputs)

    cls.run_first = run_first
    cls.FUNCTION = "run_first"
    return cls


def _executing_node(server) -> Optional[str]:
    try:
        from comfy_execution.utils import get_executing_context  # type: ignore

        context = get_executing_context()
        if context is not None:
            return context.node_id
    except Exception:  # noqa: BLE001 - an older ComfyUI: the server's last node is the running one
        pass
    return getattr(server, "last_node_id", None)


def show_text(text: str) -> bool:
    """Shows ``text`` on the running node in the graph (ComfyUI's progress text, replacing what the node showed
    last time); outside ComfyUI it goes to the log. True when ComfyUI took it."""
    try:
        from server import PromptServer  # type: ignore

        server = PromptServer.instance
        node_id = _executing_node(server)
        if node_id is not None:
            server.send_progress_text(text, node_id, getattr(server, "client_id", None))
            return True
    except Exception:  # noqa: BLE001 - no ComfyUI server (tests, scripts), or one without progress text
        pass
    log.info("%s", text)
    return False


LIBRARY_LOGGER = "musetalk_core"
MAX_SHOWN_WARNINGS = 5


class NodeReport(logging.Handler):
    """What a node tells the user: a one-line summary plus every warning the library logged while the node ran
    (they stay in the server log too), shown on the node. Always shown after a run, so an old warning does not
    stay on a node whose new run went well.

        with comfy_bridge.NodeReport() as report:
            ...
        report.show("Face found in all 8 frames.")
    """

    def __init__(self):
        super().__init__(logging.WARNING)
        self.warnings: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.note(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad log call must not fail the node
            self.handleError(record)

    def note(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def warn(self, message: str) -> None:
        """A finding of the node itself: logged as a warning and shown."""
        log.warning("%s", message)
        self.note(message)

    def start(self) -> "NodeReport":
        logging.getLogger(LIBRARY_LOGGER).addHandler(self)
        return self

    def stop(self) -> None:
        logging.getLogger(LIBRARY_LOGGER).removeHandler(self)

    def __enter__(self) -> "NodeReport":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    def text(self, summary: str) -> str:
        shown = [f"⚠ {w}" for w in self.warnings[:MAX_SHOWN_WARNINGS]]
        if len(self.warnings) > MAX_SHOWN_WARNINGS:
            shown.append(f"({len(self.warnings) - MAX_SHOWN_WARNINGS} more warnings in the server log)")
        return "\n\n".join([summary, *shown])  # the node shows it as Markdown: one paragraph each

    def show(self, summary: str) -> str:
        text = self.text(summary)
        show_text(text)
        return text

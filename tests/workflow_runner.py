"""Run an API-format prompt (what POST /prompt takes) without ComfyUI, for the workflow tests.

Nodes run in ComfyUI 0.8's order (execution_order), each once per prompt, its outputs kept by node id. Before
anything runs the whole prompt is validated as ComfyUI does: widget values against INPUT_TYPES (combo choices,
INT/FLOAT ranges, required inputs), link types against the source's RETURN_TYPES, and each node's VALIDATE_INPUTS
(only the inputs it names, a linked one as None; ComfyUI's own checks skipped for those). Hidden PROMPT / UNIQUE_ID
inputs are passed; a coroutine function is awaited. Our nodes come from the pack's NODE_CLASS_MAPPINGS; the few
core nodes the example workflows use are replaced by small equivalents below (same ids, input names and output
order as ComfyUI v0.8), built on musetalk_core.io's file readers and writers and nodes.video_types.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch


class PromptError(AssertionError):
    """The prompt would not validate or run in ComfyUI."""


# ---------------------------------------------------------------------------------------------------------------
# Core node equivalents (test only). input dir / output dir are class attributes set by the runner.
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Video:
    images: torch.Tensor
    audio: Optional[dict]
    frame_rate: Fraction


class _Core:
    input_dir: Path = Path(".")
    output_dir: Path = Path(".")


class LoadVideo(_Core):
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": ([p.name for p in sorted(cls.input_dir.iterdir())], {"video_upload": True})}}

    def run(self, file):
        from nodes.video_types import FileVideo

        return (FileVideo(self.input_dir / file),)  # lazy and file-backed, as core VideoFromFile


class GetVideoComponents(_Core):
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",)}}

    def run(self, video):
        parts = video.get_components()
        return (parts.images, parts.audio, float(parts.frame_rate))


class LoadAudio(_Core):
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ([p.name for p in sorted(cls.input_dir.iterdir())], {"audio_upload": True})}}

    def run(self, audio):
        from musetalk_core.io import audio_file

        return (audio_file.read_audio(self.input_dir / audio),)


class LoadImage(_Core):
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ([p.name for p in sorted(cls.input_dir.iterdir())], {"image_upload": True})}}

    def run(self, image):
        from musetalk_core.io import image_file

        img = image_file.read_image(self.input_dir / image).float() / 255.0
        return (img, torch.zeros(img.shape[:3]))


class CreateVideo(_Core):
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0})},
                "optional": {"audio": ("AUDIO",)}}

    def run(self, images, fps, audio=None):
        from nodes.video_types import ComponentsVideo

        return (ComponentsVideo(images, audio, Fraction(fps)),)


class SaveVideo(_Core):
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",), "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                             "format": (["auto", "mp4"], {}), "codec": (["auto", "h264"], {})}}

    def run(self, video, filename_prefix, format, codec):
        from musetalk_core.io import video_write

        path = self.output_dir / f"{filename_prefix}_00001_.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(getattr(video, "get_stream_source", None)):  # a file: core SaveVideo copies its streams
            video.save_to(path)
        else:  # frames: as core SaveVideo, fps rounded to 1/1000
            parts = video.get_components()
            rate = Fraction(round(parts.frame_rate * 1000), 1000)
            video_write.write_video(path, parts.images, rate, parts.audio)
        return {"ui": {"images": [str(path)]}, "result": ()}


class ImageSharpen(_Core):
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0}),
                             "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0})}}

    def run(self, image, sharpen_radius, sigma, alpha):
        k = 2 * sharpen_radius + 1
        x = image.permute(0, 3, 1, 2)
        blur = torch.nn.functional.avg_pool2d(x, k, stride=1, padding=sharpen_radius, count_include_pad=False)
        return (((x + alpha * (x - blur)).clamp(0, 1)).permute(0, 2, 3, 1),)


CORE_EQUIVALENTS = {c.__name__: c for c in (LoadVideo, GetVideoComponents, LoadAudio, LoadImage, CreateVideo,
                                            SaveVideo, ImageSharpen)}


# ---------------------------------------------------------------------------------------------------------------
# The executor
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class RunResult:
    outputs: Dict[str, tuple] = field(default_factory=dict)   # node id -> its outputs
    ui: Dict[str, Any] = field(default_factory=dict)          # output node id -> ui dict
    runs: Counter = field(default_factory=Counter)            # class_type -> times executed
    saved: list = field(default_factory=list)                 # paths written by SaveVideo
    order: list = field(default_factory=list)                 # node ids in the order they ran


def _spec_type(spec) -> Any:
    return spec[0]


def _check_widget(node_id: str, class_type: str, name: str, spec, value) -> None:
    kind = _spec_type(spec)
    opts = spec[1] if len(spec) > 1 else {}
    where = f"node {node_id} ({class_type}) input '{name}'"
    if isinstance(kind, (list, tuple)):
        if value not in kind:
            raise PromptError(f"{where}: value {value!r} not in {list(kind)}")
    elif kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            raise PromptError(f"{where}: expected INT, got {value!r}")
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PromptError(f"{where}: expected FLOAT, got {value!r}")
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise PromptError(f"{where}: expected BOOLEAN, got {value!r}")
    elif kind == "STRING":
        if not isinstance(value, str):
            raise PromptError(f"{where}: expected STRING, got {value!r}")
    else:
        raise PromptError(f"{where}: a {kind} input must be a link, got the literal {value!r}")
    if kind in ("INT", "FLOAT"):
        if "min" in opts and value < opts["min"]:
            raise PromptError(f"{where}: {value} < min {opts['min']}")
        if "max" in opts and value > opts["max"]:
            raise PromptError(f"{where}: {value} > max {opts['max']}")


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _custom_validation(cls) -> set:
    """The inputs a node's VALIDATE_INPUTS names (ComfyUI passes those only)."""
    fn = getattr(cls, "VALIDATE_INPUTS", None)
    return set(inspect.getfullargspec(fn).args) - {"cls"} if fn is not None else set()


def _validate_node(node_id: str, node: dict, prompt: Mapping[str, dict], classes: Mapping[str, type]) -> None:
    cls = classes[node["class_type"]]
    types = cls.INPUT_TYPES()
    custom = _custom_validation(cls)
    specs = {**types.get("required", {}), **types.get("optional", {})}
    given = node.get("inputs", {})
    unknown = set(given) - set(specs)
    if unknown:
        raise PromptError(f"node {node_id} ({node['class_type']}): unknown input(s) {sorted(unknown)}")
    missing = set(types.get("required", {})) - set(given)
    if missing:
        raise PromptError(f"node {node_id} ({node['class_type']}): required input(s) missing {sorted(missing)}")
    for name, value in given.items():
        spec = specs[name]
        if _is_link(value):
            src_id, slot = value
            if src_id not in prompt:
                raise PromptError(f"node {node_id} input '{name}' links to missing node {src_id}")
            src_type = classes[prompt[src_id]["class_type"]].RETURN_TYPES[slot]
            want = _spec_type(spec)
            want_name = "COMBO" if isinstance(want, (list, tuple)) else want
            if src_type != want_name and "*" not in (src_type, want_name):
                raise PromptError(f"node {node_id} ({node['class_type']}) input '{name}' wants {want_name}, "
                                  f"node {src_id} output {slot} gives {src_type}")
        elif name not in custom:  # ComfyUI leaves the inputs VALIDATE_INPUTS names to it
            _check_widget(node_id, node["class_type"], name, spec, value)
    if custom:
        named = {name: None if _is_link(value) else value for name, value in given.items() if name in custom}
        verdict = cls.VALIDATE_INPUTS(**named)
        if verdict is not True:
            raise PromptError(f"node {node_id} ({node['class_type']}): custom validation failed: {verdict}")


def run_prompt(prompt: Mapping[str, dict], node_classes: Mapping[str, type], input_dir: Path, output_dir: Path,
               use_core_equivalents: bool = True, result: Optional[RunResult] = None) -> RunResult:
    """Validate, then run ``prompt``. ``result``: filled in as nodes run, so a caller sees what ran before a node
    failed (ComfyUI stops at the first failing node)."""
    classes = dict(CORE_EQUIVALENTS) if use_core_equivalents else {}
    classes.update(node_classes)
    _Core.input_dir, _Core.output_dir = Path(input_dir), Path(output_dir)
    for node_id, node in prompt.items():
        if node["class_type"] not in classes:
            raise PromptError(f"Cannot execute because node {node['class_type']} does not exist (node {node_id}).")

    # Validate the whole prompt first, as ComfyUI does before running anything; like ComfyUI's node_errors, every
    # node's problem is reported, not only the first.
    errors = []
    for node_id, node in prompt.items():
        try:
            _validate_node(node_id, node, prompt, classes)
        except PromptError as exc:
            errors.append(str(exc))
    if errors:
        raise PromptError("\n".join(errors))

    result = RunResult() if result is None else result
    instances: Dict[str, Any] = {}
    for node_id in execution_order(prompt, classes):
        node = prompt[node_id]
        cls = classes[node["class_type"]]
        kwargs = {name: result.outputs[value[0]][value[1]] if _is_link(value) else value
                  for name, value in node.get("inputs", {}).items()}
        for name, kind in cls.INPUT_TYPES().get("hidden", {}).items():
            if kind in ("PROMPT", "UNIQUE_ID"):
                kwargs[name] = dict(prompt) if kind == "PROMPT" else node_id
        instance = instances.setdefault(node_id, cls())
        out = getattr(instance, cls.FUNCTION)(**kwargs)
        if inspect.iscoroutine(out):
            out = asyncio.run(out)
        result.runs[node["class_type"]] += 1
        result.order.append(node_id)
        if isinstance(out, dict):
            result.ui[node_id] = out.get("ui", {})
            result.saved.extend(out.get("ui", {}).get("images", []))
            out = tuple(out.get("result", ()))
        if len(out) != len(cls.RETURN_TYPES):
            raise PromptError(f"node {node_id} ({node['class_type']}) returned {len(out)} values for "
                              f"{len(cls.RETURN_TYPES)} outputs")
        result.outputs[node_id] = tuple(out)
    return result


def execution_order(prompt: Mapping[str, dict], classes: Mapping[str, type]) -> list:
    """The order ComfyUI 0.8 runs a prompt's nodes in (comfy_execution/graph.py, ExecutionList): the nodes the
    output nodes need, found depth-first from each output; of the nodes whose inputs are ready, an output node or
    an async node first, then one feeding an output node, then one feeding a node that feeds one, else the first
    found. A node marked by comfy_bridge.run_early counts as async: it is one inside ComfyUI >= 0.3.45. ComfyUI
    takes the output nodes in set order; here in id order (one of the orders ComfyUI may take)."""
    outputs = [nid for nid, node in prompt.items() if getattr(classes[node["class_type"]], "OUTPUT_NODE", False)]
    if not outputs:
        raise PromptError("prompt has no output node (prompt_no_outputs)")
    pending: Dict[str, bool] = {}
    for output in sorted(outputs, key=int):
        stack = [output]
        while stack:
            node_id = stack.pop()
            if node_id not in pending:
                pending[node_id] = True
                stack += [v[0] for v in prompt[node_id].get("inputs", {}).values() if _is_link(v)]
    needs = {n: {v[0] for v in prompt[n].get("inputs", {}).values() if _is_link(v)} for n in pending}
    feeds = {n: [m for m in pending if n in needs[m]] for n in pending}

    def is_output(n):
        return bool(getattr(classes[prompt[n]["class_type"]], "OUTPUT_NODE", False))

    def is_async(n):
        cls = classes[prompt[n]["class_type"]]
        return inspect.iscoroutinefunction(getattr(cls, cls.FUNCTION)) or bool(getattr(cls, "RUNS_EARLY", False))

    order = []
    while pending:
        ready = [n for n in pending if not needs[n] & pending.keys()]
        if not ready:
            raise PromptError(f"cycle through nodes {sorted(pending)}")
        picked = next((n for n in ready if is_output(n) or is_async(n)), None) \
            or next((n for n in ready if any(is_output(m) for m in feeds[n])), None) \
            or next((n for n in ready if any(is_output(k) for m in feeds[n] for k in feeds[m])), None) \
            or ready[0]
        order.append(picked)
        del pending[picked]
    return order

"""Every setting of a run, declared once: name, type, default, range or choices, help text and the node it belongs to.

``LipsyncOptions`` holds a run's settings, each field named exactly as the node input that takes it, with the
node's default, and carrying its declaration (``Param``). From the declarations come the node widgets
(``node_input``), the command line flags and the batch job keys (musetalk_core.lipsync_args) and the one check of a
value (``check_value``), so a setting has the same default, range and text in the graph, the command line and batch
jobs. A leaf module (standard library and errors only), so that any part of the pack may import it.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import InputError

# the nodes whose inputs these are (graph node ids)
LOAD, FACES, AUDIO, LATENTS = "LoadMuseTalkModels", "FaceDetectAndParse", "WhisperAudioEncode", "VAEEncodeMasked"
UNET, BLEND, LATENTSYNC = "MuseTalkUNetInpaint", "BlendAndAssemble", "LatentSyncInpaint"
UINT64_MAX = 0xFFFFFFFFFFFFFFFF
WIDGET_TYPES = {bool: "BOOLEAN", int: "INT", float: "FLOAT", str: "STRING"}


@dataclass(frozen=True)
class Param:
    """One setting's declaration; its name and type are its LipsyncOptions field's."""

    default: Any
    node: Optional[str]               # the node taking it; None: the command line's choice between node chains
    help: str                         # the node's tooltip and the command line's help
    lo: Optional[float] = None        # the inclusive range of a number
    hi: Optional[float] = None
    step: Optional[float] = None      # the widget's step
    choices: Tuple[str, ...] = ()
    presets: bool = False             # the choices are the node's presets; the library takes more (and checks them)
    latentsync_default: Any = None    # the default where LatentSync runs (None: the same)
    follows: Optional[str] = None     # not given: this other setting's value, capped at ``hi`` (command line, jobs)
    node_name: str = ""               # the node input's name where it is not the field's
    name: str = ""
    kind: type = object

    def default_for(self, latentsync: bool) -> Any:
        return self.latentsync_default if latentsync and self.latentsync_default is not None else self.default


def _param(default: Any, node: Optional[str], help: str, **declaration: Any) -> Any:
    return field(default=default, metadata={"param": Param(default, node, help, **declaration)})


@dataclass
class LipsyncOptions:
    """Every node parameter, named exactly as the node input, with the node's default."""

    version: str = _param("v15", LOAD, choices=("v15", "v1"), help=(
        "v15: MuseTalk 1.5 (musetalkV15/unet.pth). v1: MuseTalk 1.0 (musetalk/pytorch_model.bin)."))
    precision: str = _param("auto", LOAD, choices=("auto", "fp32", "fp16", "bf16"), help=(
        "Network precision. auto: fp16 on GPU, fp32 on CPU (the reference's default; upstream LatentSync: fp16 on "
        "GPUs newer than compute capability 7, else fp32)."))
    device: str = _param("auto", LOAD, choices=("auto", "cuda", "cpu", "mps"), help=(
        "auto: CUDA, then MPS, then CPU."))
    landmark_backend: str = _param("torch", LOAD, choices=("torch", "mmpose"), help=(
        "torch: built-in DWPose, no OpenMMLab needed. mmpose: upstream's own mmpose inference (install with "
        "python install.py --with-mmpose)."))

    bbox_shift: int = _param(0, FACES, lo=-200, hi=200, help=(
        "Moves the crop's centre line (landmark 29) down (+) or up (-) in pixels: positive opens the mouth more. "
        "The bbox_range output suggests a range. 0 = reference."))
    extra_margin: int = _param(10, FACES, lo=0, hi=200, help=(
        "v1.5 only: pixels added below the chin to the crop box (the reference uses 10)."))
    parsing_mode: str = _param("auto", FACES, choices=("auto", "jaw", "raw", "neck"), help=(
        "Which parsed region is blended. auto: jaw for v15, raw for v1 (the reference). jaw: skin grown down over "
        "the jaw, cheeks trimmed. raw: skin+mouth+lips. neck: raw plus the neck."))
    left_cheek_width: int = _param(90, FACES, lo=0, hi=256, help=(
        "jaw mode: width (in 512-px parsing space) of the central band kept dilated on the left; outside it the "
        "mask is eroded. 90 = reference CLI/app."))
    right_cheek_width: int = _param(90, FACES, lo=0, hi=256, help="jaw mode: the same on the right side.")
    face_selection: str = _param("highest_score", FACES, choices=("highest_score", "largest", "leftmost",
                                                                  "rightmost"), help=(
        "Which face to use when several are found. highest_score = reference."))
    speaker_selection: str = _param("default", FACES, help=(
        "Which face speaks this audio. default: the face_selection pick in each frame (the reference). auto: the "
        "face whose mouth movement best follows the audio's loudness. track N: face track N (tracks are numbered "
        "from 0, left to right where each face first appears). point X Y [FRAME]: the face whose box holds pixel "
        "(X, Y) in that source frame (default 0). Every choice but default tracks the faces and leaves the others "
        "as they are."))
    landmark_region: str = _param("full_frame", FACES, choices=("full_frame", "face_region"), help=(
        "full_frame: landmarks on the whole frame (reference). face_region: on the detected face's area (sharper "
        "for small faces in big frames)."))
    box_smoothing: float = _param(0.0, FACES, lo=0.0, hi=1.0, step=0.05, help=(
        "Smooths the crop boxes over time against jitter (0 = off, the reference; 1 = strongest, a 5-frame "
        "Gaussian)."))
    detector_scale: float = _param(1.0, FACES, lo=0.1, hi=1.0, step=0.05, help=(
        "Runs the face detector on frames scaled by this factor (faster on large videos). 1 = full resolution = "
        "reference."))
    face_batch_size: int = _param(8, FACES, lo=1, hi=64, node_name="batch_size", follows="batch_size", help=(
        "Frames per batch for detection, landmarks and parsing (more = faster, more VRAM)."))

    audio_padding_left: int = _param(2, AUDIO, lo=0, hi=10, help=(
        "Audio context before each frame, in 2-step (40 ms) units. Keep 2: the model was trained with 2."))
    audio_padding_right: int = _param(2, AUDIO, lo=0, hi=10, help=(
        "Audio context after each frame, in 2-step (40 ms) units. Keep 2: the model was trained with 2."))
    feature_mode: str = _param("reference", AUDIO, choices=("reference", "v1.0-original"),
                               latentsync_default="v1.0-original", help=(
        "reference: current upstream features (used for v1.5 and upstream's v1). v1.0-original: the features the "
        "v1.0 model was trained with (OpenAI Whisper style: global mel normalisation, layer 4 before the final "
        "norm), the only ones LatentSync takes."))
    silence_threshold_db: float = _param(-45.0, AUDIO, lo=-120.0, hi=0.0, step=0.5, help=(
        "A frame is silent when the RMS level of the audio its window covers is below this (dBFS). Used by "
        "BlendAndAssemble's silence_handling."))
    audio_segments: str = _param("reference", AUDIO, choices=("reference", "overlapping"), help=(
        "How audio longer than 30 s is cut for Whisper. reference: back-to-back 30 s segments, as upstream (frames "
        "at each 30 s edge get states computed without the audio on the other side). overlapping: 30 s segments "
        "every 20 s; each frame takes its window from the segment it sits furthest inside (about 5 s or more of "
        "audio on each side where the track has it), for 1.5x the encoder work. Audio of 30 s or less is encoded "
        "the same either way."))

    latent_mode: str = _param("sample", LATENTS, choices=("sample", "mean"), help=(
        "sample: the reference (mean + std * noise), made reproducible by the seed. mean: the distribution's mean, "
        "deterministic (what MuseTalk's training used)."))
    seed: int = _param(0, LATENTS, lo=0, hi=UINT64_MAX, latentsync_default=1247, help=(
        "Noise seed: of latent_mode 'sample' (MuseTalk), of the initial noise and the VAE draws (LatentSync; 1247 = "
        "upstream). Each frame's noise depends only on the seed and its frame number, drawn on the CPU, so batch "
        "size and device do not change the result."))
    vae_batch_size: int = _param(8, LATENTS, lo=1, hi=64, node_name="batch_size", follows="batch_size", help=(
        "Faces encoded per VAE pass (each face is encoded twice). Lower it if you run out of GPU memory; the "
        "result does not depend on it."))

    frame_mapping: str = _param("bounce", UNET, choices=("bounce", "loop", "once_hold", "cut_off", "silence", "remap",
                                                         "ping_pong"), help=(
        "How video and audio lengths fit (which source frame each output frame shows, and how long the output is). "
        "bounce: the video forward then backward, repeating, as long as the audio (the reference). loop: restart "
        "from the first frame. once_hold: play once, then hold the last frame. cut_off: play once; the output "
        "ends with the shorter of video and audio. silence: the whole video once; audio shorter than it is padded "
        "with silence (mouths at rest there), longer audio is cut. remap: the video time-stretched to the audio's "
        "length. ping_pong: the old name of bounce."))
    frame_offset: int = _param(0, UNET, lo=-10000, hi=10000, help=(
        "Shift the video against the audio by this many frames: output frame i uses source position i + offset. "
        "Use it to fix an audio-video delay."))
    batch_size: int = _param(8, UNET, lo=1, hi=256, help=(
        "Output frames per UNet/VAE pass. Higher is faster on a large GPU; lower it if you run out of memory. As "
        "upstream's, the result follows it by float rounding (the t = 0 time embedding and the kernels' sums are "
        "computed per batch): the same batch size always gives the same faces, and 8 (upstream's default) "
        "reproduces upstream."))
    decoder: str = _param("vae", UNET, choices=("vae", "taesd"), help=(
        "vae: the exact sd-vae decoder (the reference). taesd: the tiny TAESD decoder, about 8x faster than "
        "sd-vae's on an H100 (UNet + decode 2.2x), approximate (needs models/musetalk/taesd/taesd_decoder.safetensors: "
        "python install.py --download-models taesd)."))
    acceleration: str = _param("off", UNET, choices=("off", "cuda_graphs", "cuda_graphs+compile"), presets=True,
                               help=(
        "GPU speed-ups. off: as the reference. cuda_graphs: faster at small batch sizes (UNet + decode +16% at "
        "batch 8 on an H100); meant to give off's exact output (a short last batch runs without the graph; not yet "
        "checked on a GPU, see BENCHMARKS.md); on a CPU it changes nothing. cuda_graphs+compile: about 2x faster "
        "UNet + decode at batch 32 on an H100 after a one-time compile of about a minute; rounding differs "
        "slightly (bf16-level). See BENCHMARKS.md. The command line takes any '+' combination of channels_last, "
        "cudnn_benchmark, cuda_graphs and compile."))

    blur_factor: float = _param(0.05, BLEND, lo=0.0, hi=0.5, step=0.005, help=(
        "Mask edge softness: Gaussian kernel = blur_factor x crop size. 0.05 = MuseTalk's normal inference, "
        "0.1 = its real-time mode, 0 = hard edge."))
    upper_boundary_ratio: float = _param(0.5, BLEND, lo=0.0, hi=1.0, step=0.05, help=(
        "Only the part of the blend box below this fraction of its height is replaced (0.5 = reference: the lower "
        "half, mouth and jaw)."))
    silence_handling: bool = _param(False, BLEND, help=(
        "Show the original mouth where the audio is silent (WhisperAudioEncode's silence threshold), with a short "
        "cross-fade. Off = reference behaviour."))
    silence_fade_frames: int = _param(3, BLEND, lo=0, hi=25, help=(
        "Frames of cross-fade on each side of a silent stretch (silence handling)."))
    chunk_size: int = _param(16, BLEND, lo=1, hi=256, help=(
        "Frames composited at a time; lower it if the GPU runs out of memory on large frames. Does not change the "
        "result."))

    generator: str = _param("musetalk", None, choices=("musetalk", "latentsync15", "latentsync16"), help=(
        "musetalk: MuseTalk's one-step UNet (--version). latentsync15 / latentsync16: LatentSync's diffusion "
        "UNet3D (256 / 512 px faces; python install.py --download-models latentsync15); face detection and "
        "Whisper still come from the MuseTalk v15 files."))
    inference_steps: int = _param(20, LATENTSYNC, lo=1, hi=100, help=(
        "Denoising steps per window (20 = upstream, with ddim). Fewer is faster and blurrier; the time is about "
        "proportional to it."))
    guidance_scale: float = _param(1.5, LATENTSYNC, lo=0.0, hi=10.0, step=0.1, help=(
        "Classifier-free guidance on the audio (1.5 = upstream's scripts). 1 or less skips the unconditional pass "
        "(twice as fast, weaker lip sync)."))
    window_length: int = _param(16, LATENTSYNC, lo=1, hi=24, help=(
        "Frames denoised together (16 = what LatentSync was trained on)."))
    scheduler: str = _param("ddim", LATENTSYNC, choices=("ddim", "dpm_solver++"), help=(
        "The sampler of each window's denoising. ddim: upstream's (deterministic DDIM). dpm_solver++: "
        "DPM-Solver++ (2nd order, multistep) on the same noise schedule; users report 10 of its steps about 40 % "
        "faster than 20 DDIM steps with similar quality (LatentSync #290): set inference_steps to 10. An opt-in: "
        "its faces differ from ddim's."))
    alignment: str = _param("dwpose", LATENTSYNC, choices=("dwpose", "insightface"), help=(
        "Where the three alignment points come from. dwpose: FaceDetectAndParse's landmarks (no extra install). "
        "insightface: upstream's detector, exact (pip install insightface onnxruntime; models in "
        "models/musetalk/latentsync/auxiliary/models/buffalo_l)."))
    insightface_root: Optional[str] = None  # not a setting: where alignment 'insightface' finds its models

    def updated(self, **changes: Any) -> "LipsyncOptions":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}")
        return LipsyncOptions(**{**asdict(self), **changes})


PARAMS: Dict[str, Param] = {f.name: replace(f.metadata["param"], name=f.name, kind=type(f.default))
                            for f in fields(LipsyncOptions) if "param" in f.metadata}


def range_error(label: str, value: Any, lo: Any, hi: Any) -> str:
    return f"'{label}' = {value} is outside {lo}..{hi}."


def check_value(name: str, value: Any, label: Optional[str] = None) -> Any:
    """``value`` if the setting ``name`` allows it, else InputError naming it (as ``label``: how the caller's user
    knows it) and what is allowed."""
    param, label = PARAMS[name], label or name
    if param.choices and not param.presets:
        if value not in param.choices:
            raise InputError(f"'{label}' = {value!r} is not one of {', '.join(param.choices)}.")
    elif param.kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"'{label}' = {value!r} is not true or false.")
    elif param.kind in (int, float):
        kinds = numbers.Integral if param.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise InputError(f"'{label}' = {value!r} is not {'an integer' if param.kind is int else 'a number'}.")
        if not param.lo <= value <= param.hi:  # NaN too
            raise InputError(range_error(label, value, param.lo, param.hi))
    return value


def check_options(options: LipsyncOptions) -> LipsyncOptions:
    for name in PARAMS:
        check_value(name, getattr(options, name))
    return options


def resolve(given: Mapping[str, Any]) -> LipsyncOptions:
    """Options from what a command line or a job line gives (None or absent: not given), checked. A setting not
    given takes its declared default (LatentSync's where it runs), or the value of the one it follows."""
    unknown = sorted(set(given) - {f.name for f in fields(LipsyncOptions)})
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}")
    latentsync = given.get("generator") not in (None, "musetalk")
    values = {k: v for k, v in given.items() if v is not None}
    for param in PARAMS.values():
        if param.name not in values and not param.follows:
            values[param.name] = param.default_for(latentsync)
    for param in PARAMS.values():
        if param.name not in values:
            values[param.name] = min(values[param.follows], param.hi)
    return check_options(LipsyncOptions(**values))


def node_input(name: str, latentsync: bool = False) -> Tuple[Any, Dict[str, Any]]:
    """The node's INPUT_TYPES entry for a setting (LatentSync's default where ``latentsync``)."""
    param = PARAMS[name]
    spec: Dict[str, Any] = {"default": param.default_for(latentsync)}
    if param.lo is not None:
        spec.update(min=param.lo, max=param.hi)
    if param.step is not None:
        spec["step"] = param.step
    spec["tooltip"] = param.help
    return (list(param.choices) if param.choices else WIDGET_TYPES[param.kind]), spec

"""Command line: ``python -m musetalk_core lipsync --video IN --audio IN --output OUT.mp4 [options]``.

``lipsync`` runs the streaming core (musetalk_core.pipeline.lipsync_stream; musetalk_core.generators.latentsync.stream for
``--generator latentsync15|16``): the stages the nodes run, chunk by chunk, so memory does not grow with the video's
length; ``batch`` runs the same core job by job (musetalk_core.batch). Options are the node inputs with dashes
(``--bbox-shift`` = FaceDetectAndParse's ``bbox_shift``; musetalk_core.options.LipsyncOptions holds them with the
nodes' defaults), and the networks are loaded by musetalk_core.pipeline.load. Video and audio are read and the
result written with PyAV (H.264 + AAC in one pass, exact fps, no system ffmpeg, no temporary images). The output
appears only when the run succeeded (written to a temporary file in the output folder, then renamed).

Exit codes: 0 success, 2 bad input / missing model files / bad options, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

from .errors import InputError, MuseTalkError
from .hooks import RunHooks
from .weights.loading import DEVICES, LANDMARK_BACKENDS, PRECISIONS
from .options import LipsyncOptions
from .types import VERSIONS
from .io.video import X264_PRESETS

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130

_D = LipsyncOptions()
GENERATORS = ("musetalk", "latentsync15", "latentsync16")
LATENTSYNC_SEED = 1247


def _fps(text: str) -> Fraction:
    try:
        value = Fraction(text)  # "25", "29.97", "30000/1001"
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame rate (examples: 25, 29.97, 30000/1001)") from None
    if not 0 < value <= 240:
        raise argparse.ArgumentTypeError(f"fps must be in (0, 240], got {text}")
    return value


def _ranged(kind, lo, hi):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside {lo}..{hi}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"'{text}' is not true/false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musetalk_core",
                                     description="MuseTalk lip-sync without ComfyUI (same pipeline as the nodes).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lipsync", help="video (or still image) + audio -> lip-synced mp4",
                       description="Lip-sync a video or a still image to an audio track. Options are the node "
                                   "inputs (bbox_shift -> --bbox-shift). Exit code 2 on bad input.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_lipsync_arguments(p)
    add_batch_parser(sub)
    return parser


def add_lipsync_arguments(p: argparse.ArgumentParser, models_dir: bool = True) -> None:
    """The lipsync options (also the keys of a batch job line: musetalk_core.batch.jobs)."""
    io = p.add_argument_group("input / output")
    src = io.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="source video (its own audio track is ignored)")
    src.add_argument("--image", type=Path, help="a single photo instead of a video (use --fps)")
    io.add_argument("--audio", type=Path, required=True, help="driving audio (wav, mp3, m4a, or a video's sound)")
    io.add_argument("--output", "-o", type=Path, required=True, help="output .mp4/.mov/.mkv (its folder must exist)")
    io.add_argument("--fps", type=_fps, default=None,
                    help="frame rate for --image (default 25); a video keeps its own exact rate")
    io.add_argument("--crf", type=_ranged(int, 0, 51), default=18, help="H.264 quality (lower = better, larger)")
    io.add_argument("--preset", choices=X264_PRESETS, default="medium",
                    help="H.264 encoder speed: faster presets encode quicker into larger files at the same --crf; "
                         "the pixels lip-synced are the same (default medium)")
    m = p.add_argument_group("models (LoadMuseTalkModels)")
    if models_dir:
        io.add_argument("--no-progress", action="store_true", help="no progress bars")
        m.add_argument("--models-dir", type=Path, action="append", default=None,
                       help="models/musetalk folder (repeatable; default $MUSETALK_MODELS_DIR or ./models/musetalk)")
    m.add_argument("--version", choices=VERSIONS, default=_D.version)
    m.add_argument("--precision", choices=PRECISIONS, default=_D.precision)
    m.add_argument("--device", choices=DEVICES, default=_D.device)
    m.add_argument("--landmark-backend", choices=LANDMARK_BACKENDS, default=_D.landmark_backend)

    f = p.add_argument_group("faces (FaceDetectAndParse)")
    f.add_argument("--bbox-shift", type=_ranged(int, -200, 200), default=_D.bbox_shift)
    f.add_argument("--extra-margin", type=_ranged(int, 0, 200), default=_D.extra_margin, help="v15 only")
    f.add_argument("--parsing-mode", choices=["auto", "jaw", "raw", "neck"], default=_D.parsing_mode)
    f.add_argument("--left-cheek-width", type=_ranged(int, 0, 256), default=_D.left_cheek_width)
    f.add_argument("--right-cheek-width", type=_ranged(int, 0, 256), default=_D.right_cheek_width)
    f.add_argument("--face-selection", choices=["highest_score", "largest", "leftmost", "rightmost"],
                   default=_D.face_selection)
    f.add_argument("--landmark-region", choices=["full_frame", "face_region"], default=_D.landmark_region)
    f.add_argument("--box-smoothing", type=_ranged(float, 0.0, 1.0), default=_D.box_smoothing)
    f.add_argument("--detector-scale", type=_ranged(float, 0.1, 1.0), default=_D.detector_scale)

    a = p.add_argument_group("audio (WhisperAudioEncode)")
    a.add_argument("--audio-padding-left", type=_ranged(int, 0, 10), default=_D.audio_padding_left)
    a.add_argument("--audio-padding-right", type=_ranged(int, 0, 10), default=_D.audio_padding_right)
    a.add_argument("--feature-mode", choices=["reference", "v1.0-original"], default=None,
                   help=f"default: {_D.feature_mode} for MuseTalk, v1.0-original (the only one it takes) for LatentSync")
    a.add_argument("--silence-threshold-db", type=_ranged(float, -120.0, 0.0), default=_D.silence_threshold_db)

    v = p.add_argument_group("latents (VAEEncodeMasked)")
    v.add_argument("--latent-mode", choices=["sample", "mean"], default=_D.latent_mode)
    v.add_argument("--seed", type=_ranged(int, 0, 0xFFFFFFFFFFFFFFFF), default=None,
                   help=f"VAE draw seed (default {_D.seed}); with LatentSync its noise seed (default "
                        f"{LATENTSYNC_SEED}, upstream's)")

    g = p.add_argument_group("generator (MuseTalkUNetInpaint or LoadLatentSyncModel + LatentSyncInpaint)")
    g.add_argument("--generator", choices=GENERATORS, default=_D.generator,
                   help="musetalk: MuseTalk's one-step UNet (--version). latentsync15 / latentsync16: LatentSync's "
                        "diffusion UNet3D (256 / 512 px faces; python install.py --download-models latentsync15); "
                        "face detection and Whisper still come from the MuseTalk v15 files")
    g.add_argument("--inference-steps", type=_ranged(int, 1, 100), default=_D.inference_steps,
                   help="LatentSync: DDIM steps per window")
    g.add_argument("--guidance-scale", type=_ranged(float, 0.0, 10.0), default=_D.guidance_scale,
                   help="LatentSync: classifier-free guidance on the audio (<= 1: no unconditional pass)")
    g.add_argument("--window-length", type=_ranged(int, 1, 24), default=_D.window_length,
                   help="LatentSync: frames denoised together")
    g.add_argument("--alignment", choices=["dwpose", "insightface"], default=_D.alignment,
                   help="LatentSync: where the three alignment points come from (insightface: optional package, "
                        "models in <models>/latentsync/auxiliary/models/buffalo_l)")
    g.add_argument("--unet-config", default=None, metavar="YAML",
                   help="LatentSync: an upstream UNet config file (configs/unet/stage1.yaml, stage2_efficient.yaml, "
                        "...; absolute or relative to the models folder) instead of the version's own stage2 config")

    u = p.add_argument_group("generation (MuseTalkUNetInpaint)")
    u.add_argument("--frame-mapping", choices=["ping_pong", "loop", "once_hold"], default=_D.frame_mapping)
    u.add_argument("--frame-offset", type=_ranged(int, -10000, 10000), default=_D.frame_offset)
    u.add_argument("--batch-size", type=_ranged(int, 1, 256), default=_D.batch_size,
                   help="UNet batch (the output follows it by float rounding, as upstream's does: 8 = upstream's "
                        "default run); also the face-detection and VAE batch (capped at 64) unless given below")
    u.add_argument("--decoder", choices=["vae", "taesd"], default=_D.decoder,
                   help="vae: exact (default); taesd: tiny decoder, much faster, approximate (download: "
                        "python install.py --download-models taesd)")
    u.add_argument("--acceleration", default=_D.acceleration,
                   help="GPU speed-ups: off (default) or flags joined by '+': channels_last, cudnn_benchmark, "
                        "cuda_graphs, compile (e.g. channels_last+cuda_graphs)")
    u.add_argument("--face-batch-size", type=_ranged(int, 1, 64), default=None,
                   help="FaceDetectAndParse batch_size (default: --batch-size)")
    u.add_argument("--vae-batch-size", type=_ranged(int, 1, 64), default=None,
                   help="VAEEncodeMasked batch_size (default: --batch-size)")

    b = p.add_argument_group("blending (BlendAndAssemble)")
    b.add_argument("--blur-factor", type=_ranged(float, 0.0, 0.5), default=_D.blur_factor)
    b.add_argument("--upper-boundary-ratio", type=_ranged(float, 0.0, 1.0), default=_D.upper_boundary_ratio)
    b.add_argument("--silence-handling", type=_bool, nargs="?", const=True, default=_D.silence_handling,
                   help="keep the source mouth on silent frames (true/false)")
    b.add_argument("--silence-fade-frames", type=_ranged(int, 0, 25), default=_D.silence_fade_frames)
    b.add_argument("--chunk-size", type=_ranged(int, 1, 256), default=_D.chunk_size)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def add_batch_parser(sub) -> None:
    p = sub.add_parser("batch", help="many jobs from a JOBS.jsonl file, in this process or on a Ray cluster",
                       description="Run every job of JOBS.jsonl (one JSON object per line: video or image, audio, "
                                   "output and any lipsync option under its name, e.g. {\"video\": \"a.mp4\", "
                                   "\"audio\": \"a.wav\", \"output\": \"a_synced.mp4\", \"bbox_shift\": 5}). "
                                   "Finished outputs are skipped on a rerun. Exit code 0 when every job succeeded, "
                                   "3 when some failed (see the summary), 2 when the batch itself is unusable.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("jobs", type=Path, help="JOBS.jsonl (relative paths in it are relative to its folder)")
    p.add_argument("--output-dir", type=Path, required=True, help="where outputs, summary and work files go")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run on Ray: 'auto' (RAY_ADDRESS or a new local cluster) or a cluster address; "
                        "needs the optional 'ray' package (python install.py --with-ray)")
    p.add_argument("--workers", type=_ranged(int, 1, 4096), default=None,
                   help="Ray workers (default: one per GPU in the cluster, else 1); each loads the networks once")
    p.add_argument("--split-seconds", type=_positive_float, default=None,
                   help="cut jobs longer than this into segments of about this length (whole chunks), run on any "
                        "worker and joined seamlessly (frames identical to an unsplit run)")
    p.add_argument("--summary", type=Path, default=None, help="summary JSONL (default OUTPUT_DIR/summary.jsonl)")
    p.add_argument("--models-dir", type=Path, action="append", default=None,
                   help="models/musetalk folder (repeatable; default $MUSETALK_MODELS_DIR or ./models/musetalk); "
                        "on a cluster, a path every worker sees")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> LipsyncOptions:
    names = {f for f in LipsyncOptions.__dataclass_fields__} - {"face_batch_size", "vae_batch_size",
                                                                "insightface_root"}
    values = {name: getattr(args, name) for name in names}
    values["face_batch_size"] = args.face_batch_size or min(args.batch_size, 64)
    values["vae_batch_size"] = args.vae_batch_size or min(args.batch_size, 64)
    latentsync = args.generator != "musetalk"
    if args.seed is None:
        values["seed"] = LATENTSYNC_SEED if latentsync else _D.seed
    if args.feature_mode is None:
        values["feature_mode"] = "v1.0-original" if latentsync else _D.feature_mode
    if latentsync:
        from .generators.latentsync.stream import insightface_root

        values["insightface_root"] = insightface_root(args.models_dir or _default_dirs())
    return LipsyncOptions(**values)


def _default_dirs():
    from .weights import files as model_files

    return model_files.default_models_dirs()


class _Bars:
    """A tqdm bar per stage, driven through RunHooks (the library never sees tqdm)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, stage: str, total: int) -> RunHooks:
        self.close()
        _STAGE[0] = stage  # for an out-of-memory message
        if not self.enabled:
            return RunHooks()
        from tqdm import tqdm

        self.bar = tqdm(total=max(int(total), 1), desc=f"MuseTalk {stage}", unit="frame", leave=True,
                        dynamic_ncols=True, file=sys.stderr)
        return RunHooks(advance=self.bar.update)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _err(message: str) -> None:
    print(f"musetalk: error: {message}", file=sys.stderr)


_STAGE = [None]  # what the run is doing (out_of_memory's stage names), for an out-of-memory message


def run_lipsync(args: argparse.Namespace) -> int:
    """Streams: the video is decoded chunk by chunk, lip-synced and encoded as it goes (musetalk_core.pipeline),
    so memory does not grow with its length. Every input is checked before a model is loaded or a frame decoded."""
    from .weights import files as model_files
    from .io import video as video_io
    from .pipeline import load
    from .io.sources import TensorSource
    from .pipeline import check_options, lipsync_stream

    if args.video is not None and args.fps is not None:
        raise InputError("--fps applies to --image only; a video keeps its own frame rate.")
    _STAGE[0] = "inputs"
    options = options_from_args(args)
    check_options(options)
    if args.video is not None:
        source = video_io.open_video(args.video)  # demuxes only: frame count and timestamps, nothing decoded
        fps = source.fps
    else:
        source, fps = TensorSource(video_io.read_image(args.image)), args.fps or Fraction(25)
    try:
        audio = video_io.read_audio(args.audio)
        video_io.check_audio_duration(audio, fps, "--audio")
        output = video_io.check_output_path(args.output)
        video_io.refuse_overwriting_inputs(output, {"--video": args.video, "--image": args.image,
                                                    "--audio": args.audio})
        dirs = args.models_dir or model_files.default_models_dirs()
        bars = _Bars(not args.no_progress)
        try:
            height, width = source.frame_size
            rate, channels = video_io.audio_layout(audio)
            _STAGE[0] = "models"
            if options.generator == "musetalk":
                models = load(dirs, options)
                run = lambda sink: lipsync_stream(models, source, audio, float(fps), options, sink, progress=bars)
            else:  # the same stages as the LatentSync graph
                from .generators.latentsync.stream import latentsync_stream, load_for_latentsync

                models, ls_models = load_for_latentsync(dirs, options, unet_config=args.unet_config)
                run = lambda sink: latentsync_stream(models, ls_models, source, audio, float(fps), options, sink,
                                                     progress=bars)
            with video_io.VideoWriter(output, fps, width, height, args.crf, rate, channels,
                                      preset=args.preset) as writer:
                result = run(writer.write)
                writer.finish(result.audio)
        finally:
            bars.close()
    finally:
        source.close()
    print(f"Wrote {output} ({result.frame_count} frames at {float(fps):.3f} fps, "
          f"{result.frame_count / float(fps):.2f} s).")
    if not bool(result.faces.has_face.any()):
        print("No face was found in the video: it was passed through unchanged with the new audio "
              "(see the warning above).")
    return EXIT_OK


@contextmanager
def _warnings_to_stderr():
    """The library's warnings (e.g. "no face was found ...") on stderr as 'musetalk: warning: ...' for this run."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("musetalk: warning: %(message)s"))
    logger = logging.getLogger("musetalk_core")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (kill, a scheduler's time limit, a container stop) ends the run like Ctrl-C: no partial output, the
    temporary material removed, exit 130. Only where Python's default handler is in place (main thread)."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad options, 0 on --help
        return int(exc.code or 0)
    _STAGE[0] = None
    try:
        with _warnings_to_stderr(), _terminate_as_interrupt():
            if args.command == "lipsync":
                return run_lipsync(args)
            if args.command == "batch":
                from .batch.run import run_batch

                return run_batch(args)
    except MuseTalkError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted; nothing was written.")
        return EXIT_INTERRUPTED
    except Exception as exc:  # memory running out, in any of its shapes: what ran out where, and what to lower
        from .out_of_memory import is_out_of_memory, out_of_memory_error

        if not is_out_of_memory(exc):
            raise
        _err(str(out_of_memory_error(_STAGE[0], exc, nothing_written=args.command == "lipsync")))
        return EXIT_BAD_INPUT
    parser.print_help()
    return EXIT_BAD_INPUT

"""Command line: ``python -m musetalk_core lipsync --video IN --audio IN --output OUT.mp4 [options]``.

``lipsync`` runs the pipeline core (musetalk_core.pipeline.lipsync_stream, with the generator ``--generator``
names): the stages the nodes run, chunk by chunk, so memory does not grow with the video's length; ``batch`` runs
the same core job by job (musetalk_core.batch). Options are the node inputs with dashes
(``--bbox-shift`` = FaceDetectAndParse's ``bbox_shift``; each declared once, in
musetalk_core.options), and the networks are loaded by musetalk_core.pipeline.load_run. Video and audio are read and the
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
from .lipsync_args import HelpFormatter, add_lipsync_arguments, options_from_args, ranged

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musetalk_core",
                                     description="MuseTalk lip-sync without ComfyUI (same pipeline as the nodes).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lipsync", help="video (or still image) + audio -> lip-synced mp4",
                       description="Lip-sync a video or a still image to an audio track. Options are the node "
                                   "inputs (bbox_shift -> --bbox-shift). Exit code 2 on bad input.",
                       formatter_class=HelpFormatter)
    add_lipsync_arguments(p)
    add_batch_parser(sub)
    from .realtime.avatar_cli import add_avatar_parser
    from .realtime.serve_cli import add_serve_parser

    add_avatar_parser(sub)
    add_serve_parser(sub)
    return parser


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
                       formatter_class=HelpFormatter)
    p.add_argument("jobs", type=Path, help="JOBS.jsonl (relative paths in it are relative to its folder)")
    p.add_argument("--output-dir", type=Path, required=True, help="where outputs, summary and work files go")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run on Ray: 'auto' (RAY_ADDRESS or a new local cluster) or a cluster address; "
                        "needs the optional 'ray' package (python install.py --with-ray)")
    p.add_argument("--workers", type=ranged(int, 1, 4096, "workers"), default=None,
                   help="Ray workers (default: one per GPU in the cluster, else 1); each loads the networks once")
    p.add_argument("--split-seconds", type=_positive_float, default=None,
                   help="cut jobs longer than this into segments of about this length (whole chunks), run on any "
                        "worker and joined seamlessly (frames identical to an unsplit run)")
    p.add_argument("--summary", type=Path, default=None, help="summary JSONL (default OUTPUT_DIR/summary.jsonl)")
    p.add_argument("--models-dir", type=Path, action="append", default=None,
                   help="models/musetalk folder (repeatable; default $MUSETALK_MODELS_DIR or ./models/musetalk); "
                        "on a cluster, a path every worker sees")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    from .io import output_file, video_write
    from .pipeline import check_options, lipsync_stream, load_run

    if args.fps is not None and args.image is None:
        raise InputError(f"--fps applies to --image only; {'an avatar' if args.avatar else 'a video'} keeps its "
                         "own frame rate.")
    _STAGE[0] = "inputs"
    dirs = args.models_dir or model_files.default_models_dirs()
    source, fps, options, avatar = _source(args, dirs)
    try:
        check_options(options)
        audio, speakers, audio_inputs = _voices(args, fps)
        output = output_file.check_output_path(args.output)
        output_file.refuse_overwriting_inputs(output, {"--video": args.video, "--image": args.image,
                                                       **audio_inputs})
        bars = _Bars(not args.no_progress)
        try:
            height, width = source.frame_size
            rate, channels = _layout(audio, speakers)
            _STAGE[0] = "models"
            prepared = None
            if avatar is None:
                models, generator = load_run(dirs, options, unet_config=args.unet_config)
            else:
                from .generators.musetalk.generator import MuseTalkGenerator
                from .realtime.avatar_lipsync import avatar_material, load_avatar_networks

                models = load_avatar_networks(dirs, options)
                generator, prepared = MuseTalkGenerator(models, options), avatar_material(avatar, models)
            run = lambda sink: lipsync_stream(models, source, audio, float(fps), options, sink, progress=bars,
                                              generator=generator, speakers=speakers, prepared_video=prepared)
            with video_write.VideoWriter(output, fps, width, height, args.crf, rate, channels,
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


def _source(args: argparse.Namespace, dirs):
    """(frame source, exact fps, the run's options, the avatar or None) of --video, --image or --avatar."""
    from .io import image_file, video_read
    from .io.sources import TensorSource

    if args.avatar is not None:
        from .lipsync_args import given_options, speaker_specs

        if speaker_specs(args) is not None:
            raise InputError("--avatar holds one face: give it one --audio (several speakers run from the video).")
        from .realtime.avatar_lipsync import open_avatar

        avatar, options = open_avatar(args.avatar, args.avatars_dir, dirs, given_options(args))
        return avatar.source(), avatar.exact_fps, options, avatar
    if args.avatars_dir is not None:
        raise InputError("--avatars-dir applies to --avatar only (where avatar names are looked up).")
    options = options_from_args(args)
    if args.video is not None:
        source = video_read.open_video(args.video)  # demuxes only: frame count and timestamps, nothing decoded
        return source, source.fps, options, None
    return TensorSource(image_file.read_image(args.image)), args.fps or Fraction(25), options, None


def _voices(args: argparse.Namespace, fps):
    """(the audio or None, the speakers or None, {option: file} of the audio inputs), every file read and checked."""
    from .io import audio_file
    from .lipsync_args import speaker_specs
    from .speakers import Speaker

    specs = speaker_specs(args)
    if specs is None:
        audio = audio_file.read_audio(args.audio)
        audio_file.check_audio_duration(audio, fps, "--audio")
        return audio, None, {"--audio": args.audio}
    speakers = []
    for i, (path, selection) in enumerate(specs):
        label = f"--speaker {path}"
        audio = audio_file.read_audio(path)
        audio_file.check_audio_duration(audio, fps, label)
        speakers.append(Speaker(audio, selection, f"speaker {i + 1} ({path.name})"))
    return None, speakers, {f"--speaker {path}": path for path, _ in specs}


def _layout(audio, speakers):
    """(sample rate, channels) of the output's audio: the one audio's, or the mix's (first rate, most channels)."""
    from .io import audio_file

    if speakers is None:
        return audio_file.audio_layout(audio)
    layouts = [audio_file.audio_layout(s.audio) for s in speakers]
    return layouts[0][0], max(c for _, c in layouts)


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
            if args.command == "avatar":
                from .realtime.avatar_cli import run_avatar

                bars = _Bars(not args.no_progress)
                try:
                    return run_avatar(args, bars)
                finally:
                    bars.close()
            if args.command == "serve":
                from .realtime.serve_cli import run_serve

                return run_serve(args)
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

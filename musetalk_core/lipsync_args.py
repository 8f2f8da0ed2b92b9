"""The lipsync command's arguments, made from the option declarations (musetalk_core.options): the flags of
``python -m musetalk_core lipsync`` and the keys of a batch job line (musetalk_core.batch.jobs parses a line with
this parser), so a job means exactly what the same command line means. Imported by cli and batch; imports neither.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import InputError
from .io.video_write import X264_PRESETS
from .options import AUDIO, BLEND, FACES, LATENTS, LATENTSYNC, LOAD, PARAMS, UNET, LipsyncOptions, Param, \
    check_value, range_error, resolve

# command line help sections, by the node whose inputs they hold (None: the choice of generator)
SECTIONS = {LOAD: "models", FACES: "faces", AUDIO: "audio", LATENTS: "latents", None: "generator",
            UNET: "generation", BLEND: "blending", LATENTSYNC: "LatentSync"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default, except None: a flag not given then means what its help says."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _fps(text: str) -> Fraction:
    try:
        value = Fraction(text)  # "25", "29.97", "30000/1001"
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame rate (examples: 25, 29.97, 30000/1001)") from None
    if not 0 < value <= 240:
        raise argparse.ArgumentTypeError(f"fps must be in (0, 240], got {text}")
    return value


def ranged(kind, lo, hi, label: str):
    """An argparse type: a ``kind`` number within lo..hi (the options' message)."""
    def parse(text: str):
        value = _convert(kind, text, label)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(range_error(label, value, lo, hi))
        return value

    parse.__name__ = kind.__name__
    return parse


def _convert(kind, text: str, label: str):
    if kind is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return low in ("1", "true", "yes", "on")
        raise argparse.ArgumentTypeError(f"'{label}' = '{text}' is not true/false")
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{label}' = '{text}' is not a{'n' if kind is int else ''} "
                                         f"{kind.__name__}") from None


def _param_type(param: Param):
    """An argparse type: text -> a value the setting allows (options.check_value's message otherwise)."""
    def parse(text: str):
        value = _convert(param.kind, text, param.name)
        try:
            return check_value(param.name, value)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = param.kind.__name__
    return parse


def _help(param: Param) -> str:
    """The declared help, plus what a flag that is not given means when that is not one fixed default."""
    if param.follows:
        return f"{param.help} (default: --{param.follows.replace('_', '-')}, at most {param.hi})"
    if param.latentsync_default is not None:
        return f"{param.help} (default: {param.default}; with LatentSync {param.latentsync_default})"
    return param.help


class _StoreGiven(argparse.Action):
    """Stores the value and notes the setting as given (``given_flags``): a run from an avatar must tell a flag
    left out from one given with its default value."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, GIVEN, getattr(namespace, GIVEN, frozenset()) | {self.dest})


GIVEN = "given_flags"


def add_option(group, param: Param) -> None:
    """The flag of one setting: ``--bbox-shift`` for ``bbox_shift``."""
    flag = "--" + param.name.replace("_", "-")
    open_default = param.follows or param.latentsync_default is not None  # decided by resolve(), from the others
    kwargs = dict(action=_StoreGiven, type=_param_type(param), default=None if open_default else param.default,
                  help=_help(param).replace("%", "%%"))  # argparse formats help with %
    if param.choices and not param.presets:
        kwargs["choices"] = param.choices  # listed in the usage; the type's check comes first
    if param.kind is bool:
        kwargs.update(nargs="?", const=True)  # --silence-handling alone means true
    group.add_argument(flag, **kwargs)


def add_lipsync_arguments(p: argparse.ArgumentParser, models_dir: bool = True) -> None:
    """The lipsync options (also the keys of a batch job line: musetalk_core.batch.jobs)."""
    io = p.add_argument_group("input / output")
    src = io.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="source video (its own audio track is ignored)")
    src.add_argument("--image", type=Path, help="a single photo instead of a video (use --fps)")
    src.add_argument("--avatar", default=None, metavar="NAME|FOLDER",
                     help="a prepared avatar (python -m musetalk_core avatar) instead of a video: its frames, faces "
                          "and latents are reused, so only the audio, UNet, decoder and blend run; same output as "
                          "the run from its video with its settings")
    voices = io.add_mutually_exclusive_group(required=True)
    voices.add_argument("--audio", type=Path, help="driving audio (wav, mp3, m4a, or a video's sound)")
    voices.add_argument("--speaker", action="append", metavar="AUDIO[@SELECTION]", default=None,
                        help="one of several speakers: its audio and which face speaks it ('track N', 'point X Y "
                             "[FRAME]', 'auto'; default: track i for the i-th --speaker), e.g. --speaker "
                             "a.wav@'track 0' --speaker b.wav@'track 1' (repeatable; audio mixed in the output)")
    voices.add_argument("--speakers", type=Path, metavar="FILE.json", default=None,
                        help='several speakers from a JSON file: [{"audio": "a.wav", "select": "track 0"}, ...] '
                             "(audio paths relative to the file)")
    io.add_argument("--output", "-o", type=Path, required=True, help="output .mp4/.mov/.mkv (its folder must exist)")
    io.add_argument("--fps", type=_fps, default=None,
                    help="frame rate for --image (default 25); a video keeps its own exact rate")
    io.add_argument("--avatars-dir", type=Path, default=None,
                    help="where --avatar NAME lives (default $MUSETALK_AVATARS_DIR, else the first models folder's "
                         "avatars/ folder)")
    io.add_argument("--crf", type=ranged(int, 0, 51, "crf"), default=18,
                    help="H.264 quality (lower = better, larger)")
    io.add_argument("--preset", choices=X264_PRESETS, default="medium",
                    help="H.264 encoder speed: faster presets encode quicker into larger files at the same --crf; "
                         "the pixels lip-synced are the same (default medium)")
    groups = {node: p.add_argument_group(f"{SECTIONS[node]} ({node or 'MuseTalk or LatentSync'})")
              for node in SECTIONS}
    if models_dir:
        io.add_argument("--no-progress", action="store_true", help="no progress bars")
        groups[LOAD].add_argument("--models-dir", type=Path, action="append", default=None,
                                  help="models/musetalk folder (repeatable; default $MUSETALK_MODELS_DIR or "
                                       "./models/musetalk)")
    for param in PARAMS.values():
        add_option(groups[param.node], param)
    groups[None].add_argument("--unet-config", default=None, metavar="YAML",
                              help="LatentSync: an upstream UNet config file (configs/unet/stage1.yaml, "
                                   "stage2_efficient.yaml, ...; absolute or relative to the models folder) instead "
                                   "of the version's own stage2 config")


def given_options(args: argparse.Namespace) -> dict:
    """{setting: value} of the flags a parsed lipsync command line or job line gives (no defaults)."""
    return {name: getattr(args, name) for name in getattr(args, GIVEN, ()) if name in PARAMS}


def options_from_args(args: argparse.Namespace) -> LipsyncOptions:
    """The options of a parsed lipsync command line or job line (flags not given: resolve's defaults)."""
    given = {name: getattr(args, name) for name in PARAMS}
    if args.generator != "musetalk":
        from .generators.latentsync.loading import insightface_root

        given["insightface_root"] = insightface_root(getattr(args, "models_dir", None) or _default_dirs())
    return resolve(given)


def _default_dirs():
    from .weights import files as model_files

    return model_files.default_models_dirs()


def speaker_specs(args: argparse.Namespace) -> Optional[List[Tuple[Path, str]]]:
    """[(audio file, selection text)] of --speaker / --speakers, or None for a plain --audio run."""
    if getattr(args, "speakers", None) is not None:
        return speakers_file(args.speakers)
    if not getattr(args, "speaker", None):
        return None
    return [split_speaker(text, i) for i, text in enumerate(args.speaker)]


def split_speaker(text: str, index: int) -> Tuple[Path, str]:
    """'a.wav@track 0' -> (a.wav, 'track 0'); no '@' (or none before a selection): the default selection."""
    from .faces.selection import parse_selection

    path, sep, selection = str(text).rpartition("@")
    if sep and path:
        try:
            parse_selection(selection, f"--speaker {text}")
            return Path(path), selection
        except InputError:
            if Path(text).exists():  # an '@' in the file name
                return Path(text), "default"
            raise
    return Path(text), "default"


def speakers_file(path: Path) -> List[Tuple[Path, str]]:
    import json

    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"--speakers {path}: cannot read it as JSON ({exc}).") from None
    return speaker_entries(entries, Path(path).parent, f"--speakers {path}")


def speaker_entries(entries, base: Path, label: str) -> List[Tuple[Path, str]]:
    """[(audio path under ``base``, selection)] from [{"audio": ..., "select": ...}, ...] (a file or a job line)."""
    import os

    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and "audio" in e
                                                                 for e in entries):
        raise InputError(f'{label}: expected a list of speakers such as [{{"audio": "a.wav", "select": "track 0"}}, '
                         '{"audio": "b.wav", "select": "track 1"}].')
    out = []
    for e in entries:
        unknown = sorted(set(e) - {"audio", "select"})
        if unknown:
            raise InputError(f"{label}: unknown key(s) {unknown} in a speaker; use 'audio' and 'select'.")
        out.append((base / os.path.expanduser(str(e["audio"])), str(e.get("select", "default"))))
    return out


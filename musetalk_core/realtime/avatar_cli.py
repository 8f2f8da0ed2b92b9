"""``python -m musetalk_core avatar --video V (or --image I [--fps F]) --name NAME [--avatars-dir D] [options]``.

Prepares an avatar (avatar.prepare_avatar) with the faces and latents options of a lip-sync run, declared once in
musetalk_core.options (the same flags as ``lipsync``), plus the blend's blur_factor and upper_boundary_ratio, kept
in the avatar for its sessions. Loads only the networks preparing needs (detector, landmarks, parser, VAE).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from ..lipsync_args import SECTIONS, HelpFormatter, add_option
from ..options import BLEND, FACES, LATENTS, LOAD, PARAMS, resolve

AVATAR_NETWORKS = ("s3fd", "landmarks", "face_parser", "vae")
KEPT_BLEND = ("blur_factor", "upper_boundary_ratio")  # stored in the avatar: a session blends with them
NOT_FOR_AVATARS = ("speaker_selection",)  # one face per avatar: face_selection picks it


def avatar_params():
    """The declarations the avatar command takes: the faces, latents and models settings, and KEPT_BLEND."""
    offered = [p for p in PARAMS.values()
               if (p.node in (LOAD, FACES, LATENTS) and p.name not in NOT_FOR_AVATARS) or p.name in KEPT_BLEND]
    names = {p.name for p in offered}
    # a setting that follows one not offered here (face_batch_size follows --batch-size) takes its own default
    return [p if not p.follows or p.follows in names else replace(p, follows=None) for p in offered]


def add_avatar_parser(sub) -> None:
    from ..lipsync_args import _fps

    p = sub.add_parser("avatar", help="prepare a real-time avatar from a video or an image",
                       description="Prepare a video (or a still image) once for real-time lip-sync sessions "
                                   "(python -m musetalk_core serve): its frames, faces and latents go to "
                                   "AVATARS_DIR/NAME. Options are the lip-sync run's (same flags); the avatar's "
                                   "material equals what a lip-sync run computes for that video. MuseTalk only. "
                                   "Exit code 2 on bad input.",
                       formatter_class=HelpFormatter)
    io = p.add_argument_group("input / output")
    src = io.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="source video (its audio track is ignored)")
    src.add_argument("--image", type=Path, help="a single photo instead of a video (use --fps)")
    io.add_argument("--fps", type=_fps, default=None,
                    help="frame rate for --image (default 25); a video keeps its own exact rate")
    io.add_argument("--name", required=True, help="the avatar's name (a folder name, e.g. anna)")
    io.add_argument("--avatars-dir", type=Path, default=None,
                    help="where avatars live (default $MUSETALK_AVATARS_DIR, else the first models folder's "
                         "avatars/ folder)")
    io.add_argument("--overwrite", action="store_true", help="replace an existing avatar of that name")
    io.add_argument("--no-progress", action="store_true", help="no progress bars")
    groups = {node: p.add_argument_group(f"{SECTIONS[node]} ({node})") for node in (LOAD, FACES, LATENTS, BLEND)}
    groups[LOAD].add_argument("--models-dir", type=Path, action="append", default=None,
                              help="models/musetalk folder (repeatable; default $MUSETALK_MODELS_DIR or "
                                   "./models/musetalk)")
    for param in avatar_params():
        add_option(groups[param.node], param)


def run_avatar(args: argparse.Namespace, progress) -> int:
    """Every input checked before a model is loaded; prints where the avatar was written."""
    from ..errors import InputError
    from ..io import image_file, video_read
    from ..io.sources import TensorSource
    from ..pipeline import check_options
    from ..weights import files as model_files
    from ..weights.loading import load_models
    from .avatar import default_avatars_dir, free_target, prepare_avatar

    if args.video is not None and args.fps is not None:
        raise InputError("--fps applies to --image only; a video keeps its own frame rate.")
    options = resolve({p.name: getattr(args, p.name) for p in avatar_params()})
    check_options(options)
    dirs = args.models_dir or model_files.default_models_dirs()
    root = args.avatars_dir or default_avatars_dir(dirs)
    free_target(root, args.name, args.overwrite)
    if args.video is not None:
        source = video_read.open_video(args.video)
        fps = source.fps
    else:
        source, fps = TensorSource(image_file.read_image(args.image), "--image"), args.fps or Fraction(25)
    try:
        models = load_models(dirs, version=options.version, precision=options.precision, device=options.device,
                             landmark_backend=options.landmark_backend, networks=AVATAR_NETWORKS)
        avatar = prepare_avatar(models, source, fps, options, root, args.name, progress=progress,
                                overwrite=args.overwrite)
    finally:
        source.close()
    h, w = avatar.frame_size
    found = int(avatar.latents.frame_indices.numel())
    print(f"Wrote avatar '{avatar.name}' to {avatar.folder} ({avatar.num_frames} frames of {w}x{h} at "
          f"{avatar.fps:.3f} fps; a face in {found} of them).")
    return 0

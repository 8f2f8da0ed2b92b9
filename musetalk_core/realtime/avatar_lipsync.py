"""A lip-sync run from a prepared avatar instead of a video (``lipsync --avatar NAME``).

An avatar holds what a run computes from the video alone (frames, faces, latents: avatar.py), so a run from it
starts at the audio: no decoding, no face detection, landmarks or parsing, no VAE encoding, and only the networks a
live session loads (Whisper, UNet, VAE decoder, positional encoding). Its output equals the same run from the video
with the avatar's settings, frame for frame (tests/test_avatar_lipsync.py): the per-video stages are deterministic
and the avatar's material is theirs.

Settings: the faces and latents settings, the MuseTalk version and the landmark backend are the avatar's (it was
prepared with them). Giving one with another value is refused (the avatar would have to be prepared again); batch
sizes of stages that do not run are ignored. ``precision`` defaults to the one its latents were made at;
``blur_factor`` and ``upper_boundary_ratio`` to the ones kept in it. Everything else (audio, generation, blend) is
the run's own, with the usual defaults.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..errors import InputError
from ..options import FACES, LATENTS, PARAMS, LipsyncOptions, resolve
from .avatar import Avatar, avatar_path, default_avatars_dir, load_avatar

log = logging.getLogger(__name__)

# settings that shaped the avatar's material: its value, unless the run gives the same one
FIXED = tuple(p.name for p in PARAMS.values() if p.node in (FACES, LATENTS)
              and p.name not in ("face_batch_size", "vae_batch_size", "speaker_selection")) \
    + ("version", "landmark_backend")
# the avatar's choice unless the run gives its own
DEFAULTED = ("precision", "blur_factor", "upper_boundary_ratio")
# the avatar.json setting holding a FIXED option's value where its name differs
STORED_AS = {"parsing_mode": "parsing_mode_requested"}
RUN_NETWORKS = ("unet", "vae", "pe", "whisper")  # what a run from an avatar (live or not) loads; + taesd


def find_avatar(ref, avatars_dir: Optional[Path], models_dirs: Sequence[Path]) -> Path:
    """The folder of avatar ``ref``: a name under ``avatars_dir`` (default: $MUSETALK_AVATARS_DIR, else <first
    models folder>/avatars), else a folder holding an avatar.json (a path)."""
    from .avatar_files import INFO_FILE

    text = str(ref)
    if "/" not in text and "\\" not in text:
        root = Path(avatars_dir) if avatars_dir is not None else default_avatars_dir(models_dirs)
        folder = avatar_path(root, text)  # the name checked first: never a path outside root, never too long
        if folder.is_dir():
            return folder
        if not _is_avatar_folder(Path(text)):
            raise InputError(f"Avatar '{text}' was not found: no folder {folder}. Prepare it first (python -m "
                             f"musetalk_core avatar --video VIDEO --name {text}), give --avatars-dir where it "
                             "lives, or give the avatar's folder itself.")
    if not _is_avatar_folder(Path(text)):
        raise InputError(f"'{text}' is not an avatar folder (no {INFO_FILE} there). Give an avatar's folder, or its "
                         "name with --avatars-dir; python -m musetalk_core avatar prepares one.")
    return Path(text)


def _is_avatar_folder(path: Path) -> bool:
    from .avatar_files import INFO_FILE

    try:
        return (path / INFO_FILE).is_file()
    except OSError:  # a name too long for the file system, ...
        return False


def stored_settings(avatar: Avatar) -> Dict[str, Any]:
    """The avatar's FIXED and DEFAULTED settings under their option names (those it records). The precision is
    the one its latents were made at (a node-made avatar records no precision, a command-line one maybe 'auto')."""
    settings = dict(avatar.settings)
    out = {name: settings[STORED_AS.get(name, name)] for name in FIXED + DEFAULTED
           if STORED_AS.get(name, name) in settings}
    from ..weights.loading import precision_of

    made_at = precision_of(avatar.latents.latents.dtype)
    if made_at is not None:
        out["precision"] = made_at
    return {k: v for k, v in out.items() if v is not None}


def avatar_options(avatar: Avatar, given: Mapping[str, Any]) -> LipsyncOptions:
    """The run's options: ``given`` (None: not given) over the avatar's settings. InputError for a setting the
    avatar fixed given with another value, a generator other than MuseTalk, or a speaker choice."""
    stored = stored_settings(avatar)
    given = {k: v for k, v in given.items() if v is not None}
    if given.get("generator", "musetalk") != "musetalk":
        raise InputError(f"An avatar is MuseTalk material: generator '{given['generator']}' cannot run from avatar "
                         f"'{avatar.name}'. Run LatentSync from the video instead (--video).")
    if given.get("speaker_selection", "default") != "default":
        raise InputError(f"Avatar '{avatar.name}' holds one face: speaker_selection does not apply (it was chosen "
                         "with face_selection when the avatar was prepared).")
    version = stored.get("version", given.get("version", "v15"))
    changed = [(name, given[name], stored[name]) for name in FIXED
               if name in given and name in stored and not _same(name, given[name], stored[name], version)]
    if changed:
        listed = ", ".join(f"{name} {new!r} (the avatar's: {old!r})" for name, new, old in changed)
        raise InputError(f"Avatar '{avatar.name}' was prepared with other faces/latents settings: {listed}. These "
                         "are fixed when an avatar is prepared: leave them out, prepare the avatar again with them "
                         "(python -m musetalk_core avatar ... --overwrite), or run from the video (--video).")
    return resolve({**stored, **given})


def _same(name: str, a: Any, b: Any, version: str) -> bool:
    """Would the run's value ``a`` have made the avatar's material as its value ``b`` did?"""
    if name == "parsing_mode":  # 'auto' and what it stands for make the same masks
        from ..faces.parsing import resolve_mode

        return resolve_mode(a, version) == resolve_mode(b, version)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def open_avatar(ref, avatars_dir: Optional[Path], models_dirs: Sequence[Path], given: Mapping[str, Any],
                label: str = "--avatar") -> Tuple[Avatar, LipsyncOptions]:
    """(the avatar, the run's options), everything checked before a network is loaded."""
    try:
        avatar = load_avatar(find_avatar(ref, avatars_dir, models_dirs))
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None
    return avatar, avatar_options(avatar, given)


def avatar_material(avatar: Avatar, models) -> Tuple[Any, Any]:
    """(faces, latents) for pipeline.lipsync_stream's ``prepared_video``: the avatar's, checked against the loaded
    models (version); latents of another dtype than the networks' are noted (they are cast per batch)."""
    from .avatar import check_models

    check_models(avatar, models)
    made_at, run_at = (str(d).replace("torch.", "") for d in (avatar.latents.latents.dtype, models.dtype))
    if made_at != run_at:
        log.warning("Avatar '%s' holds %s latents (prepared at that precision) and this run's networks are %s: the "
                    "output equals a run from the video whose VAE encoder ran in %s.", avatar.name, made_at, run_at,
                    made_at)
    return avatar.faces, avatar.latents


def load_avatar_networks(models_dirs: Sequence[Path], options: LipsyncOptions):
    """Only the networks a run from an avatar uses (and TAESD for that decoder): no face networks, no VAE encoding
    (the avatar holds its faces and latents). Live sessions share one such set."""
    from ..weights.loading import load_models

    networks = RUN_NETWORKS + (("taesd",) if options.decoder == "taesd" else ())
    return load_models([Path(d) for d in models_dirs], version=options.version, precision=options.precision,
                       device=options.device, networks=networks)

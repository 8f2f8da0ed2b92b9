"""Avatars: a video (or a still image) prepared once for real-time lip-sync sessions.

Everything in a lip-sync run that depends on the video alone is computed ahead and kept in a folder, so a session
only runs the UNet and the VAE decoder on its audio. The material is the core's own: the faces stage
(pipeline.video_faces over every frame) and MuseTalk's latents (MuseTalkGenerator.prepare) with the run's options,
so an avatar's material equals what a lip-sync run computes for that video. MuseTalk only: LatentSync's diffusion
(20 UNet3D steps per 16 frames) is far too slow for real time.

An avatar folder, ``<avatars dir>/<NAME>/`` (default models/musetalk/avatars, or $MUSETALK_AVATARS_DIR):

- ``avatar.json``: ``format`` (AVATAR_FORMAT; a newer number is refused), ``name``, ``fps`` (float; ``fps_exact``
  the exact rate as "30000/1001"), ``frame_size`` [H, W], ``num_frames`` N, ``settings`` (the options used: the
  faces stage's, ``latent_mode``, ``seed``, ``version``, and the blend's ``blur_factor`` and
  ``upper_boundary_ratio`` for the session's paste-back), ``faces_settings`` and ``bbox_range`` (MuseTalkFaces'),
  ``frames_fingerprint``, ``created`` (UTC, ISO 8601).
- ``frames.u8``: the N source frames, raw uint8 RGB (N, H, W, 3), read as a memory map (random access, no decode).
- ``material.safetensors``: has_face (N,), boxes, crop_boxes (N, 4), landmarks (N, 68, 2), crops (N, 256, 256, 3),
  latents (M, 8, 32, 32) in the models' dtype with latent_frames (M,) (the frames with a face), and the parsing
  masks as one flat uint8 tensor ``masks`` with ``mask_sides`` / ``mask_offsets`` (N,) (side 0: no mask).

Preparing reads the video in chunks (the faces stage's, then once more to write frames.u8): the whole video is
never in memory; its crops, masks and latents are (about 230 KB per frame), as they are in a loaded avatar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputError
from ..hooks import NO_HOOKS, RunHooks
from ..io.sources import FrameSource
from ..types import MuseTalkFaces, MuseTalkLatents
from . import avatar_files as files
from .avatar_files import AVATAR_FORMAT

ProgressFactory = Callable[[str, int], RunHooks]
FRAME_CHUNK_PIXELS = 64 * 720 * 1280  # frames.u8 is written this many pixels at a time (at least one frame)
MAX_NAME = 100
_AVATARS_DIR: List[Optional[Path]] = [None]  # $MUSETALK_AVATARS_DIR, handed over by startup.apply_environment

__all__ = ["AVATAR_FORMAT", "Avatar", "AvatarFrames", "prepare_avatar", "save_avatar", "load_avatar",
           "list_avatars", "default_avatars_dir", "set_avatars_dir", "avatar_path", "check_name", "check_models"]


@dataclass(frozen=True, eq=False)
class Avatar:
    name: str
    folder: Path
    fps: float                   # the source video's frame rate (or the rate given for an image)
    frame_size: Tuple[int, int]  # (H, W)
    num_frames: int              # N source frames
    settings: Mapping[str, Any]  # the options used (see the module docstring)
    frames: np.ndarray           # uint8 (N, H, W, 3), a read-only np.memmap of frames.u8
    faces: MuseTalkFaces         # CPU tensors in memory
    latents: MuseTalkLatents     # (M, 8, 32, 32) for the frames with a face
    rate: Fraction = Fraction(0)  # the exact frame rate (avatar.json's fps_exact; 0: derived from fps)

    @property
    def exact_fps(self) -> Fraction:
        """The exact frame rate (30000/1001 for NTSC video): what a file rendered from the avatar is written at."""
        from ..io.frames import exact_rate

        return self.rate if self.rate > 0 else exact_rate(float(self.fps))

    def idle_order(self, count: int, start: int = 0) -> torch.Tensor:
        """int64 (count,): the source frame of output frames start..start+count-1 (frame_mapping's bounce)."""
        from ..frame_mapping import source_indices

        return source_indices(int(count), self.num_frames, "bounce", int(start))

    def source(self) -> "AvatarFrames":
        """The frames as a FrameSource (what the blend stage and the faces stage read)."""
        return AvatarFrames(self)


class AvatarFrames(FrameSource):
    """An avatar's frames.u8 as a FrameSource: reads copy the rows asked for (writable tensors)."""

    name = "avatar"

    def __init__(self, avatar: Avatar):
        self.avatar = avatar
        self.num_frames = avatar.num_frames
        self.frame_size = tuple(avatar.frame_size)
        self.fps = avatar.exact_fps

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        rows = np.asarray([int(i) for i in indices], dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.avatar.frames[rows]))

    def fingerprint(self) -> str:
        return self.avatar.faces.frames_fingerprint or ""


# ---------------------------------------------------------------------------------------------------- places

def set_avatars_dir(path: Optional[Path]) -> None:
    """The avatars folder default_avatars_dir gives (the command line hands over $MUSETALK_AVATARS_DIR)."""
    _AVATARS_DIR[0] = Path(path).expanduser() if path else None


def default_avatars_dir(models_dirs: Sequence[Path]) -> Path:
    """$MUSETALK_AVATARS_DIR when set (set_avatars_dir), else <first models folder>/avatars."""
    if _AVATARS_DIR[0] is not None:
        return _AVATARS_DIR[0]
    dirs = list(models_dirs or ())
    return (Path(dirs[0]) if dirs else Path("models") / "musetalk") / "avatars"


def check_name(name: str) -> str:
    """``name`` if it can be a folder name on every system; InputError saying why not otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("An avatar needs a name (a folder name such as 'anna'), got an empty one.")
    bad = sorted({c for c in name if c in '/\\:*?"<>|' or ord(c) < 32})
    if bad:
        raise InputError(f"Avatar name {name!r} contains {' '.join(map(repr, bad))}: a name is one folder name, "
                         "without path separators or the characters / \\ : * ? \" < > |.")
    if name.startswith(".") or name != name.strip() or name.endswith("."):
        raise InputError(f"Avatar name {name!r} must not start with a dot nor start or end with a space or a dot.")
    if len(name) > MAX_NAME:
        raise InputError(f"Avatar name {name[:20]!r}... is {len(name)} characters long; use at most {MAX_NAME}.")
    return name


def avatar_path(root: Path, name: str) -> Path:
    """The folder of avatar ``name`` under ``root`` (the name checked: never a path outside ``root``)."""
    return Path(root) / check_name(name)


def list_avatars(root: Path) -> List[str]:
    """Names of the avatars in ``root`` (folders with an avatar.json), sorted; [] when ``root`` does not exist."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / files.INFO_FILE).is_file())


# ---------------------------------------------------------------------------------------------------- preparing

def _hooks(progress: Optional[ProgressFactory], stage: str, total: int) -> RunHooks:
    return progress(stage, int(total)) if progress is not None else NO_HOOKS


def _check_generator(options) -> None:
    if getattr(options, "generator", "musetalk") != "musetalk":
        raise InputError(f"Avatars are made for MuseTalk (generator 'musetalk'), not '{options.generator}': "
                         "LatentSync's diffusion is far too slow for real-time sessions.")


def prepare_avatar(models, source: FrameSource, fps, options, folder: Path, name: str,
                   progress: Optional[ProgressFactory] = None, overwrite: bool = False) -> Avatar:
    """Faces and latents of every frame of ``source`` through the core's stages with ``options``, written with
    the frames to ``folder/name/`` (atomically). ``fps``: the source's frame rate (a still image's chosen rate).
    An existing avatar of that name is refused before any work unless ``overwrite``."""
    from ..generators.musetalk.generator import MuseTalkGenerator
    from ..pipeline import check_options, video_faces

    check_options(options)
    _check_generator(options)
    free_target(Path(folder), name, overwrite)
    wanted = np.ones(int(source.num_frames), dtype=bool)
    faces = video_faces(models, source, options, wanted, None, True, progress)
    if not bool(faces.has_face.any()):
        raise InputError(f"No face was found in any of the {faces.num_frames} frames of '{source.name}', so it "
                         "cannot be an avatar. Use a video where one face is clearly visible (detector_scale 1.0 finds the "
                         "smallest faces).")
    generator = MuseTalkGenerator(models, options)
    latents = generator.prepare(source, faces, wanted, None, lambda stage, total: _hooks(progress, stage, total))
    blend = {"blur_factor": float(options.blur_factor), "upper_boundary_ratio": float(options.upper_boundary_ratio),
             "precision": options.precision}
    return save_avatar(faces, latents, source, fps, blend, folder, name, progress, overwrite)


def free_target(folder: Path, name: str, overwrite: bool) -> Path:
    """The avatar's folder, refused when it exists already and may not be replaced (before any slow work)."""
    from .avatar_files import name_taken

    target = avatar_path(folder, name)
    if target.exists() and not overwrite:
        raise name_taken(target)
    return target


def _check_material(faces, latents, source: FrameSource) -> None:
    """The faces and latents belong to ``source`` and to each other (the graph node's inputs come apart)."""
    if not isinstance(faces, MuseTalkFaces) or not isinstance(latents, MuseTalkLatents):
        raise InputError("An avatar needs 'faces' from FaceDetectAndParse and 'latents' from VAEEncodeMasked.")
    n, size = int(source.num_frames), tuple(int(v) for v in source.frame_size)
    if faces.num_frames != n or tuple(faces.frame_size) != size:
        raise InputError(f"'faces' describe {faces.num_frames} frames of {tuple(faces.frame_size)}, but the frames "
                         f"given are {n} of {size}: connect the frames FaceDetectAndParse was given.")
    if faces.frames_fingerprint and faces.frames_fingerprint != source.fingerprint():
        raise InputError("These are not the frames the faces were computed from (same size and count, other "
                         "pixels): connect the frames FaceDetectAndParse was given.")
    if not faces.settings.get("crops", True) or faces.crops.shape[0] != n:
        raise InputError("'faces' hold no 256x256 crops (made for LatentSync?): avatars are MuseTalk's.")
    if latents.num_frames != n or not torch.equal(latents.frame_indices.cpu(), faces.face_indices.cpu()):
        raise InputError("'latents' were not encoded from these 'faces' (other frames have a face): connect the "
                         "VAEEncodeMasked that took these faces.")
    if latents.version != faces.settings.get("version", latents.version):
        raise InputError(f"'latents' are MuseTalk {latents.version}'s but 'faces' were made for "
                         f"{faces.settings.get('version')}: use one LoadMuseTalkModels for both.")
    if latents.frame_indices.numel() == 0:
        raise InputError(f"No face was found in any of the {n} frames, so they cannot be an avatar. Use a video "
                         "where one face is clearly visible.")


def _exact_fps(fps) -> Fraction:
    import math

    from ..io.frames import exact_rate

    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"An avatar's frame rate must be a number more than 0, got {fps!r}.")
    return exact_rate(fps if isinstance(fps, Fraction) else value)


def _frame_chunks(source: FrameSource, hooks: RunHooks):
    from ..io.sources import prefetched

    h, w = source.frame_size
    step = max(1, FRAME_CHUNK_PIXELS // max(1, int(h) * int(w)))
    groups = [list(range(a, min(a + step, source.num_frames))) for a in range(0, source.num_frames, step)]
    for chunk in prefetched(source, groups):
        yield chunk
        hooks.step(int(chunk.shape[0]))


def save_avatar(faces: MuseTalkFaces, latents: MuseTalkLatents, source, fps, settings: Mapping[str, Any],
                folder: Path, name: str, progress: Optional[ProgressFactory] = None,
                overwrite: bool = False) -> Avatar:
    """Write an avatar from material already computed (the graph's faces and latents, or prepare_avatar's) and
    its frames (``source``: a FrameSource, an IMAGE or a VIDEO, read chunk by chunk) to ``folder/name/``.
    ``settings``: the blend settings for sessions (blur_factor, upper_boundary_ratio) and anything else worth
    keeping; the faces' and latents' own settings are added. Returns the avatar as load_avatar gives it."""
    from ..io.sources import as_source

    owned = not isinstance(source, FrameSource)  # opened here (a VIDEO): closed here
    source = as_source(source, "frames")
    try:
        return _save(faces, latents, source, fps, settings, Path(folder), name, progress, overwrite)
    finally:
        if owned:
            source.close()


def _save(faces, latents, source: FrameSource, fps, settings, folder: Path, name: str, progress,
          overwrite: bool) -> Avatar:
    from ..io.frames import frames_fingerprint

    fps = _exact_fps(fps)
    target = free_target(folder, name, overwrite)
    _check_material(faces, latents, source)
    n, (h, w) = int(source.num_frames), (int(v) for v in source.frame_size)
    temporary = files.temporary_folder(folder, name)
    try:
        written = files.write_frames(temporary / files.FRAMES_FILE,
                                     _frame_chunks(source, _hooks(progress, "avatar frames", n)))
        if written != n:
            raise InputError(f"'{source.name}' gave {written} frames, not the {n} it announced.")
        frames = files.open_frames(temporary, n, h, w)
        fingerprint = frames_fingerprint(files.frames_tensor(frames))
        del frames
        material = _material_tensors(faces, latents)
        files.write_material(temporary / files.MATERIAL_FILE, material)
        files.write_info(temporary / files.INFO_FILE, _info(name, fps, (h, w), n, faces, latents, settings,
                                                           fingerprint))
        files.move_into_place(temporary, target, overwrite)
    except BaseException:
        import shutil

        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return load_avatar(target)


def _material_tensors(faces: MuseTalkFaces, latents: MuseTalkLatents) -> dict:
    """The safetensors content; spilled crops, masks and latents (a VIDEO in the graph) are read back here."""
    n = faces.num_frames
    crops = faces.crops if isinstance(faces.crops, torch.Tensor) else faces.crops[slice(None)]
    lat = latents.latents if isinstance(latents.latents, torch.Tensor) else latents.latents[slice(None)]
    masks, sides, offsets = files.pack_masks(faces.masks, n)
    return {"has_face": faces.has_face.cpu().bool(), "boxes": faces.boxes.cpu().to(torch.int64),
            "crop_boxes": faces.crop_boxes.cpu().to(torch.int64), "landmarks": faces.landmarks.cpu().to(torch.int64),
            "crops": crops.cpu(), "latents": lat.cpu(), "latent_frames": latents.frame_indices.cpu().to(torch.int64),
            "masks": masks, "mask_sides": sides, "mask_offsets": offsets}


def _info(name: str, fps: Fraction, size, n: int, faces: MuseTalkFaces, latents: MuseTalkLatents,
          settings: Mapping[str, Any], fingerprint: str) -> dict:
    used = {**dict(faces.settings), "version": latents.version, "latent_mode": latents.latent_mode,
            "seed": int(latents.seed), "latents_dtype": str(latents.latents.dtype).replace("torch.", ""),
            **dict(settings)}
    return {"format": AVATAR_FORMAT, "name": name, "fps": float(fps), "fps_exact": str(fps),
            "frame_size": [int(size[0]), int(size[1])], "num_frames": int(n), "settings": used,
            "faces_settings": dict(faces.settings), "bbox_range": faces.bbox_range,
            "frames_fingerprint": fingerprint, "faces_found": int(latents.frame_indices.numel()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# ---------------------------------------------------------------------------------------------------- loading

def load_avatar(path: Path, device=None, models=None) -> Avatar:
    """The avatar in folder ``path``: frames memory-mapped, material in memory (latents on ``device``, default
    the CPU). ``models``: refuse an avatar prepared for another MuseTalk version (check_models). Every problem is
    an InputError naming the file and what to do."""
    folder = Path(path)
    info = files.read_info(folder)
    h, w = (int(v) for v in info["frame_size"])
    n = int(info["num_frames"])
    frames = files.open_frames(folder, n, h, w)
    t = files.read_material(folder, n)
    settings = dict(info["settings"])
    fingerprint = info.get("frames_fingerprint") or None
    faces = MuseTalkFaces(frame_size=(h, w), has_face=t["has_face"].bool(), boxes=t["boxes"],
                          landmarks=t["landmarks"], crop_boxes=t["crop_boxes"],
                          masks=files.unpack_masks(t["masks"], t["mask_sides"], t["mask_offsets"]),
                          crops=t["crops"], bbox_range=str(info.get("bbox_range", "")),
                          settings=dict(info.get("faces_settings", settings)), frames_fingerprint=fingerprint)
    latents = MuseTalkLatents(latents=t["latents"].to(device) if device is not None else t["latents"],
                              frame_indices=t["latent_frames"], num_frames=n,
                              version=str(settings.get("version", "v15")),
                              latent_mode=str(settings.get("latent_mode", "sample")),
                              seed=int(settings.get("seed", 0)), frames_fingerprint=fingerprint)
    avatar = Avatar(name=str(info.get("name") or folder.name), folder=folder, fps=float(info["fps"]),
                    frame_size=(h, w), num_frames=n, settings=settings, frames=frames, faces=faces, latents=latents,
                    rate=_stored_rate(info))
    if models is not None:
        check_models(avatar, models)
    return avatar


def _stored_rate(info: Mapping[str, Any]) -> Fraction:
    """avatar.json's exact rate ("30000/1001"); Fraction(0) when absent or unreadable (then fps decides)."""
    try:
        rate = Fraction(str(info.get("fps_exact", "0")))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return rate if rate > 0 else Fraction(0)


def check_models(avatar: Avatar, models) -> None:
    """InputError when ``avatar`` was prepared for another MuseTalk version than ``models`` hold."""
    version = avatar.settings.get("version")
    if version != models.version:
        raise InputError(f"Avatar '{avatar.name}' ({avatar.folder / files.INFO_FILE}) was prepared for MuseTalk "
                         f"{version}, but the loaded models are {models.version}: load the {version} models "
                         f"(--version {version}), or prepare the avatar again with --version {models.version}.")

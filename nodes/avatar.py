"""SaveMuseTalkAvatar: the graph's faces and latents of a video, with its frames, saved as a real-time avatar.
LoadMuseTalkAvatar: a saved avatar back into the graph (its faces, latents and frames), for a new audio without
the per-video nodes."""

from __future__ import annotations

from musetalk_core.types import FACES_TYPE, LATENTS_TYPE
from musetalk_core.options import node_input

from . import comfy_bridge

CATEGORY = "MuseTalk"


class SaveMuseTalkAvatar:
    DESCRIPTION = ("Saves a video prepared for real-time lip-sync (python -m musetalk_core serve): its frames, the "
                   "faces from FaceDetectAndParse and the latents from VAEEncodeMasked go to "
                   "models/musetalk/avatars/<name>. blur_factor and upper_boundary_ratio are kept for the live "
                   "sessions' blending. Saving again under the same name replaces that avatar. MuseTalk only.")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("avatar_folder",)
    OUTPUT_TOOLTIPS = ("The folder the avatar was written to.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "faces": (FACES_TYPE, {"tooltip": "From FaceDetectAndParse, on these frames."}),
                "latents": (LATENTS_TYPE, {"tooltip": "From VAEEncodeMasked, on these faces."}),
                "name": ("STRING", {"default": "avatar", "tooltip": "The avatar's name (one folder name, no "
                                    "slashes); the server offers it under this name."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 0.01, "max": 240.0, "step": 0.01, "tooltip": (
                    "Frame rate of 'images' (a VIDEO keeps its own rate).")}),
                "blur_factor": node_input("blur_factor"),
                "upper_boundary_ratio": node_input("upper_boundary_ratio"),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The frames given to FaceDetectAndParse. Connect this or 'video'."}),
                "video": ("VIDEO", {"tooltip": "The VIDEO given to FaceDetectAndParse. Connect this or 'images'."}),
            },
        }

    def save(self, faces, latents, name, fps=25.0, blur_factor=0.05, upper_boundary_ratio=0.5, images=None,
             video=None):
        from musetalk_core.io.sources import as_source
        from musetalk_core.realtime.avatar import save_avatar

        from .face_detect import one_source

        one_source(images, video, "SaveMuseTalkAvatar")
        source = as_source(images if video is None else video, "images" if video is None else "video")
        try:
            rate = source.fps if video is not None and source.fps else fps
            settings = {"blur_factor": float(blur_factor), "upper_boundary_ratio": float(upper_boundary_ratio)}
            avatar = save_avatar(faces, latents, source, rate, settings, comfy_bridge.avatars_directory(), name,
                                 progress=lambda stage, total: comfy_bridge.run_hooks(total), overwrite=True)
        finally:
            source.close()
        h, w = avatar.frame_size
        comfy_bridge.show_text(f"Avatar '{avatar.name}': {avatar.num_frames} frames of {w}x{h} at "
                               f"{avatar.fps:.3f} fps, a face in {int(avatar.latents.frame_indices.numel())}.\n\n"
                               f"{avatar.folder}")
        return (str(avatar.folder),)


class LoadMuseTalkAvatar:
    DESCRIPTION = ("Loads a saved avatar (SaveMuseTalkAvatar, or python -m musetalk_core avatar): the faces, latents "
                   "and frames of a video prepared once, so a new audio needs no FaceDetectAndParse or "
                   "VAEEncodeMasked. Connect latents to MuseTalkUNetInpaint, faces and video to BlendAndAssemble: "
                   "the result equals the same graph on the avatar's video with its settings. Avatars live in "
                   "models/musetalk/avatars.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (FACES_TYPE, LATENTS_TYPE, "VIDEO", "FLOAT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("faces", "latents", "video", "fps", "blur_factor", "upper_boundary_ratio")
    OUTPUT_TOOLTIPS = ("The avatar's faces (FaceDetectAndParse's output when it was prepared).",
                       "The avatar's latents (VAEEncodeMasked's output when it was prepared).",
                       "The avatar's frames (read from its folder as needed; BlendAndAssemble's 'video').",
                       "The avatar's exact frame rate (WhisperAudioEncode's fps).",
                       "The blur_factor kept in the avatar (for BlendAndAssemble).",
                       "The upper_boundary_ratio kept in the avatar (for BlendAndAssemble).")

    @classmethod
    def INPUT_TYPES(cls):
        from musetalk_core.realtime.avatar import list_avatars

        return {"required": {"avatar": (list_avatars(comfy_bridge.avatars_directory()), {
            "tooltip": "A saved avatar (the folders of models/musetalk/avatars; refresh the page after saving one)."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, avatar):
        """A clear message instead of ComfyUI's 'value not in list' (e.g. a workflow naming an avatar not here)."""
        from musetalk_core.errors import InputError

        try:
            _folder(avatar)
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, avatar):
        """Loaded again when the avatar is saved again (its avatar.json is rewritten)."""
        try:
            return (_folder(avatar) / "avatar.json").stat().st_mtime_ns
        except Exception:  # noqa: BLE001 - VALIDATE_INPUTS reports it
            return float("nan")

    def load(self, avatar):
        from musetalk_core.realtime.avatar import load_avatar

        from .video_types import AvatarVideo

        loaded = load_avatar(_folder(avatar))
        settings = loaded.settings
        h, w = loaded.frame_size
        comfy_bridge.show_text(f"Avatar '{loaded.name}': {loaded.num_frames} frames of {w}x{h} at "
                               f"{float(loaded.exact_fps):.3f} fps, a face in "
                               f"{int(loaded.latents.frame_indices.numel())}, MuseTalk {settings.get('version')}.")
        return (loaded.faces, loaded.latents, AvatarVideo(loaded), float(loaded.exact_fps),
                float(settings.get("blur_factor", 0.05)), float(settings.get("upper_boundary_ratio", 0.5)))


def _folder(name: str):
    """The folder of the avatar ``name`` under the avatars folder; InputError naming the fix when there is none."""
    from musetalk_core.errors import InputError
    from musetalk_core.realtime.avatar import avatar_path

    root = comfy_bridge.avatars_directory()
    folder = avatar_path(root, name)
    if not (folder / "avatar.json").is_file():
        raise InputError(f"Avatar '{name}' is not in {root}: save it with SaveMuseTalkAvatar (or python -m "
                         "musetalk_core avatar), then refresh the page.")
    return folder

"""SaveMuseTalkAvatar: the graph's faces and latents of a video, with its frames, saved as a real-time avatar."""

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

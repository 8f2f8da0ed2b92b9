"""BlendAndAssemble: generated mouths composited back into the frames; the finished clip (frames, audio, fps)."""

from __future__ import annotations

from musetalk_core.types import FACES_TYPE, GENERATED_TYPE, SPEAKERS_TYPE
from musetalk_core.options import node_input

from . import comfy_bridge

CATEGORY = "MuseTalk"


class BlendAndAssemble:
    DESCRIPTION = ("Pastes the generated mouths back into the original frames exactly as MuseTalk does (face resized "
                   "to the box, parsing mask cut at the upper boundary and Gaussian-blurred, integer alpha paste), "
                   "batched on the GPU. Frames without a face pass through unchanged. Outputs every frame, the audio "
                   "cut or padded to exactly frames / fps seconds, the fps and the frame count, ready for "
                   "CreateVideo / SaveVideo or Video Combine.")
    CATEGORY = CATEGORY
    FUNCTION = "blend"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "INT", "VIDEO")
    RETURN_NAMES = ("images", "audio", "fps", "frame_count", "video")
    OUTPUT_TOOLTIPS = (
        "The lip-synced frames (one per audio frame). With a VIDEO input: 16 frames sampled evenly over the clip "
        "(the whole clip is the 'video' output).",
        "The driving audio, trimmed or zero-padded to exactly frame_count / fps seconds.",
        "Frame rate of the clip (the fps given to WhisperAudioEncode).",
        "Number of output frames.",
        "The finished clip as a VIDEO for core SaveVideo / PreviewVideo. With a VIDEO input it is an H.264 + AAC "
        "file written while blending (ComfyUI's temp folder, deleted when ComfyUI drops this cached output), so "
        "no frame batch of the whole clip is ever held.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "faces": (FACES_TYPE, {"tooltip": "Faces, boxes and blend masks from FaceDetectAndParse."}),
                "generated": (GENERATED_TYPE, {"tooltip": "Generated faces from MuseTalkUNetInpaint."}),
                "blur_factor": node_input("blur_factor"),
                "upper_boundary_ratio": node_input("upper_boundary_ratio"),
                "silence_handling": node_input("silence_handling"),
                "silence_fade_frames": node_input("silence_fade_frames"),
                "chunk_size": node_input("chunk_size"),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The original frames: the same IMAGE given to FaceDetectAndParse "
                                     "(RGB; alpha is ignored, grayscale is expanded; values 0..1). Connect this "
                                     "or 'video', not both."}),
                "video": ("VIDEO", {"tooltip": "The original video: the same VIDEO given to FaceDetectAndParse. "
                                    "Frames are read, blended and encoded chunk by chunk."}),
                "replacement_faces": ("IMAGE", {"tooltip":
                                      "Optional 256x256 faces used instead of the generated ones, one per output "
                                      "frame (e.g. MuseTalkUNetInpaint's faces after a face-restoration node)."}),
                "more_speakers": (SPEAKERS_TYPE, {"tooltip": "Further people talking in the same frames, each with "
                                                  "their own audio (from AddSpeaker): pasted after this one, their "
                                                  "audio mixed into the clip's."}),
            },
        }

    def blend(self, images=None, faces=None, generated=None, blur_factor=0.05, upper_boundary_ratio=0.5,
              silence_handling=False, silence_fade_frames=3, chunk_size=16, replacement_faces=None, video=None,
              more_speakers=None):
        from musetalk_core.blend.blender import blend_frames

        from .face_detect import one_source

        one_source(images, video, "BlendAndAssemble")
        hooks = comfy_bridge.run_hooks(getattr(generated, "num_frames", 1))
        settings = dict(blur_factor=blur_factor, upper_boundary_ratio=upper_boundary_ratio,
                        silence_handling=silence_handling, silence_fade_frames=silence_fade_frames,
                        chunk_size=chunk_size, replacement_faces=replacement_faces, hooks=hooks,
                        more_speakers=tuple(more_speakers or ()))
        with comfy_bridge.NodeReport() as report:  # no usable face, silence handling without audio...
            if video is not None:
                result = blend_video(video, faces, generated, settings)
            else:
                frames, audio, fps, count = blend_frames(images, faces, generated,
                                                         output_device=comfy_bridge.intermediate_device(), **settings)
                result = (frames, audio, fps, count, comfy_bridge.video_from_components(frames, audio, fps))
            report.show(blend_summary(result[3], result[2], generated, silence_handling, report))
        return result


def blend_summary(count: int, fps: float, generated, silence_handling: bool, report) -> str:
    """The clip's length; a warning when silence handling leaves every mouth as it was."""
    audio = getattr(generated, "audio", None)
    silent = getattr(audio, "silent", None)
    if silence_handling and silent is not None and int(silent.numel()) and bool(silent.all()):
        report.warn("BlendAndAssemble: silence handling is on and every frame is silent (WhisperAudioEncode's "
                    "silence_threshold_db), so every output frame keeps the original mouth.")
    return f"{count} frames at {float(fps):g} fps ({count / float(fps):.2f} s)."


def blend_video(video, faces, generated, settings):
    """The VIDEO path: source frames re-read per chunk, blended and written to an mp4 in ComfyUI's temp folder."""
    import uuid

    from musetalk_core.blend.blender import stream_blend
    from musetalk_core.io.sources import as_source

    import tempfile
    from pathlib import Path

    folder = comfy_bridge.temp_directory() or Path(tempfile.gettempdir())  # ComfyUI empties its temp/ at start
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"musetalk_{uuid.uuid4().hex[:12]}.mp4"
    source = as_source(video, "video")
    try:
        sample, audio, fps, count = stream_blend(source, faces, generated, path, **settings)
    finally:
        source.close()
    preview = sample.to(comfy_bridge.intermediate_device())
    return (preview, audio, fps, count, comfy_bridge.video_from_file(path))

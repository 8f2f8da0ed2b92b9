"""FaceDetectAndParse: box, landmarks, 256x256 crop and blend mask for every source frame (computed once per video)."""

from __future__ import annotations

from musetalk_core.types import FACES_TYPE, MODELS_TYPE

from . import comfy_bridge

CATEGORY = "MuseTalk"
PARSING_MODES = ["auto", "jaw", "raw", "neck"]
FACE_SELECTIONS = ["highest_score", "largest", "leftmost", "rightmost"]
LANDMARK_REGIONS = ["full_frame", "face_region"]


class FaceDetectAndParse:
    DESCRIPTION = ("Finds the face in every frame (S3FD + DWPose landmarks, as MuseTalk), crops it to 256x256 for "
                   "the VAE and builds the blend mask from BiSeNet face parsing. Frames without a face are kept and "
                   "passed through later; a video with no face at all comes out unchanged (with the new audio) "
                   "and a warning says why. Use the preview and the bbox_range text to tune bbox_shift.")
    CATEGORY = CATEGORY
    FUNCTION = "prepare"
    RETURN_TYPES = (FACES_TYPE, "IMAGE", "STRING")
    RETURN_NAMES = ("faces", "preview", "bbox_range")
    OUTPUT_TOOLTIPS = (
        "Per frame: face box, landmarks, 256x256 crop and blend mask, for VAEEncodeMasked and BlendAndAssemble.",
        "The frames with the crop box (red), its middle line (yellow: the mouth region starts below it), the blend "
        "box (blue), landmarks (white) and the blend mask (green). Every frame of clips up to 16 frames, else 16 "
        "frames sampled evenly over the video; frames larger than 768 px are downscaled.",
        "The reference's bbox_shift report: the range [-A~B] worth trying and the current value.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "musetalk_models": (MODELS_TYPE, {"tooltip": "From LoadMuseTalkModels."}),
                "bbox_shift": ("INT", {"default": 0, "min": -200, "max": 200, "tooltip":
                               "Moves the crop's centre line (landmark 29) down (+) or up (-) in pixels: positive "
                               "opens the mouth more. The bbox_range output suggests a range. 0 = reference."}),
                "extra_margin": ("INT", {"default": 10, "min": 0, "max": 200, "tooltip":
                                 "v1.5 only: pixels added below the chin to the crop box (the reference uses 10)."}),
                "parsing_mode": (PARSING_MODES, {"default": "auto", "tooltip":
                                 "Which parsed region is blended. auto: jaw for v15, raw for v1 (the reference). "
                                 "jaw: skin grown down over the jaw, cheeks trimmed. raw: skin+mouth+lips. "
                                 "neck: raw plus the neck."}),
                "left_cheek_width": ("INT", {"default": 90, "min": 0, "max": 256, "tooltip":
                                     "jaw mode: width (in 512-px parsing space) of the central band kept dilated "
                                     "on the left; outside it the mask is eroded. 90 = reference CLI/app."}),
                "right_cheek_width": ("INT", {"default": 90, "min": 0, "max": 256, "tooltip":
                                      "jaw mode: the same on the right side."}),
                "face_selection": (FACE_SELECTIONS, {"default": "highest_score", "tooltip":
                                   "Which face to use when several are found. highest_score = reference."}),
                "landmark_region": (LANDMARK_REGIONS, {"default": "full_frame", "tooltip":
                                    "full_frame: landmarks on the whole frame (reference). face_region: on the "
                                    "detected face's area (sharper for small faces in big frames)."}),
                "box_smoothing": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                                  "Smooths the crop boxes over time against jitter (0 = off, the reference; "
                                  "1 = strongest, a 5-frame Gaussian)."}),
                "detector_scale": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 1.0, "step": 0.05, "tooltip":
                                   "Runs the face detector on frames scaled by this factor (faster on large "
                                   "videos). 1 = full resolution = reference."}),
                "batch_size": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip":
                               "Frames per batch for detection, landmarks and parsing (more = faster, more VRAM)."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The source video frames (all the same size; RGB, values 0..1; alpha is "
                                     "ignored, grayscale is expanded), for short clips and generated frames. "
                                     "Connect this or 'video', not both."}),
                "video": ("VIDEO", {"tooltip": "The source video (core LoadVideo), read lazily in chunks: any length "
                                    "in bounded memory. Connect this or 'images', not both."}),
            },
        }

    def prepare(self, musetalk_models, images=None, bbox_shift=0, extra_margin=10, parsing_mode="auto",
                left_cheek_width=90, right_cheek_width=90, face_selection="highest_score",
                landmark_region="full_frame", box_smoothing=0.0, detector_scale=1.0, batch_size=8, video=None):
        from musetalk_core.faces.material import build_faces
        from musetalk_core.io.previews import sample_indices, strip
        from musetalk_core.io.sources import TensorSource, as_source
        from musetalk_core.io.spill import SpillFolder

        one_source(images, video, "FaceDetectAndParse")
        source = TensorSource(images, "images") if video is None else as_source(video, "video")
        spill = SpillFolder(comfy_bridge.temp_directory()) if video is not None else None
        shown = sample_indices(source.num_frames)
        try:
            faces, previews, bbox_range = build_faces(
                musetalk_models, source, bbox_shift=bbox_shift, extra_margin=extra_margin,
                parsing_mode=parsing_mode, left_cheek_width=left_cheek_width, right_cheek_width=right_cheek_width,
                face_selection=face_selection, landmark_region=landmark_region, box_smoothing=box_smoothing,
                detector_scale=detector_scale, batch_size=batch_size, spill=spill, preview_indices=shown,
                hooks=comfy_bridge.run_hooks(2 * source.num_frames))
        except BaseException:
            if spill is not None:
                spill.close()  # failed or interrupted: the temporary material goes now
            raise
        finally:
            source.close()
        preview = strip(previews, shown).to(comfy_bridge.intermediate_device())
        return (faces, preview, bbox_range)


def one_source(images, video, node: str):
    """Exactly one of the IMAGE and VIDEO inputs must be connected."""
    from musetalk_core.errors import InputError

    if (images is None) == (video is None):
        which = "both are" if images is not None else "neither is"
        raise InputError(f"{node}: connect either 'images' (an IMAGE batch) or 'video' (a VIDEO, e.g. from core "
                         f"LoadVideo, for long videos), not both; {which} connected.")
    return images if video is None else video

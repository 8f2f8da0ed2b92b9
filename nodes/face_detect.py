"""FaceDetectAndParse: box, landmarks, 256x256 crop and blend mask for every source frame (computed once per video)."""

from __future__ import annotations

from musetalk_core.types import FACES_TYPE, MODELS_TYPE
from musetalk_core.options import node_input

from . import comfy_bridge

CATEGORY = "MuseTalk"


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
                "bbox_shift": node_input("bbox_shift"),
                "extra_margin": node_input("extra_margin"),
                "parsing_mode": node_input("parsing_mode"),
                "left_cheek_width": node_input("left_cheek_width"),
                "right_cheek_width": node_input("right_cheek_width"),
                "face_selection": node_input("face_selection"),
                "landmark_region": node_input("landmark_region"),
                "box_smoothing": node_input("box_smoothing"),
                "detector_scale": node_input("detector_scale"),
                "batch_size": node_input("face_batch_size"),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The source video frames (all the same size; RGB, values 0..1; alpha is "
                                     "ignored, grayscale is expanded), for short clips and generated frames. "
                                     "Connect this or 'video', not both."}),
                "video": ("VIDEO", {"tooltip": "The source video (core LoadVideo), read lazily in chunks: any length "
                                    "in bounded memory. Connect this or 'images', not both."}),
                "speaker_audio": ("AUDIO", {"tooltip": "speaker_selection 'auto' only: the audio this face speaks "
                                            "(its loudness is matched against each face's mouth movement; IMAGE "
                                            "input is taken as 25 fps)."}),
                # last: workflows saved before it keep their widget positions
                "speaker_selection": node_input("speaker_selection"),
            },
        }

    def prepare(self, musetalk_models, images=None, bbox_shift=0, extra_margin=10, parsing_mode="auto",
                left_cheek_width=90, right_cheek_width=90, face_selection="highest_score",
                landmark_region="full_frame", box_smoothing=0.0, detector_scale=1.0, batch_size=8, video=None,
                speaker_selection="default", speaker_audio=None):
        from musetalk_core.faces.material import build_faces
        from musetalk_core.io.previews import sample_indices, strip
        from musetalk_core.io.sources import TensorSource, as_source
        from musetalk_core.io.spill import SpillFolder

        one_source(images, video, "FaceDetectAndParse")
        source = TensorSource(images, "images") if video is None else as_source(video, "video")
        spill = SpillFolder(comfy_bridge.temp_directory()) if video is not None else None
        shown = sample_indices(source.num_frames)
        speaker = ""
        try:
            with comfy_bridge.NodeReport() as report:  # no face, unusable boxes: on the node, not only in the log
                track_boxes, speaker = speaker_track(musetalk_models, source, speaker_selection, speaker_audio,
                                                     detector_scale, batch_size, extra_margin, landmark_region)
                faces, previews, bbox_range = build_faces(
                    musetalk_models, source, bbox_shift=bbox_shift, extra_margin=extra_margin,
                    parsing_mode=parsing_mode, left_cheek_width=left_cheek_width,
                    right_cheek_width=right_cheek_width, face_selection=face_selection,
                    landmark_region=landmark_region, box_smoothing=box_smoothing, detector_scale=detector_scale,
                    batch_size=batch_size, spill=spill, preview_indices=shown, track_boxes=track_boxes,
                    hooks=comfy_bridge.run_hooks(2 * source.num_frames))
        except BaseException:
            if spill is not None:
                spill.close()  # failed or interrupted: the temporary material goes now
            raise
        finally:
            source.close()
        report.show(speaker + faces_summary(faces.has_face, bbox_range))
        preview = strip(previews, shown).to(comfy_bridge.intermediate_device())
        return (faces, preview, bbox_range)


_TRACKS: dict = {}  # face tracks of recent videos: a second speaker's node on the same video tracks nothing again


def speaker_track(models, source, selection, audio, detector_scale, batch_size, extra_margin, landmark_region):
    """(the chosen speaker's S3FD box per frame or None for 'default', the report's first lines)."""
    from types import SimpleNamespace

    from musetalk_core.errors import InputError
    from musetalk_core.faces.tracks import detect_tracks
    from musetalk_core.speakers import Speaker, assign_tracks, track_landmarks
    from musetalk_core.faces.selection import parse_selection

    chosen = parse_selection(selection)
    if not chosen.tracked:
        return None, ""
    if chosen.kind == "auto" and audio is None:
        raise InputError("speaker_selection 'auto' compares the faces' mouths with the audio they speak: connect "
                         "'speaker_audio', or choose 'track N' or 'point X Y'.")
    key = (source.fingerprint(), float(detector_scale))
    tracks = _TRACKS.get(key)
    if tracks is None:
        tracks = detect_tracks(models, source, None, detector_scale=detector_scale, batch_size=batch_size,
                               hooks=comfy_bridge.run_hooks(source.num_frames))
        _TRACKS.clear()
        _TRACKS[key] = tracks
    import torch

    fps = float(source.fps or 25.0)
    options = SimpleNamespace(extra_margin=extra_margin, landmark_region=landmark_region, face_batch_size=batch_size)
    mapping = torch.arange(source.num_frames)
    k = assign_tracks([Speaker(audio, chosen, "speaker_selection")], tracks, fps, mapping,
                      track_landmarks(models, source, tracks, options))[0]
    return tracks.boxes[k], f"Speaker: face track {k} of {tracks.num_tracks}.\n{tracks.summary()}\n"


def faces_summary(has_face, bbox_range: str) -> str:
    """How many frames have a face (the others pass through unchanged), and the bbox_shift range."""
    flags = [bool(v) for v in has_face.tolist()]
    n, found = len(flags), sum(flags)
    if found == n:
        head = f"Face found in all {n} frames."
    elif not found:
        return f"No face found in any of the {n} frames: the video passes through unchanged."
    else:
        first = flags.index(False)
        head = (f"Face found in {found} of {n} frames; the {n - found} without one (first: frame {first}) pass "
                "through unchanged.")
    return f"{head} {bbox_range}"


def one_source(images, video, node: str):
    """Exactly one of the IMAGE and VIDEO inputs must be connected."""
    from musetalk_core.errors import InputError

    if (images is None) == (video is None):
        which = "both are" if images is not None else "neither is"
        raise InputError(f"{node}: connect either 'images' (an IMAGE batch) or 'video' (a VIDEO, e.g. from core "
                         f"LoadVideo, for long videos), not both; {which} connected.")
    return images if video is None else video

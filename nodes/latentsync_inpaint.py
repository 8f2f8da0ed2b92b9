"""LatentSyncInpaint: LatentSync's diffusion lip-sync over 16-frame windows, for BlendAndAssemble's affine restore."""

from __future__ import annotations

from musetalk_core.generators.latentsync.landmarks import BACKENDS
from musetalk_core.types import AUDIO_TYPE, FACES_TYPE, GENERATED_TYPE
from musetalk_core.options import node_input

from . import checks, comfy_bridge
from .load_latentsync import CATEGORY, LATENTSYNC_MODELS_TYPE


class LatentSyncInpaint:
    DESCRIPTION = ("Generates the lip-synced faces with LatentSync: each face is aligned by three points (eyebrow "
                   "centres, nose), the mouth region is denoised by the UNet3D over windows of 16 frames with "
                   "classifier-free guidance on the audio, and BlendAndAssemble warps the faces back into the "
                   "frames (LatentSync's own inverse-affine paste). Frames without a face pass through. Needs "
                   "WhisperAudioEncode with feature_mode v1.0-original.")
    CATEGORY = CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = (GENERATED_TYPE, "IMAGE")
    RETURN_NAMES = ("generated", "faces")
    OUTPUT_TOOLTIPS = (
        "The generated faces, the source frame of each output frame and the alignment, for BlendAndAssemble.",
        "The generated aligned faces (256 or 512 px, one per output frame, black where the source has no face); "
        "from a VIDEO: 16 faces sampled evenly over the clip.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latentsync_models": (LATENTSYNC_MODELS_TYPE, {"tooltip": "From Load LatentSync Model."}),
                "faces": (FACES_TYPE, {"tooltip": "From FaceDetectAndParse (its DWPose landmarks give the alignment "
                                                  "points; frames it found no face in pass through)."}),
                "audio_features": (AUDIO_TYPE, {"tooltip": "From WhisperAudioEncode with feature_mode "
                                                           "'v1.0-original' (LatentSync's features): one output "
                                                           "frame per window."}),
                "inference_steps": node_input("inference_steps"),
                "guidance_scale": node_input("guidance_scale"),
                "seed": node_input("seed", latentsync=True),
                "window_length": node_input("window_length"),
                "frame_mapping": node_input("frame_mapping"),
                "frame_offset": node_input("frame_offset"),
                "alignment": node_input("alignment"),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The source frames: the same IMAGE given to FaceDetectAndParse. "
                                                "Connect this or 'video'."}),
                "video": ("VIDEO", {"tooltip": "The source video: the same VIDEO given to FaceDetectAndParse "
                                               "(read in chunks; aligned crops and faces kept on disk)."}),
                # optional and last: workflows saved before it still validate and load with ddim (upstream's)
                "scheduler": node_input("scheduler"),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, alignment="dwpose"):
        """Before anything runs: InsightFace and its models, when that alignment is chosen."""
        return checks.verdict(checks.choice("alignment", alignment, BACKENDS) or checks.insightface_ready(alignment))

    def generate(self, latentsync_models, faces, audio_features, inference_steps=20, guidance_scale=1.5, seed=1247,
                 window_length=16, frame_mapping="bounce", frame_offset=0, alignment="dwpose", images=None,
                 video=None, scheduler="ddim"):
        from musetalk_core.audio.fit import fit_features
        from musetalk_core.errors import InputError
        from musetalk_core.frame_mapping import output_length
        from musetalk_core.generators.latentsync.generator import LatentSyncGenerator
        from musetalk_core.io.frames import uint8_to_image
        from musetalk_core.io.previews import sample_indices
        from musetalk_core.io.sources import TensorSource, as_source
        from musetalk_core.io.spill import SpillFolder
        from musetalk_core.options import LipsyncOptions, check_options
        from musetalk_core.pipeline import frames_used

        from .face_detect import one_source
        from .unet_inpaint import generated_summary

        one_source(images, video, "LatentSyncInpaint")
        if not hasattr(latentsync_models, "unet") or not hasattr(latentsync_models, "mask"):
            raise InputError("'latentsync_models' must come from Load LatentSync Model.")
        options = check_options(LipsyncOptions(
            generator=latentsync_models.version.name, feature_mode="v1.0-original", inference_steps=inference_steps,
            guidance_scale=guidance_scale, seed=seed, window_length=window_length, frame_mapping=frame_mapping,
            frame_offset=frame_offset, alignment=alignment, scheduler=scheduler))
        generator = LatentSyncGenerator(latentsync_models, options, _insightface_root())
        generator.check_audio(audio_features)
        source = TensorSource(images, "images") if video is None else as_source(video, "video")
        spill = SpillFolder(comfy_bridge.temp_directory()) if video is not None else None  # a VIDEO: on disk
        report = comfy_bridge.NodeReport().start()  # warnings shown on the node too
        try:
            if faces.frames_fingerprint and source.fingerprint() != faces.frames_fingerprint:
                raise InputError(f"'{source.name}': these are not the frames the faces were computed from. Connect "
                                 "the same frames to FaceDetectAndParse and LatentSyncInpaint.")
            audio_features = fit_features(audio_features, output_length(audio_features.num_frames,
                                                                        source.num_frames, frame_mapping))
            total = audio_features.num_frames
            mapping, used = frames_used(total, source.num_frames, options)
            aligned = generator.prepare(source, faces, used, spill, lambda _stage, n: comfy_bridge.run_hooks(n))
            plan = generator.plan(aligned, audio_features, mapping)
            generated = generator.generated(aligned, audio_features, plan, spill,
                                            comfy_bridge.run_hooks(generator.work_units(plan)),
                                            faces.frames_fingerprint)
        except BaseException:
            if spill is not None:
                spill.close()
            raise
        finally:
            report.stop()
            source.close()
        report.show(generated_summary(generated))
        shown = generated.faces if spill is None else generated.faces[sample_indices(total)]
        return (generated, uint8_to_image(shown, comfy_bridge.intermediate_device()))


def _insightface_root():
    """The CLI's search (latentsync.loading.insightface_root) over ComfyUI's models folders."""
    from musetalk_core.generators.latentsync.loading import insightface_root

    return insightface_root(comfy_bridge.models_search_dirs())

"""MuseTalkUNetInpaint: one UNet pass at t = 0 per output frame (audio window as context), then VAE decode."""

from __future__ import annotations

from musetalk_core.io.frames import uint8_to_image
from musetalk_core.types import AUDIO_TYPE, GENERATED_TYPE, LATENTS_TYPE, MODELS_TYPE
from musetalk_core.options import PARAMS, node_input

from . import checks, comfy_bridge

CATEGORY = "MuseTalk"
DECODER_CHOICES = PARAMS["decoder"].choices
ACCELERATION_CHOICES = PARAMS["acceleration"].choices  # presets; the CLI takes any '+' combination of flags


class MuseTalkUNetInpaint:
    DESCRIPTION = ("Generates the lip-synced 256x256 mouth region of every output frame: for each audio frame, the "
                   "UNet inpaints the lower half of the chosen source face, conditioned on that frame's audio "
                   "window, and the VAE decodes it. Output frames follow the source frames ping-pong (as the "
                   "reference), in a loop, or once then holding the last frame.")
    CATEGORY = CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = (GENERATED_TYPE, "IMAGE")
    RETURN_NAMES = ("generated", "faces")
    OUTPUT_TOOLTIPS = (
        "The generated faces and the source frame of each output frame (for BlendAndAssemble).",
        "The generated 256x256 faces as an IMAGE batch (one per output frame; black where the source frame has no "
        "face), for inspection or face restoration (feed back as BlendAndAssemble's replacement_faces). When the "
        "faces came from a VIDEO: 16 faces sampled evenly over the clip (the rest stay on disk).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "musetalk_models": (MODELS_TYPE, {"tooltip": "The models from LoadMuseTalkModels (UNet, VAE)."}),
                "latents": (LATENTS_TYPE, {"tooltip": "The face latents from VAEEncodeMasked."}),
                "audio_features": (AUDIO_TYPE, {"tooltip":
                                   "The audio windows from WhisperAudioEncode: one output frame per window."}),
                "frame_mapping": node_input("frame_mapping"),
                "frame_offset": node_input("frame_offset"),
                "batch_size": node_input("batch_size"),
                "decoder": node_input("decoder"),
                "acceleration": node_input("acceleration"),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, decoder="vae"):
        """Before anything runs: the TAESD decoder's file, when it is chosen."""
        return checks.verdict(checks.choice("decoder", decoder, DECODER_CHOICES) or checks.taesd_file(decoder))

    def generate(self, musetalk_models, latents, audio_features, frame_mapping, frame_offset, batch_size,
                 decoder="vae", acceleration="off"):
        from musetalk_core.generators.musetalk.generate import generate_faces
        from musetalk_core.io.previews import sample_indices
        from musetalk_core.io.spill import SpilledArray, SpillFolder

        total = output_frames(audio_features, latents, frame_mapping)
        store = None
        if getattr(latents, "from_video", False):  # long video: T faces on disk, not in (V)RAM
            store = SpilledArray(SpillFolder(comfy_bridge.temp_directory()), "generated.u8", (total, 256, 256, 3))
        try:
            with comfy_bridge.NodeReport() as report:  # e.g. features of the wrong kind, no frame with a face
                generated = generate_faces(musetalk_models, latents, audio_features, frame_mapping=frame_mapping,
                                           frame_offset=frame_offset, batch_size=batch_size,
                                           hooks=comfy_bridge.run_hooks(total), store=store, decoder=decoder,
                                           acceleration=acceleration)
        except BaseException:
            if store is not None:
                store.folder.close()
            raise
        report.show(generated_summary(generated))
        shown = generated.faces if store is None else generated.faces[sample_indices(total)]
        images = uint8_to_image(shown, comfy_bridge.intermediate_device())
        return (generated, images)


def output_frames(audio_features, latents, frame_mapping) -> int:
    """T as the length-fit mode decides it (the audio's frame count where the inputs are not usable: the library
    then refuses them with a clear message)."""
    from musetalk_core.frame_mapping import output_length

    total = getattr(audio_features, "num_frames", 1)
    try:
        return output_length(total, latents.num_frames, frame_mapping)
    except Exception:  # noqa: BLE001 - validation happens in generate_faces
        return total


def generated_summary(generated) -> str:
    """Output frames generated, and how many pass through for want of a face (a generator's node text)."""
    total = int(generated.has_face.numel())
    made = int(generated.has_face.sum())
    if made == total:
        return f"Generated all {total} output frames."
    return f"Generated {made} of {total} output frames; the {total - made} whose source frame has no face pass through."

"""MuseTalkUNetInpaint: one UNet pass at t = 0 per output frame (audio window as context), then VAE decode."""

from __future__ import annotations

from musetalk_core.frame_mapping import MODES
from musetalk_core.io.frames import uint8_to_image
from musetalk_core.types import AUDIO_TYPE, GENERATED_TYPE, LATENTS_TYPE, MODELS_TYPE

from . import comfy_bridge

CATEGORY = "MuseTalk"
DECODER_CHOICES = ("vae", "taesd")
# presets of musetalk_core.generators.musetalk.accel flags measured on an H100 (BENCHMARKS.md); the CLI takes any '+' combination
ACCELERATION_CHOICES = ("off", "cuda_graphs", "cuda_graphs+compile")


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
                "frame_mapping": (list(MODES), {"default": "ping_pong", "tooltip":
                                  "Which source frame each output frame uses when audio and video lengths differ. "
                                  "ping_pong: forward then backward, repeating (the reference). loop: restart "
                                  "from the first frame. once_hold: play once, then hold the last frame."}),
                "frame_offset": ("INT", {"default": 0, "min": -10000, "max": 10000, "tooltip":
                                 "Shift the video against the audio by this many frames: output frame i uses "
                                 "source position i + offset. Use it to fix an audio-video delay."}),
                "batch_size": ("INT", {"default": 8, "min": 1, "max": 256, "tooltip":
                               "Output frames per UNet/VAE pass. Higher is faster on a large GPU; lower it if you "
                               "run out of memory. As upstream's, the result follows it by float rounding (the "
                               "t = 0 time embedding and the kernels' sums are computed per batch): the same "
                               "batch size always gives the same faces, and 8 (upstream's default) reproduces "
                               "upstream."}),
                "decoder": (list(DECODER_CHOICES), {"default": "vae", "tooltip":
                            "vae: the exact sd-vae decoder (the reference). taesd: the tiny TAESD decoder, about 8x "
                            "faster than sd-vae's on an H100 (UNet + decode 2.2x), approximate (needs "
                            "models/musetalk/taesd/taesd_decoder.safetensors: python install.py "
                            "--download-models taesd)."}),
                "acceleration": (list(ACCELERATION_CHOICES), {"default": "off", "tooltip":
                                 "GPU speed-ups. off: as the reference. cuda_graphs: faster at small batch sizes "
                                 "(UNet + decode +16% at batch 8 on an H100); meant to give off's exact output (a "
                                 "short last batch runs without the graph; not yet checked on a GPU, see "
                                 "BENCHMARKS.md); on a CPU it changes nothing. cuda_graphs+compile: about 2x faster "
                                 "UNet + decode at batch 32 on an H100 after a one-time compile of about a minute; "
                                 "rounding differs slightly (bf16-level). See BENCHMARKS.md."}),
            }
        }

    def generate(self, musetalk_models, latents, audio_features, frame_mapping, frame_offset, batch_size,
                 decoder="vae", acceleration="off"):
        from musetalk_core.generators.musetalk.generate import generate_faces
        from musetalk_core.io.previews import sample_indices
        from musetalk_core.io.spill import SpilledArray, SpillFolder

        total = getattr(audio_features, "num_frames", 1)
        store = None
        if getattr(latents, "from_video", False):  # long video: T faces on disk, not in (V)RAM
            store = SpilledArray(SpillFolder(comfy_bridge.temp_directory()), "generated.u8", (total, 256, 256, 3))
        try:
            generated = generate_faces(musetalk_models, latents, audio_features, frame_mapping=frame_mapping,
                                       frame_offset=frame_offset, batch_size=batch_size,
                                       hooks=comfy_bridge.run_hooks(total), store=store, decoder=decoder,
                                       acceleration=acceleration)
        except BaseException:
            if store is not None:
                store.folder.close()
            raise
        shown = generated.faces if store is None else generated.faces[sample_indices(total)]
        images = uint8_to_image(shown, comfy_bridge.intermediate_device())
        return (generated, images)

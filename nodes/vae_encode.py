"""VAEEncodeMasked: the 8-channel latent ([lower-half-masked, full] crop) of every source face, once per video."""

from __future__ import annotations

from musetalk_core.types import FACES_TYPE, LATENTS_TYPE, MODELS_TYPE
from musetalk_core.options import node_input

from . import comfy_bridge

CATEGORY = "MuseTalk"


class VAEEncodeMasked:
    DESCRIPTION = ("Encodes every detected face crop with the VAE twice in one batch: with its lower half blacked "
                   "out, and whole. The two latents together (8 channels) tell the UNet what to inpaint and what "
                   "the face looks like. Frames without a face get no latent and pass through later. Computed "
                   "once per video: changing only the audio does not re-run this node.")
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (LATENTS_TYPE,)
    RETURN_NAMES = ("latents",)
    OUTPUT_TOOLTIPS = ("Per source frame with a face, the 8-channel UNet input latent (for MuseTalkUNetInpaint).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "musetalk_models": (MODELS_TYPE, {"tooltip": "The models from LoadMuseTalkModels (uses the VAE)."}),
                "faces": (FACES_TYPE, {"tooltip": "The face crops from FaceDetectAndParse."}),
                "latent_mode": node_input("latent_mode"),
                "seed": node_input("seed"),
                "batch_size": node_input("vae_batch_size"),
            }
        }

    def encode(self, musetalk_models, faces, latent_mode, seed, batch_size):
        from musetalk_core.generators.musetalk.latents import encode_faces
        from musetalk_core.io.spill import SpilledArray, SpillFolder, store_in

        hooks = comfy_bridge.run_hooks(int(faces.has_face.sum()) if hasattr(faces, "has_face") else 1)
        store = None  # faces from a VIDEO: latents on disk as well (32 KB per frame would grow with the video)
        if isinstance(getattr(faces, "crops", None), SpilledArray):
            store = store_in(SpillFolder(comfy_bridge.temp_directory()), "latents.bin")
        latents = encode_faces(musetalk_models, faces, latent_mode=latent_mode, seed=seed, batch_size=batch_size,
                               hooks=hooks, store=store)
        return (latents,)

"""LoadLatentSyncModel: LatentSync 1.5 / 1.6 (UNet3D, sd-vae, mouth mask), the second generator."""

from __future__ import annotations

from musetalk_core.generators.latentsync.config import VERSIONS
from musetalk_core.options import node_input

from . import checks, comfy_bridge

CATEGORY = "MuseTalk/LatentSync"
LATENTSYNC_MODELS_TYPE = "LATENTSYNC_MODELS"


@comfy_bridge.run_early  # a load failure (a damaged file, the config) comes before face detection
class LoadLatentSyncModel:
    DESCRIPTION = ("Loads ByteDance LatentSync (1.5: 256 px faces, about 8 GB of VRAM; 1.6: 512 px, about 18 GB) "
                   "from models/musetalk: latentsync15|16/latentsync_unet.pt, sd-vae and latentsync/mask.png. "
                   "Fetch them with python install.py --download-models latentsync15 (or latentsync16). Face "
                   "detection and the Whisper encoder come from Load MuseTalk Models (v15).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (LATENTSYNC_MODELS_TYPE,)
    RETURN_NAMES = ("latentsync_models",)
    OUTPUT_TOOLTIPS = ("The LatentSync UNet3D, VAE and mouth mask, for LatentSyncInpaint.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "version": (list(VERSIONS), {"default": "latentsync15", "tooltip":
                            "latentsync15: LatentSync 1.5, 256x256 faces, about 8 GB VRAM. latentsync16: "
                            "LatentSync 1.6, 512x512 faces (sharper teeth and lips), about 18 GB VRAM."}),
                "precision": node_input("precision"),
                "device": node_input("device"),
            },
            "optional": {
                "unet_config": ("STRING", {"default": "", "tooltip":
                                "Empty: the version's own UNet config (upstream's stage2.yaml / stage2_512.yaml). "
                                "Or an upstream config file (configs/unet/stage1.yaml, stage1_512.yaml, "
                                "stage2_efficient.yaml, ...), a path absolute or relative to models/musetalk; the "
                                "weights must have been trained with it."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, version):
        """Before anything runs: every LatentSync file of the version. (One input named: ComfyUI repeats the message
        for each. A bad unet_config fails the load, which runs first: run_early.)"""
        return checks.verdict(checks.choice("version", version, list(VERSIONS))
                              or (checks.model_files(version) if version is not None else None))

    def load(self, version, precision, device, unet_config=""):
        from musetalk_core.generators.latentsync.loading import load_latentsync

        models = load_latentsync(comfy_bridge.models_search_dirs(), version=version, precision=precision,
                                 device=comfy_bridge.torch_device(device), config_file=unet_config or None)
        return (models,)

"""LoadMuseTalkModels: every MuseTalk network, loaded once and shared by the other nodes."""

from __future__ import annotations

from musetalk_core.weights.loading import DEVICES, LANDMARK_BACKENDS, PRECISIONS, load_models
from musetalk_core.types import MODELS_TYPE, VERSIONS

from . import comfy_bridge

CATEGORY = "MuseTalk"


class LoadMuseTalkModels:
    DESCRIPTION = ("Loads the MuseTalk UNet, VAE, Whisper encoder, face detector, landmark model and face parser "
                   "from models/musetalk. Reports every missing file at once with the command that fetches it. "
                   "Loading again with the same settings reuses the loaded models.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODELS_TYPE,)
    RETURN_NAMES = ("musetalk_models",)
    OUTPUT_TOOLTIPS = ("All MuseTalk networks, for the other MuseTalk nodes.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "version": (list(VERSIONS), {"default": "v15", "tooltip":
                            "v15: MuseTalk 1.5 (musetalkV15/unet.pth). v1: MuseTalk 1.0 (musetalk/pytorch_model.bin)."}),
                "precision": (list(PRECISIONS), {"default": "auto", "tooltip":
                              "UNet/VAE/Whisper precision. auto: fp16 on GPU, fp32 on CPU (the reference's default)."}),
                "device": (list(DEVICES), {"default": "auto", "tooltip": "auto: CUDA, then MPS, then CPU."}),
                "landmark_backend": (list(LANDMARK_BACKENDS), {"default": "torch", "tooltip":
                                     "torch: built-in DWPose, no OpenMMLab needed. mmpose: upstream's own "
                                     "mmpose inference (install with python install.py --with-mmpose)."}),
            }
        }

    def load(self, version, precision, device, landmark_backend):
        models = load_models(comfy_bridge.models_search_dirs(), version=version, precision=precision,
                             device=comfy_bridge.torch_device(device), landmark_backend=landmark_backend,
                             placement=comfy_bridge.placement())
        return (models,)

"""LoadMuseTalkModels: every MuseTalk network, loaded once and shared by the other nodes."""

from __future__ import annotations

from musetalk_core.weights.loading import load_models
from musetalk_core.types import MODELS_TYPE, VERSIONS
from musetalk_core.options import node_input

from . import checks, comfy_bridge

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
                "version": node_input("version"),
                "precision": node_input("precision"),
                "device": node_input("device"),
                "landmark_backend": node_input("landmark_backend"),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, version):
        """Before anything runs: every file of the version is there (else the list of missing files and the
        command that fetches them)."""
        return checks.verdict(checks.choice("version", version, VERSIONS) or checks.musetalk_files(version))

    def load(self, version, precision, device, landmark_backend):
        models = load_models(comfy_bridge.models_search_dirs(), version=version, precision=precision,
                             device=comfy_bridge.torch_device(device), landmark_backend=landmark_backend,
                             placement=comfy_bridge.placement())
        return (models,)

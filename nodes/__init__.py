"""ComfyUI adapters: one module per graph node, plus comfy_bridge for ComfyUI services.

Node modules import the library lazily enough that importing the pack loads no model and touches no network.
"""

from __future__ import annotations

import importlib

# node id -> (module, class name, display name). Ids are fixed by the product card; never rename them.
_NODES = (
    ("LoadMuseTalkModels", "load_models", "Load MuseTalk Models"),
    ("FaceDetectAndParse", "face_detect", "MuseTalk Face Detect & Parse"),
    ("WhisperAudioEncode", "audio_encode", "MuseTalk Whisper Audio Encode"),
    ("VAEEncodeMasked", "vae_encode", "MuseTalk VAE Encode (masked)"),
    ("MuseTalkUNetInpaint", "unet_inpaint", "MuseTalk UNet Inpaint"),
    ("BlendAndAssemble", "blend", "MuseTalk Blend & Assemble"),
    # the second generator (issue 17): its output goes to BlendAndAssemble like MuseTalkUNetInpaint's
    ("LoadLatentSyncModel", "load_latentsync", "Load LatentSync Model (MuseTalk)"),
    ("LatentSyncInpaint", "latentsync_inpaint", "LatentSync Inpaint (MuseTalk)"),
)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

for _node_id, _module, _display in _NODES:
    NODE_CLASS_MAPPINGS[_node_id] = getattr(importlib.import_module(f".{_module}", __name__), _node_id)
    NODE_DISPLAY_NAME_MAPPINGS[_node_id] = _display

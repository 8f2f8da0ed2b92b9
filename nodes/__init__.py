"""ComfyUI adapters: one module per graph node, plus comfy_bridge for ComfyUI services.

Node modules import the library lazily enough that importing the pack loads no model and touches no network.
"""

from __future__ import annotations

from .audio_encode import WhisperAudioEncode
from .avatar import LoadMuseTalkAvatar, SaveMuseTalkAvatar
from .blend import BlendAndAssemble
from .face_detect import FaceDetectAndParse
from .latentsync_inpaint import LatentSyncInpaint
from .load_latentsync import LoadLatentSyncModel
from .load_models import LoadMuseTalkModels
from .speakers import AddSpeaker
from .unet_inpaint import MuseTalkUNetInpaint
from .vae_encode import VAEEncodeMasked

# node id -> (class, display name), in menu order. Ids are fixed by the product card; never rename them. Plain
# imports (no importlib): the Comfy Registry's scan flags dynamic imports (README, "Comfy Registry").
_NODES = (
    ("LoadMuseTalkModels", LoadMuseTalkModels, "Load MuseTalk Models"),
    ("FaceDetectAndParse", FaceDetectAndParse, "MuseTalk Face Detect & Parse"),
    ("WhisperAudioEncode", WhisperAudioEncode, "MuseTalk Whisper Audio Encode"),
    ("VAEEncodeMasked", VAEEncodeMasked, "MuseTalk VAE Encode (masked)"),
    ("MuseTalkUNetInpaint", MuseTalkUNetInpaint, "MuseTalk UNet Inpaint"),
    ("BlendAndAssemble", BlendAndAssemble, "MuseTalk Blend & Assemble"),
    # the second generator (issue 17): its output goes to BlendAndAssemble like MuseTalkUNetInpaint's
    ("LoadLatentSyncModel", LoadLatentSyncModel, "Load LatentSync Model (MuseTalk)"),
    ("LatentSyncInpaint", LatentSyncInpaint, "LatentSync Inpaint (MuseTalk)"),
    # several speakers, each with its own audio (issue 25): more faces for BlendAndAssemble
    ("AddSpeaker", AddSpeaker, "MuseTalk Add Speaker"),
    # real-time avatars (issue 26): a prepared video for python -m musetalk_core serve
    ("SaveMuseTalkAvatar", SaveMuseTalkAvatar, "MuseTalk Save Avatar (real-time)"),
    # ... and back into the graph: a new audio on a video prepared once
    ("LoadMuseTalkAvatar", LoadMuseTalkAvatar, "MuseTalk Load Avatar"),
)

NODE_CLASS_MAPPINGS = {node_id: cls for node_id, cls, _ in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: display for node_id, _, display in _NODES}

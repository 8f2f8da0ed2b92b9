"""MuseTalk Nodes: audio-driven lip-sync (MuseTalk 1.5 / 1.0) as six chainable ComfyUI nodes.

Importing the pack registers models/musetalk with ComfyUI and the node classes; it loads no model, reaches no
network and imports no heavy library (diffusers, transformers, cv2 load when a node first runs).
"""

import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
# The library is importable as plain ``musetalk_core`` (one module identity for nodes, command line and tests).
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
from .nodes.comfy_bridge import register_model_folder  # noqa: E402

register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

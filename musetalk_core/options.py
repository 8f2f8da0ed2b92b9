"""Every setting of a run, named exactly as the node input that takes it, with the node's default.

One ``LipsyncOptions`` describes a run in the command line, batch job lines and the benchmarks, so a setting means
the same thing in the graph, the command line and batch jobs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional


@dataclass
class LipsyncOptions:
    """Every node parameter, named exactly as the node input, with the node's default."""

    # LoadMuseTalkModels
    version: str = "v15"
    precision: str = "auto"
    device: str = "auto"
    landmark_backend: str = "torch"
    # FaceDetectAndParse
    bbox_shift: int = 0
    extra_margin: int = 10
    parsing_mode: str = "auto"
    left_cheek_width: int = 90
    right_cheek_width: int = 90
    face_selection: str = "highest_score"
    landmark_region: str = "full_frame"
    box_smoothing: float = 0.0
    detector_scale: float = 1.0
    face_batch_size: int = 8          # FaceDetectAndParse.batch_size
    # WhisperAudioEncode
    audio_padding_left: int = 2
    audio_padding_right: int = 2
    feature_mode: str = "reference"
    silence_threshold_db: float = -45.0
    # VAEEncodeMasked
    latent_mode: str = "sample"
    seed: int = 0
    vae_batch_size: int = 8           # VAEEncodeMasked.batch_size
    # MuseTalkUNetInpaint
    frame_mapping: str = "ping_pong"
    frame_offset: int = 0
    batch_size: int = 8               # MuseTalkUNetInpaint.batch_size
    decoder: str = "vae"              # "vae" (exact) or "taesd" (fast, approximate)
    acceleration: str = "off"         # musetalk_core.generators.musetalk.accel: e.g. "channels_last+cuda_graphs" on a GPU
    # BlendAndAssemble
    blur_factor: float = 0.05
    upper_boundary_ratio: float = 0.5
    silence_handling: bool = False
    silence_fade_frames: int = 3
    chunk_size: int = 16
    # The generator: "musetalk" (the six nodes above) or a LatentSync version (LoadLatentSyncModel +
    # LatentSyncInpaint; ``seed`` then seeds its noise, the CLI defaults it to upstream's 1247)
    generator: str = "musetalk"
    inference_steps: int = 20
    guidance_scale: float = 1.5
    window_length: int = 16
    alignment: str = "dwpose"
    insightface_root: Optional[str] = None

    def updated(self, **changes: Any) -> "LipsyncOptions":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}")
        return LipsyncOptions(**{**asdict(self), **changes})

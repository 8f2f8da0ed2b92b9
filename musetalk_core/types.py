"""The values that travel between the graph nodes (ComfyUI custom types MUSETALK_*).

Plain frozen dataclasses. Tensors stay on the compute device so consecutive nodes never copy through the CPU; only
IMAGE / MASK / AUDIO outputs move to ComfyUI's intermediate device. Nothing here mutates its inputs: ComfyUI caches
node outputs, so a stage that changed a tensor in place would corrupt a cached upstream value.

Conventions used throughout:
- frames are indexed 0..N-1 in source order (N = the IMAGE batch given to FaceDetectAndParse);
- output frames are indexed 0..T-1 (T = the number of audio-driven frames from WhisperAudioEncode);
- boxes are int64 (x1, y1, x2, y2) in source-frame pixels, x2/y2 exclusive as numpy slices use them;
- images inside the pipeline are uint8 RGB, (..., H, W, 3); the reference works in BGR, we flip only where a
  reference cv2/PIL step needs it so that values stay identical.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch

VERSIONS = ("v15", "v1")

# ComfyUI type names (the strings on the wire).
MODELS_TYPE = "MUSETALK_MODELS"
FACES_TYPE = "MUSETALK_FACES"
AUDIO_TYPE = "MUSETALK_AUDIO"
LATENTS_TYPE = "MUSETALK_LATENTS"
GENERATED_TYPE = "MUSETALK_GENERATED"
SPEAKERS_TYPE = "MUSETALK_SPEAKERS"  # further speakers of the same frames: a tuple of (faces, generated)


class Placement:
    """Moves networks onto the compute device for a stage. The default keeps them there once moved.

    Inside ComfyUI the bridge substitutes a placement that goes through ComfyUI's model management, so MuseTalk's
    networks give VRAM back to other models between runs and come back when a stage needs them.
    """

    def activate(self, modules: Sequence[torch.nn.Module], device: torch.device) -> None:
        for module in modules:
            module.to(device)


@dataclass(frozen=True, eq=False)
class MuseTalkModels:
    """MUSETALK_MODELS: every network a run needs, loaded once by LoadMuseTalkModels.

    Fields:
    - version: "v15" or "v1" (which UNet weights; also the blending defaults downstream).
    - device: where the stages compute.
    - dtype: precision of UNet, VAE, positional encoding and Whisper encoder (detector, landmarks and parser run
      fp32 like the reference).
    - models_dir: the folder the files came from (for messages).
    - networks: name -> module. Names: "unet", "vae", "pe", "whisper" (transformers WhisperEncoder), "s3fd",
      "landmarks" (DWPose, plain torch or the mmpose wrapper), "face_parser" (BiSeNet).
    - extras: non-module things a stage needs (e.g. the Whisper feature-extractor settings, the landmark backend).
    - placement: how networks reach the device (see Placement).
    """

    version: str
    device: torch.device
    dtype: torch.dtype
    models_dir: Path
    networks: Mapping[str, Any]
    extras: Mapping[str, Any] = field(default_factory=dict)
    placement: Placement = field(default_factory=Placement)

    def network(self, name: str) -> Any:
        try:
            return self.networks[name]
        except KeyError:
            raise KeyError(f"MUSETALK_MODELS has no '{name}' network (loaded: {sorted(self.networks)})") from None

    @contextmanager
    def use(self, *names: str) -> Iterator[tuple]:
        """Bring the named networks onto the device for one stage and yield them in that order."""
        modules = tuple(self.network(n) for n in names)
        self.placement.activate([m for m in modules if isinstance(m, torch.nn.Module)], self.device)
        with torch.inference_mode():
            yield modules


@dataclass(frozen=True, eq=False)
class MuseTalkFaces:
    """MUSETALK_FACES: per source frame, everything later stages need from it (computed once per video).

    Unlike the other types its tensors live on the CPU: they are per-frame material that the VAE and blend stages
    move in batches, so a long video cached by ComfyUI does not pin VRAM.

    - frame_size: (H, W) of the source frames; num_frames: N.
    - has_face: bool (N,). Frames without a face are kept and passed through unchanged by the blend stage.
    - boxes: int64 (N, 4), the crop box (after bbox_shift and, for v1.5, extra_margin); zeros where no face.
    - landmarks: int64 (N, 68, 2), iBUG-68 face landmarks as int32-truncated by the reference; -1 where unknown.
    - crop_boxes: int64 (N, 4), the expanded square blend box [xc-s, yc-s, xc+s, yc+s] (may leave the frame).
    - masks: per frame a uint8 (2s, 2s) tensor or None: the parsing mask of the expanded crop limited to the face
      box, before the upper-boundary cut and the Gaussian blur (the blend stage applies both, so the boundary ratio
      and blur factor stay blend inputs).
    - crops: uint8 (N, 256, 256, 3) RGB, the box resized with cv2 LANCZOS4 (zeros where no face). For a VIDEO
      input, crops and masks are spill.SpilledArray / SpilledMasks (same indexing, kept in a temporary folder).
    - bbox_range: the reference's "adjustable range" report as text.
    - settings: the parameters used (version, bbox_shift, extra_margin, parsing_mode, cheeks, expand...).
    - frames_fingerprint: a cheap fingerprint of the source frames, so the blend stage can refuse other frames.
    - on_disk: crops and masks were spilled to a folder (decided once, by whoever ran the faces stage with a
      spill folder: a VIDEO input); later per-frame material of this video follows it (latents, generated faces).
    """

    frame_size: tuple
    has_face: torch.Tensor
    boxes: torch.Tensor
    landmarks: torch.Tensor
    crop_boxes: torch.Tensor
    masks: tuple
    crops: torch.Tensor
    bbox_range: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    frames_fingerprint: Optional[str] = None
    on_disk: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.has_face.shape[0])

    @property
    def face_indices(self) -> torch.Tensor:
        return torch.nonzero(self.has_face, as_tuple=False).flatten()


@dataclass(frozen=True, eq=False)
class MuseTalkAudio:
    """MUSETALK_AUDIO: per output frame, the Whisper window the UNet attends to.

    - features: (T, 50, 384) in the models' dtype, on the device, token index = 5*t + layer, *before* the
      positional encoding (the UNet stage adds it, as the reference does just before the UNet).
    - fps: the exact video frame rate the windows were cut for (float, not truncated).
    - silent: bool (T,), True where the frame's audio window is below the silence threshold.
    - audio: the AUDIO mapping as given (waveform (1, C, S), sample_rate) for passing on.
    - feature_mode: "reference" (HF Whisper hidden states, HEAD) or "v1.0-original".
    - version: the model version the features were made for ("v15"/"v1").
    - encoder: ``encoder(audio, fps, num_frames=T)`` encodes another AUDIO with these settings (set by the graph's
      WhisperAudioEncode), so a generation node can fit the windows to a longer output (audio.fit.fit_features).
    """

    features: torch.Tensor
    fps: float
    silent: torch.Tensor
    audio: Mapping[str, Any]
    feature_mode: str = "reference"
    version: str = "v15"
    settings: Mapping[str, Any] = field(default_factory=dict)
    encoder: Any = field(default=None, compare=False, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True, eq=False)
class MuseTalkLatents:
    """MUSETALK_LATENTS: per source frame with a face, the 8-channel UNet input latent.

    - latents: (M, 8, 32, 32) = cat([masked-lower-half latent, full-crop latent]) * scaling factor, models' dtype.
      M = 0 for a video without a usable face: later stages then pass every frame through.
    - frame_indices: int64 (M,), the source frame of each latent (the frames where faces.has_face is True).
    - num_frames: N, the number of source frames.
    - version, latent_mode ("sample" or "mean"), seed.
    - from_video: the faces' material is on disk (MuseTalkFaces.on_disk: a VIDEO): MuseTalkUNetInpaint then keeps its
      generated faces on disk too and shows a sample of them instead of an IMAGE of every face.
    """

    latents: torch.Tensor
    frame_indices: torch.Tensor
    num_frames: int
    version: str = "v15"
    latent_mode: str = "sample"
    seed: int = 0
    frames_fingerprint: Optional[str] = None
    from_video: bool = False

    def latent_slot(self) -> torch.Tensor:
        """int64 (N,): for each source frame, the row in ``latents``, or -1 when the frame has no face."""
        slot = torch.full((self.num_frames,), -1, dtype=torch.long)
        slot[self.frame_indices.cpu()] = torch.arange(self.frame_indices.numel())
        return slot


@dataclass(frozen=True, eq=False)
class MuseTalkGenerated:
    """MUSETALK_GENERATED: per output frame, the generated 256x256 face and the source frame it belongs to.

    - faces: uint8 (T, 256, 256, 3) RGB on the device (VAE decode rounded as the reference does); frames whose
      source had no face hold zeros. For a VIDEO input a spill.SpilledArray on disk (same indexing).
    - source_index: int64 (T,), the source frame of each output frame (decided once, by frame_mapping).
    - has_face: bool (T,), whether the output frame was generated (its source frame had a face).
    - fps: the output frame rate; audio: the MUSETALK_AUDIO it was driven by (for silence flags and the sound).
    - skipped: None, or bool (T,): frames not generated because their audio is silent (skip_silent; zeros in
      ``faces``). Only BlendAndAssemble with silence_handling on may use such a result (it shows the source there).
    - restore: None for MuseTalk (BlendAndAssemble pastes the 256x256 face into the face box through the parsing
      mask), or a generator's own paste-back with a ``resolution`` and ``make_blender(...)`` (LatentSync:
      latentsync.restore.AffineRestore, faces are then aligned (T, res, res, 3) crops warped back by the inverse
      affine of their source frame).
    """

    faces: torch.Tensor
    source_index: torch.Tensor
    has_face: torch.Tensor
    fps: float
    audio: Optional[MuseTalkAudio] = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    frames_fingerprint: Optional[str] = None
    skipped: Optional[torch.Tensor] = None
    restore: Optional[Any] = None

    @property
    def num_frames(self) -> int:
        return int(self.source_index.shape[0])

    @property
    def face_size(self) -> int:
        """Side of the generated faces: 256 for MuseTalk, the generator's resolution with its own restore."""
        return int(self.restore.resolution) if self.restore is not None else 256

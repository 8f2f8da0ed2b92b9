"""LatentSync behind the Generator interface: three-point aligned crops per source frame, 16-frame windows of DDIM,
and the inverse-affine paste-back (restore.AffineBlender).

The same functions as the graph's LatentSyncInpaint and BlendAndAssemble. It needs no 256-px crops and no parsing
masks from the faces stage (face_crops False): only the DWPose landmarks and which frames have a face. Frames are
generated window by window as the blend asks for them; the unclamped float faces the restore reads go straight from
a window to the blend (nothing is written to disk but the aligned crops of long videos).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ...io.spill import store_in
from ..base import Batch, Generator, Plan


class LatentSyncGenerator(Generator):
    """``models``: LatentSyncModels (UNet3D, VAE, mouth mask); ``options``: the run's settings (inference_steps,
    guidance_scale, seed, window_length, alignment, frame_mapping, frame_offset); ``insightface_root``: where
    InsightFace's models are (alignment 'insightface')."""

    face_crops = False

    def __init__(self, models, options, insightface_root=None):
        from .generate import SamplingSettings
        from .landmarks import check_backend

        self.models = models
        self.options = options
        self.name = models.version.name
        self.settings = SamplingSettings(options.inference_steps, options.guidance_scale, options.seed,
                                         options.window_length).check()
        check_backend(options.alignment)
        self.insightface_root = insightface_root

    def with_options(self, options) -> "LatentSyncGenerator":
        return LatentSyncGenerator(self.models, options, self.insightface_root)

    def check_audio(self, features) -> None:
        from .generate import check_audio

        check_audio(features)

    def material_settings(self) -> dict:
        return {"generator": self.name, "alignment": self.options.alignment,
                "resolution": int(self.models.version.resolution)}

    def prepare(self, source, faces, wanted: np.ndarray, spill, hooks_for):
        """The aligned crops and matrices of the frames the output needs (AlignedVideo; frames without a face, or
        not needed, hold zeros). With DWPose points only frames with a face are read."""
        from .video_align import align_video, alignment_plan

        frames = alignment_plan(faces, source.num_frames, self.options.alignment, wanted)
        return align_video(source, faces, self.models.version.resolution, self.options.alignment,
                           device=str(self.models.device), insightface_root=self.insightface_root,
                           hooks=hooks_for("align", len(frames)), store=store_in(spill, "aligned.u8"),
                           frames=frames)

    def plan(self, aligned, features, mapping: torch.Tensor) -> Plan:
        """Output frames whose source has an aligned face; the detail is the mapping the windows read crops by
        (the windows themselves follow from has_face: generate.face_windows)."""
        return Plan(aligned.has_face[mapping], mapping)

    def batches(self, aligned, features, plan: Plan, first: int, last: int) -> Iterator[Batch]:
        """One window at a time: (its output frames, the unclamped float faces the restore reads)."""
        from .generate import iter_windows

        mapping, m = plan.detail, self.models
        with torch.inference_mode():
            for start, stop, _lat, _u8, exact in iter_windows(
                    m.unet, m.vae, m.mask, lambda rows: aligned.crops[mapping[rows].tolist()], features.features,
                    plan.has_face, self.settings, device=m.device, first=first, last=last):
                yield torch.arange(start, stop), exact

    def blender(self, aligned, faces, mapping: torch.Tensor, plan: Plan, features, blend_options):
        from .restore import AffineRestore

        o = blend_options
        return AffineRestore(aligned.matrices, int(self.models.version.resolution)).make_blender(
            faces, mapping, plan.has_face, torch.device("cpu"), silent=features.silent,
            silence_handling=o.silence_handling, silence_fade_frames=o.silence_fade_frames)


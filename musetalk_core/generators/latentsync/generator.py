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
    scheduler, guidance_scale, seed, window_length, alignment, frame_mapping, frame_offset); ``insightface_root``: where
    InsightFace's models are (alignment 'insightface')."""

    face_crops = False

    def __init__(self, models, options, insightface_root=None):
        from .generate import SamplingSettings
        from .landmarks import check_backend

        self.models = models
        self.options = options
        self.name = models.version.name
        self.settings = SamplingSettings(options.inference_steps, options.guidance_scale, options.seed,
                                         options.window_length, options.scheduler).check()
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

    def work_units(self, plan: Plan) -> int:
        """Progress units of generating the whole plan: the denoising steps of every window."""
        from .generate import count_steps

        return count_steps(plan.has_face, self.settings)

    def generated(self, aligned, features, plan: Plan, spill, hooks, frames_fingerprint=None):
        """The graph's LatentSyncInpaint: every window generated and kept in a MUSETALK_GENERATED (uint8 faces for
        the IMAGE output, the unclamped ones the restore reads); in ``spill`` (a VIDEO), else in memory."""
        from .generate import generate_latentsync, restore_dtype

        res, t = int(self.models.version.resolution), features.num_frames
        faces = store_in(spill, "generated.u8")
        exact = store_in(spill, "generated.restore")
        o = self.options
        return generate_latentsync(
            self.models, aligned, features, frame_mapping=o.frame_mapping, frame_offset=o.frame_offset,
            settings=self.settings, hooks=hooks, frames_fingerprint=frames_fingerprint,
            store=None if faces is None else faces((t, res, res, 3), torch.uint8),
            restore_store=None if exact is None else exact((t, res, res, 3), restore_dtype(self.models.dtype)))

    def blender(self, aligned, faces, mapping: torch.Tensor, plan: Plan, features, blend_options):
        from .restore import AffineRestore

        o = blend_options
        return AffineRestore(aligned.matrices, int(self.models.version.resolution)).make_blender(
            faces, mapping, plan.has_face, torch.device("cpu"), silent=features.silent,
            silence_handling=o.silence_handling, silence_fade_frames=o.silence_fade_frames)


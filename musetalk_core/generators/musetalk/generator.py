"""MuseTalk behind the Generator interface: latents of the masked 256-px crops, one UNet step per output frame,
VAE (or TAESD) decode, and the box paste-back through the parsing mask (blend.Blender).

The same functions as the graph's VAEEncodeMasked, MuseTalkUNetInpaint and BlendAndAssemble, so the core's output
equals the graph's bit for bit (tests/test_streaming.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import numpy as np
import torch

from ...io.spill import store_in
from ..base import Batch, Generator, Plan


class MuseTalkGenerator(Generator):
    """``models``: MUSETALK_MODELS (UNet, VAE, positional encoding; TAESD when the decoder asks for it);
    ``options``: the run's settings (latent_mode, seed, vae_batch_size, frame_mapping, frame_offset, batch_size,
    decoder, acceleration, silence_handling)."""

    name = "musetalk"
    face_crops = True

    def __init__(self, models, options):
        from .generate import check_generation_settings

        check_generation_settings(options.decoder, options.acceleration)
        self.models = models
        self.options = options

    def with_options(self, options) -> "MuseTalkGenerator":
        return MuseTalkGenerator(self.models, options)

    def material_settings(self) -> dict:
        o = self.options
        return {"generator": self.name, "latent_mode": o.latent_mode, "seed": int(o.seed),
                "vae_batch_size": int(o.vae_batch_size)}

    def prepare(self, source, faces, wanted: np.ndarray, spill, hooks_for):
        """VAEEncodeMasked of the frames with a face: MuseTalkLatents (spilled), or None without a face."""
        from .latents import encode_faces

        if not bool(faces.has_face.any()):
            return None
        o = self.options
        return encode_faces(self.models, faces, o.latent_mode, o.seed, o.vae_batch_size,
                            hooks=hooks_for("vae encode", int(faces.has_face.sum())),
                            store=store_in(spill, "latents.bin"))

    def plan(self, latents, features, mapping: torch.Tensor) -> Plan:
        from .generate import plan_generation

        if latents is None:
            return Plan(torch.zeros(features.num_frames, dtype=torch.bool))
        # with silence handling the blend shows the source on silent frames: generating them would be wasted work
        detail = plan_generation(latents, features, self.options.frame_mapping, self.options.frame_offset,
                                 skip_silent=self.options.silence_handling)
        return Plan(detail.has_face & ~detail.skipped, detail)

    def batches(self, latents, features, plan: Plan, first: int, last: int) -> Iterator[Batch]:
        from .generate import iter_generated

        if plan.detail is None:
            return iter(())
        o = self.options
        todo = _batches_for(plan.detail, first, last, o.batch_size)
        return iter_generated(self.models, latents, features, todo, int(o.batch_size), o.decoder, o.acceleration)

    def blender(self, latents, faces, mapping: torch.Tensor, plan: Plan, features, blend_options):
        from ...blend.blender import Blender

        o = blend_options
        return Blender(faces, mapping, plan.has_face, self.models.device, silent=features.silent,
                       blur_factor=o.blur_factor, upper_boundary_ratio=o.upper_boundary_ratio,
                       silence_handling=o.silence_handling, silence_fade_frames=o.silence_fade_frames)


def _batches_for(plan, first: int, last: int, batch_size: int):
    """The plan cut to the whole run's UNet batches that hold an output frame in [first, last): batch k is
    plan.todo[k*B:(k+1)*B] whoever generates it, so a segment's faces equal the whole run's."""
    todo = plan.todo
    lo = int(torch.searchsorted(todo, torch.tensor(int(first))))
    hi = int(torch.searchsorted(todo, torch.tensor(int(last))))
    if hi <= lo:
        return replace(plan, todo=todo[:0])
    b = int(batch_size)
    return replace(plan, todo=todo[lo // b * b:min(int(todo.numel()), -(-hi // b) * b)])

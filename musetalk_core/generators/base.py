"""The Generator interface: what the pipeline core (musetalk_core.pipeline) asks of a lip-sync generator.

The core runs the shared stages (audio windows, which source frames the output uses, face location, blending,
writing) and asks the generator for the rest, never branching on which generator it is:

    face_crops          does the faces stage crop and parse (MuseTalk's 256-px crops and blend masks)?
    check_audio         refuse audio windows the generator cannot use, before a frame is decoded
    prepare             per-video material from the located faces (MuseTalk: latents; LatentSync: aligned crops)
    plan                per output frame: generated or shown as it is (decided once, for the whole run)
    batches             generated faces for the planned output frames overlapping [first, last), in output order
    blender             its paste-back: a blend.Blender that composites those faces into the source frames

A third generator is a new folder under generators/ with a class implementing these six, and an entry in
generators.load_generator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator, Tuple

import numpy as np
import torch

Batch = Tuple[torch.Tensor, torch.Tensor]  # (output frame indices, int64; their faces, one per index)


@dataclass(frozen=True)
class Plan:
    """Per output frame, decided once for the whole run (segments of a split batch job share it).

    has_face: bool (T,) output frames that get a generated face; everything else shows its source frame.
    detail: the generator's own plan (MuseTalk: generate.GenerationPlan; LatentSync: its denoising windows)."""

    has_face: torch.Tensor
    detail: Any = None


class Generator(ABC):
    """A lip-sync generator over the pipeline core (see the module docstring). Holds its loaded networks and its
    settings; its per-video material and plan are plain values the core keeps (picklable when spilled)."""

    name: str = ""
    face_crops: bool = True

    @property
    def device(self) -> torch.device:
        """Where ``batches`` compute: its networks' device (pipeline.render makes the batches ahead of the blend
        on a CUDA GPU)."""
        return torch.device(getattr(getattr(self, "models", None), "device", "cpu"))

    def check_audio(self, features) -> None:
        """Refuse audio windows this generator was not trained on (default: any)."""

    def with_options(self, options) -> "Generator":
        """This generator on the same loaded networks with another run's settings (batch jobs)."""
        raise NotImplementedError

    def material_settings(self) -> dict:
        """The settings the per-video material depends on (batch jobs reuse material with equal settings)."""
        return {"generator": self.name}

    @abstractmethod
    def prepare(self, source, faces, wanted: np.ndarray, spill, hooks_for) -> Any:
        """Per-video material of the ``wanted`` source frames, or None when no source frame has a face.
        ``spill``: where per-frame arrays may go (io.spill.SpillFolder); ``hooks_for(stage, total)``: progress."""

    @abstractmethod
    def plan(self, material: Any, features, mapping: torch.Tensor) -> Plan:
        """Which output frames are generated (``mapping``: the source frame of each output frame)."""

    @abstractmethod
    def batches(self, material: Any, features, plan: Plan, first: int, last: int) -> Iterator[Batch]:
        """The generated faces of every planned output frame in [first, last), in output order, in the batches
        the whole run would make (so a segment's faces equal the whole run's). May yield frames outside
        [first, last) that share a batch with frames inside it."""

    @abstractmethod
    def blender(self, material: Any, faces, mapping: torch.Tensor, plan: Plan, features, blend_options):
        """The paste-back over the source frames: a blend.Blender (rows, stream) for this run."""

    def close(self) -> None:
        """Release what ``batches`` set up (default: nothing)."""


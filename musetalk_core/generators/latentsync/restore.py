"""LatentSync's paste-back for BlendAndAssemble: the generated aligned face warped back through the inverse affine.

MuseTalk pastes a 256 x 256 face into a box through a parsing mask; LatentSync (lipsync_pipeline.restore_video)
resizes the res x res face to the alignment crop (bicubic, antialias), warps it back with the inverse of the
frame's alignment matrix and blends it through the eroded, blurred crop area (``align.restore_face``). A
MUSETALK_GENERATED made by LatentSyncInpaint carries an ``AffineRestore`` and BlendAndAssemble composites with
``AffineBlender`` instead of its box blender; everything else (frame reading, chunking, VIDEO writing, audio cut to
T / fps, pass-through of frames without a face) is BlendAndAssemble's own.

Upstream's order, exactly: the decoded, mouth-pasted face in [-1, 1] is NOT clamped before the restore; it is
resized (bicubic, antialias: overshoots further), warped back, and only then clamped to [0, 255] (``restore_face``),
blended, and truncated to uint8. So ``AffineRestore.faces`` carries the unclamped float faces (float32 when the
decoder ran in float32, else float16) and BlendAndAssemble reads those; MUSETALK_GENERATED.faces stays the uint8
faces (IMAGE output, previews). Replacement faces (uint8 IMAGE) are read as ``u8 / 127.5 - 1``. Clamping and
rounding first (as this pack did before) moves output pixels by up to 56 grey levels wherever the decoder overshoots
[-1, 1] (golden: tests/golden/latentsync/restore.npz, tests/test_latentsync_generate.py). The restore itself runs in
float32 (upstream: float16 on the GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import torch

from ...blend.chunk_loop import ChunkBlender
from ...errors import InputError
from . import align


@dataclass(frozen=True, eq=False)
class AffineRestore:
    """Per source frame the (2, 3) alignment matrix (zeros where no face), and the face resolution; ``faces``: per
    output frame the generated face as the restore reads it, (T, res, res, 3) float in [-1, 1] NOT clamped (a tensor
    or a SpilledArray), or None (the restore then reads MUSETALK_GENERATED's uint8 faces)."""

    matrices: torch.Tensor
    resolution: int
    faces: Optional[Any] = None

    def make_blender(self, faces, source_index, has_face, device, *, silent=None, silence_handling=False,
                     silence_fade_frames=3, **_unused) -> "AffineBlender":
        return AffineBlender(self, faces, source_index, has_face, device, silent=silent,
                             silence_handling=silence_handling, silence_fade_frames=silence_fade_frames)


class AffineBlender(ChunkBlender):
    """ChunkBlender (rows, silence weights, chunks, stream) with LatentSync's inverse-affine paste-back."""

    def __init__(self, restore: AffineRestore, faces, source_index: torch.Tensor, generated_has_face: torch.Tensor,
                 device, *, silent: Optional[torch.Tensor] = None, silence_handling: bool = False,
                 silence_fade_frames: int = 3):
        if restore.matrices.shape[0] != faces.num_frames:
            raise InputError(f"'generated' holds alignment matrices for {restore.matrices.shape[0]} frames but the "
                             f"faces are of {faces.num_frames}: connect the FaceDetectAndParse output that fed "
                             "LatentSyncInpaint.")
        super().__init__(source_index, generated_has_face, device, silent=silent, silence_handling=silence_handling,
                         silence_fade_frames=silence_fade_frames)
        self.restore = restore
        _, (self.crop_w, self.crop_h) = align.face_template(restore.resolution)

    def paste(self, chunk: torch.Tensor, start: int, rows: List[int], generated_faces) -> None:
        """Each face resized to the alignment crop, warped back into its frame and blended through the eroded
        crop area; one frame at a time (each has its own warp and paste mask). The restore works on whole uint8
        frames, so an output frame with a face comes back rounded to uint8 levels as a whole."""
        gen = generated_faces(rows)
        for k, i in enumerate(rows):
            j = int(self.source[i])
            frame = (chunk[i - start] * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
            face = gen[k].to(self.device).permute(2, 0, 1)
            # float faces are the generator's unclamped [-1, 1] values (AffineRestore.faces); uint8 ones are rounded
            face = face.float() if face.is_floating_point() else face.float() / 127.5 - 1.0
            face = align.resize_face(face, (self.crop_h, self.crop_w))
            out = align.restore_face(frame, face, self.restore.matrices[j], self.restore.resolution)
            new = torch.from_numpy(out).to(device=self.device, dtype=torch.float32) / 255.0
            w = float(self.weights[i])
            chunk[i - start] = new if w >= 1.0 else chunk[i - start] + w * (new - chunk[i - start])

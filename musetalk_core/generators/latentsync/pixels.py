"""LatentSync's face pixels <-> latents: normalising, mouth masking, VAE encode/decode and the mouth paste-back.

As lipsync_pipeline.py and image_processor.py do it: faces in [-1, 1]; the masked face is ``face * mask`` with the
3-channel fixed mask (1 = keep, 0 = mouth); latents are ``(sample - shift) * scale`` with sd-vae-ft-mse at
scale 0.18215, shift 0, where ``sample`` is a DRAW from the VAE posterior, not its mean. The generated face keeps the
source pixels outside the mouth: ``decoded * (1 - mask) + face * mask``.

Randomness, as upstream on the CPU: one generator serves the initial noise, then per window the masked faces'
posterior draw, then the reference faces' draw. ``LatentSyncNoise`` keeps that order, so a seed reproduces the
reference's numbers exactly on the CPU in fp32 (upstream uses the device's global generator).
"""

from __future__ import annotations

import torch

from ...errors import WeightFileError
from .config import VAE_SCALING_FACTOR, VAE_SHIFT_FACTOR


def load_fixed_mask(path, resolution: int) -> torch.Tensor:
    """mask.png -> (3, res, res) float64 in [0, 1] (load_fixed_mask: RGB, cv2 LANCZOS4 resize, / 255)."""
    import cv2
    import numpy as np

    image = cv2.imread(str(path))
    if image is None:
        raise WeightFileError(path, "is not a readable image: LatentSync's mouth mask (mask.png) was expected. "
                                    "Download it again with python install.py --download-models latentsync15.")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4) / 255.0
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def face_pixels(faces: torch.Tensor) -> torch.Tensor:
    """uint8 (f, 3, H, W) -> float32 in [-1, 1] (ImageProcessor: x / 255, Normalize(0.5, 0.5))."""
    return (faces.float() / 255.0 - 0.5) / 0.5


def masked_faces(pixels: torch.Tensor, mask_image: torch.Tensor) -> torch.Tensor:
    """Faces with the mouth blacked out (to 0, the middle grey of [-1, 1]); ``mask_image`` (3, H, W) in [0, 1]."""
    # Upstream multiplies by the float64 mask and casts to the model dtype afterwards: do the same.
    return (pixels.double() * mask_image.double()).float()


def paste_mouth(decoded: torch.Tensor, pixels: torch.Tensor, mask_image: torch.Tensor) -> torch.Tensor:
    """Generated mouth, source face elsewhere (paste_surrounding_pixels_back with masks = mask_image[0:1])."""
    keep = mask_image[0:1].to(decoded.dtype)
    return decoded * (1 - keep) + pixels.to(decoded.dtype) * keep


def encode(vae, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scaled latents (1, 4, f, h, w) of (f, 3, H, W) pixels: a posterior draw from ``generator``."""
    dist = vae.encode(pixels.to(vae.dtype)).latent_dist
    noise = torch.randn(dist.mean.shape, generator=generator, dtype=dist.mean.dtype, device=generator.device)
    draw = dist.mean + dist.std * noise.to(dist.mean.device)
    latents = (draw - VAE_SHIFT_FACTOR) * VAE_SCALING_FACTOR
    return latents.permute(1, 0, 2, 3).unsqueeze(0)


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """(1, 4, f, h, w) scaled latents -> (f, 3, H, W) pixels in about [-1, 1]."""
    latents = latents / VAE_SCALING_FACTOR + VAE_SHIFT_FACTOR
    return vae.decode(latents[0].permute(1, 0, 2, 3).to(vae.dtype)).sample


class LatentSyncNoise:
    """The reference's order of random draws from one seeded CPU generator (see the module docstring)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(int(seed))

    def initial(self, num_frames: int, height: int, width: int) -> torch.Tensor:
        """(1, 4, num_frames, h, w): one (4, h, w) draw repeated over the frames (prepare_latents)."""
        noise = torch.randn((1, 4, 1, height, width), generator=self.generator, dtype=torch.float32)
        return noise.repeat(1, 1, num_frames, 1, 1)

    def skip_posteriors(self, count: int, shape, dtype: torch.dtype) -> None:
        """Make and drop ``count`` posterior draws of ``shape`` (``encode``'s draws of a window not generated)."""
        for _ in range(count):
            torch.randn(shape, generator=self.generator, dtype=dtype)

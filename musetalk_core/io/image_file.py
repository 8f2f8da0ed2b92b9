"""Still images: a file read as one uint8 RGB frame, as core LoadImage reads it."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .media_open import PathLike, check_readable

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def read_image(path: PathLike) -> torch.Tensor:
    """A still image as uint8 (1, H, W, 3) RGB (EXIF orientation applied, alpha dropped), like core LoadImage."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = check_readable(path, "Image")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            arr = np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"Image file '{path}' could not be read as an image ({exc}). Give a PNG/JPEG/WebP file.") from None
    return torch.from_numpy(arr).unsqueeze(0)

"""FaceDetectAndParse's settings, checked once before any frame is read."""

from __future__ import annotations

import math

import numpy as np

from . import parsing
from ..errors import InputError

def check_face_settings(parsing_mode, left_cheek_width, right_cheek_width, box_smoothing, batch_size):
    if parsing_mode not in parsing.PARSING_MODES:
        raise InputError(f"'parsing_mode' must be one of {', '.join(parsing.PARSING_MODES)}; got '{parsing_mode}'.")
    for name, value in (("left_cheek_width", left_cheek_width), ("right_cheek_width", right_cheek_width)):
        if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 256:
            raise InputError(f"'{name}' must be an integer from 0 to 256 (columns of the 512-px parsing map); "
                             f"got {value!r}.")
    if not isinstance(box_smoothing, (int, float)) or not 0.0 <= float(box_smoothing) <= 1.0 \
            or math.isnan(float(box_smoothing)):
        raise InputError(f"'box_smoothing' must be between 0 (off, the reference) and 1; got {box_smoothing!r}.")
    if not isinstance(batch_size, (int, np.integer)) or int(batch_size) < 1:
        raise InputError(f"'batch_size' must be an integer of at least 1; got {batch_size!r}.")

"""Errors the pipeline raises on purpose.

Every message names the input or file at fault, what was expected and what to do, so users never see a traceback
from deep inside torch. ``MuseTalkError`` is the common base; the CLI turns it into exit code 2.
"""

from __future__ import annotations


class MuseTalkError(Exception):
    """Bad input or a bad model file, with a message meant for the user."""


class InputError(MuseTalkError, ValueError):
    """A node or CLI input that cannot be used (wrong shape, empty, out of range...)."""


class NoFramesError(InputError):
    """A video file whose video stream decodes to no frame at all."""


class OutputError(MuseTalkError, OSError):
    """The output file could not be written (disk full, path refused by the OS...); nothing was left behind."""


class ModelFilesMissing(MuseTalkError, FileNotFoundError):
    """One or more model files are absent; ``missing`` lists every one of them."""

    def __init__(self, message: str, missing: list):
        super().__init__(message)
        self.missing = missing


class WeightFileError(MuseTalkError):
    """A weight file that does not parse, or that holds another model's weights."""

    def __init__(self, path, summary: str):
        super().__init__(f"Model file {path}: {summary}")
        self.path = str(path)
        self.summary = summary

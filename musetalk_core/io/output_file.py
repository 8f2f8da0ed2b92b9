"""The output file: its path checked before any work, never one of the inputs, and written atomically.

``atomic_output`` gives a temporary file next to the output and renames it only on success: a failed or
interrupted run never leaves a half-written file, an OS refusal (disk full, a path the OS will not create) is an
``OutputError`` naming the output, and the file gets the mode any new file of the user gets (0666 minus the umask,
e.g. 0644), not a private temp file's 0600.
"""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Optional

from ..errors import InputError, OutputError
from .media_open import PathLike


def check_output_path(path: PathLike) -> Path:
    """The output's folder must exist and be writable; the file name must end in a container PyAV can write."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        if not folder.is_dir():
            raise InputError(f"Output folder '{folder}' does not exist. Create it first or choose another --output.")
        if not os.access(folder, os.W_OK):
            raise InputError(f"Output folder '{folder}' is not writable.")
        if path.is_dir():
            raise InputError(f"Output path '{path}' is a folder; give a file name such as out.mp4.")
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise InputError(f"Output path '{path}' cannot be used: {exc.strerror or exc}. Choose another --output.") from None
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        raise InputError(f"Output file '{path}' must end in .mp4, .mov, .mkv or .m4v (H.264 + AAC; .mkv: H.264 + "
                         "FLAC).")
    return path


def file_key(path: PathLike):
    """One key per file: device and inode for an existing file (so a symbolic or a hard link to it gives the same
    key), else the path with links resolved (a file not written yet)."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.realpath(path)


def refuse_overwriting_inputs(output: PathLike, inputs: Mapping[str, Optional[PathLike]],
                              option: str = "--output") -> None:
    """The output must not be one of the inputs (also through a symbolic or a hard link): writing the result
    there would replace the source the run reads, and the user's original would be lost. ffmpeg refuses the
    same. ``inputs``: what each input is called in a message (``--video``) -> its path (None: not given)."""
    for name, path in inputs.items():
        if path is not None and file_key(output) == file_key(path):
            raise InputError(f"{option} '{output}' is the same file as {name} '{path}': writing the result there "
                             f"would replace your source. Choose another {option} file name.")


def _output_failure(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "free some space or choose another --output on a disk with room"
    else:
        advice = "choose another --output in a normal folder you can write to"
    return OutputError(f"Output file '{path}' could not be written: {reason}. Nothing was written; {advice}.")


@contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a new temporary file next to ``path``; rename it to ``path`` when the block succeeds.

    On any failure the temporary file is removed. OS errors (disk full, quota, a folder the OS refuses to create
    files in although access() allowed it) become an OutputError that names the output. The file is created
    with mode 0666 and the OS applies the user's umask, as for any file the user creates.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        for _ in range(16):  # O_EXCL: never reuse or clobber a file another run is writing
            # the stem is shortened so that the temporary name fits wherever the output's name fits
            candidate = folder / f".{path.stem[:64]}.{secrets.token_hex(4)}.tmp{path.suffix}"
            try:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            tmp = candidate
            break
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary file name")
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise _output_failure(path, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass

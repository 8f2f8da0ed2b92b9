"""Tiny checkpoints in the real formats: same file names, same key names, small configs where the format allows.

``write_models(dir, version, networks)`` fills a models folder exactly as a user's would be laid out, so the
loaders are always tested through the real code path. One module per network writes its files.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Iterable, Optional

# network name (as in musetalk_core.weights.loading.NETWORKS) -> module in this package with write(models_dir, version)
WRITERS = {
    "unet": "unet_vae",
    "vae": "unet_vae",
    "whisper": "whisper",
    "s3fd": "s3fd",
    "landmarks": "dwpose",
    "face_parser": "bisenet",
}


def write_models(models_dir: Path, version: str = "v15", networks: Optional[Iterable[str]] = None, **options) -> Path:
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    names = list(WRITERS) if networks is None else [n for n in networks if n in WRITERS]
    done = set()
    for name in names:
        module = WRITERS[name]
        if (module, name if module == "unet_vae" else "") in done:
            continue
        writer = importlib.import_module(f"{__name__}.{module}")
        writer.write(models_dir, version, name=name, **options)
        done.add((module, name if module == "unet_vae" else ""))
    return models_dir

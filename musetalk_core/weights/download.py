"""Fetching the model files: an explicit action only (``python install.py --download-models``), never at run time.

Exactly the files the layout needs are fetched (hf_hub_download per file, not whole repositories); the S3FD and
OpenAI tiny.pt files come from their published URLs. Files already present are skipped, downloads go to a
temporary name first so an interrupted download never leaves a truncated file at the final path, and without
network the user gets one message listing every file still missing and where it goes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from . import files as model_files
from ..errors import InputError, ModelFilesMissing

log = logging.getLogger(__name__)

CHOICES = ("v15", "v1", "all", "taesd") + model_files.LATENTSYNC_VERSIONS  # "all": MuseTalk + TAESD, no LatentSync


def files_to_fetch(which: str) -> list:
    if which not in CHOICES:
        raise InputError(f"Unknown download set '{which}': use one of {', '.join(CHOICES)}.")
    if which == "all":
        return [f for f in model_files.MODEL_FILES
                if set(f.versions) & set(model_files.MUSETALK_VERSIONS) or f.role == "taesd_decoder"]
    if which == "taesd":
        return [model_files.FILES_BY_ROLE["taesd_decoder"]]
    return model_files.files_for(which)


def _fetch_hf(spec: model_files.ModelFile, target: Path) -> None:
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        got = hf_hub_download(repo_id=spec.repo, filename=spec.repo_file, local_dir=tmp)
        os.replace(got, target)


def _fetch_url(spec: model_files.ModelFile, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(spec.url, timeout=60) as response, open(partial, "wb") as out:  # noqa: S310
        shutil.copyfileobj(response, out, length=1 << 20)
    os.replace(partial, target)


def target_path(models_dir: Path, spec: model_files.ModelFile) -> Path:
    """Where a downloaded file goes: the choice whose name matches what is fetched."""
    fetched_name = os.path.basename(spec.repo_file or spec.url)
    for choice in spec.choices:
        if os.path.basename(choice) == fetched_name:
            return Path(models_dir) / choice
    return Path(models_dir) / spec.path


def download_models(which: str = "v15", models_dir: Optional[Path] = None,
                    fetchers: Optional[dict] = None, report: Callable[[str], None] = log.info) -> List[Path]:
    """Fetch every missing file of ``which`` into ``models_dir``; returns the paths written.

    Raises ModelFilesMissing listing every file that could not be fetched (e.g. no network), after trying all.
    """
    models_dir = Path(models_dir or model_files.default_models_dirs()[0])
    fetch_hf = (fetchers or {}).get("hf", _fetch_hf)
    fetch_url = (fetchers or {}).get("url", _fetch_url)
    written, failed = [], []
    for spec in files_to_fetch(which):
        if model_files.resolve(models_dir, spec.role) is not None:
            continue
        target = target_path(models_dir, spec)
        target.parent.mkdir(parents=True, exist_ok=True)
        report(f"downloading {target} [{spec.size}]")
        try:
            (fetch_hf if spec.repo else fetch_url)(spec, target)
            written.append(target)
        except Exception as exc:  # noqa: BLE001 - keep going, report everything at the end
            failed.append((spec, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    if failed:
        specs = [s for s, _ in failed]
        reasons = "\n".join(f"  - {s.path}: {why}" for s, why in failed)
        version = which if which != "all" else "all"
        raise ModelFilesMissing(
            f"Could not download {len(failed)} file(s):\n{reasons}\n"
            + model_files.missing_message(specs, [models_dir], version), specs)
    return written


def still_missing(which: str, models_dir: Path) -> Iterable[model_files.ModelFile]:
    return [s for s in files_to_fetch(which) if model_files.resolve(Path(models_dir), s.role) is None]

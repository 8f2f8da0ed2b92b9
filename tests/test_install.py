"""install.py's mmpose recipe: what it installs must be enough for the stack to import on a fresh machine."""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import install  # noqa: E402

STACK = ["mmpose", "mmdet", "mmengine", "mmcv-lite", "xtcocotools"]
# Left out on purpose (install.py, --no-deps): torchvision/chumpy are never used by DWPose, opencv-python is the GUI
# twin of opencv-python-headless, numpy/Pillow/packaging come with the requirements, the stack itself is pinned.
DELIBERATELY_SKIPPED = {"torchvision", "chumpy", "opencv-python", "numpy", "pillow", "packaging", "regex",
                        "mmengine", "xtcocotools"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def test_recipe_names_every_runtime_dependency_the_stack_declares():
    if not all(_installed(d) for d in STACK):
        pytest.skip("mmpose stack not installed (python install.py --dev installs it)")
    recipe = {_name(r) for r in install.MMPOSE_RUNTIME}
    missing = {}
    for dist in STACK:
        for req in md.requires(dist) or []:
            if "extra ==" in req or "win32" in req:
                continue
            name = _name(req)
            if name not in recipe and name not in DELIBERATELY_SKIPPED:
                missing.setdefault(dist, []).append(name)
    assert not missing, f"install.py MMPOSE_RUNTIME lacks declared dependencies: {missing}"


def test_installed_stack_imports_the_way_the_backend_imports_it():
    """Once install.py has put the stack in (CI: --dev), the backend's own import must succeed (six was missing once)."""
    if not _installed("mmpose"):
        pytest.skip("mmpose not installed (python install.py --dev installs it)")
    from musetalk_core.models.dwpose_mmpose import import_mmpose

    init_model, inference_topdown = import_mmpose()
    assert callable(init_model) and callable(inference_topdown)
    assert install.mmpose_present()

"""Shared fixtures: the repo root on sys.path, the pack loaded by path as ComfyUI does, tiny model folders."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Two cores: keep torch from oversubscribing when pytest-xdist or helpers run alongside. An explicit
# OMP_NUM_THREADS wins (torch already follows it), so the suite can be run with 1 and 2 threads to show that no
# expected value depends on how the float work is split.
if not os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def load_pack():
    """Import the pack from its folder under a path-derived module name, exactly as ComfyUI's loader does."""
    name = str(ROOT).replace(".", "_x_").replace(os.sep, "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def tiny_models_factory(tmp_path_factory):
    """Writes (and caches per argument set) a tiny real-format models folder."""
    from tiny import write_models

    made = {}

    def make(version="v15", networks=None, **options):
        key = (version, tuple(networks) if networks else None, tuple(sorted(options.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"models_{version}")
            made[key] = write_models(folder, version, networks, **options)
        return made[key]

    return make


@pytest.fixture
def models_env(monkeypatch):
    """Point the pack at a models folder the way a user outside ComfyUI would ($MUSETALK_MODELS_DIR)."""

    def use(folder):
        monkeypatch.setenv("MUSETALK_MODELS_DIR", str(folder))
        return folder

    return use

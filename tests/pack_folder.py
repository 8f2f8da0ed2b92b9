"""pytest plugin, loaded by pyproject.toml's addopts: collect the pack's own folder as a plain directory.

The pack folder has an __init__.py (ComfyUI imports the pack through it), so pytest would treat it as a package and
import that __init__.py under the folder's name, which fails for every test when the clone's folder name is not a
Python identifier (ComfyUI-MuseTalk-Nodes, a git worktree named wt-x...). The tests load the pack themselves
(conftest.load_pack, the way ComfyUI does).
"""

from pathlib import Path

import pytest

_PACK = Path(__file__).resolve().parents[1]


def pytest_collect_directory(path, parent):
    if Path(path).resolve() == _PACK:
        return pytest.Dir.from_parent(parent, path=Path(path))
    return None

"""What the browser checks need (the graph editor: test_comfyui_integration; the real-time page:
test_realtime_server): node, Chromium ($CHROMIUM, default /usr/bin/chromium) and playwright-core, from $NODE_PATH or
where ``python install.py --dev`` puts it (<venv>/node/node_modules). Where one is missing the checks skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

INSTALLED = Path(sys.prefix) / "node" / "node_modules"


def node_path() -> str:
    """$NODE_PATH, else install.py's node_modules when it holds playwright-core, else ""."""
    if os.environ.get("NODE_PATH"):
        return os.environ["NODE_PATH"]
    return str(INSTALLED) if (INSTALLED / "playwright-core").is_dir() else ""


def node_env(**extra) -> dict:
    """The environment a node check runs in: this one, with NODE_PATH naming playwright-core."""
    return dict(os.environ, NODE_PATH=node_path(), **extra)


def browser_missing() -> Optional[str]:
    """Why the browser checks cannot run here, or None."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not shutil.which("node") or not os.path.exists(chromium):
        return "node or Chromium not installed"
    probe = subprocess.run(["node", "-e", "require.resolve('playwright-core')"], capture_output=True, env=node_env())
    return None if probe.returncode == 0 else ("playwright-core not found (NODE_PATH, or python install.py --dev "
                                               "puts it in <venv>/node)")

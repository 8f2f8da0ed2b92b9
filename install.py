"""Install MuseTalk Nodes' requirements without ever touching torch, torchvision or torchaudio.

ComfyUI-Manager runs this file after `pip install -r requirements.txt`; running it twice is safe.

  python install.py                          requirements (torch kept exactly as installed)
  python install.py --dev                    + test tools, the mmpose yardstick backend, when ../shared/vendor holds
                                             the ComfyUI snapshot a real ComfyUI for the integration tests, and when npm
                                             is there playwright-core for the browser checks (what CI runs)
  python install.py --with-mmpose            + mmengine/mmcv-lite/mmdet/mmpose without mmcv's CUDA ops (xtcocotools is built from source: needs a C compiler)
  python install.py --with-ray               + Ray, for `python -m musetalk_core batch --ray` (batch jobs on many GPUs/machines)
  python install.py --with-server            + aiohttp and aiortc, for `python -m musetalk_core serve` (real-time avatars, WebRTC)
  python install.py --download-models v15    fetch the model files (v15 | v1 | all | taesd | latentsync15 | latentsync16) into models/musetalk
  python install.py --download-models v15 --models-dir /path/to/models/musetalk
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Used only when no torch is installed at all (a fresh development machine); inside ComfyUI torch is always there.
TORCH_WHEN_ABSENT = os.environ.get("MUSETALK_TORCH_SPEC", "torch==2.13.0")

# The OpenMMLab recipe that installs without a compiler on current torch/numpy (see README, Troubleshooting).
MMPOSE_NO_DEPS = ["mmengine==0.10.7", "mmcv-lite==2.1.0", "mmdet==3.3.0", "mmpose==1.3.2"]
# Everything the four packages declare (pip show ... Requires), minus torchvision, chumpy and the GUI opencv-python
# (--no-deps below skips them on purpose), so nothing is left to whatever the machine happens to have: six (mmdet)
# was missing on fresh machines once.
MMPOSE_RUNTIME = ["setuptools<81", "addict", "yapf", "termcolor", "rich", "pyyaml", "terminaltables", "shapely",
                  "scipy", "six", "tqdm", "pycocotools", "json_tricks", "munkres", "matplotlib", "cython",
                  "opencv-python-headless"]
XTCOCOTOOLS = "xtcocotools==1.14.3"
# --dev: the ComfyUI the integration tests run the pack in (the project's snapshot; tools/comfyui_env.py sets it up)
COMFYUI_SNAPSHOT = HERE.parent / "shared" / "vendor" / "comfyui-0.8.0.tar.gz"
# Optional: batch jobs on a Ray cluster (musetalk_core/batch/ray_runner.py is the only module importing it).
RAY = "ray>=2.9"
# Optional: the real-time avatar server (musetalk_core/realtime/server.py, webrtc.py); --dev includes it.
SERVER_REQUIREMENTS = HERE / "requirements-server.txt"


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.check_call(cmd)


def installed_torch() -> str | None:
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError:
        return None
    return out.split("+")[0] or None


def torch_constraint() -> str:
    """A constraints file pinning the installed torch, so no requirement can upgrade or replace it."""
    version = installed_torch()
    if version is None:
        pip(TORCH_WHEN_ABSENT)
        version = installed_torch()
    handle = tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False)
    handle.write(f"torch=={version}\n")
    handle.close()
    return handle.name


def install_requirements(constraint: str, dev: bool) -> None:
    pip("-r", str(HERE / "requirements.txt"), "-c", constraint)
    if dev:
        pip("-r", str(HERE / "requirements-dev.txt"), "-c", constraint)


def mmpose_present() -> bool:
    """True when the whole stack imports the way the backend imports it (mmpose.apis pulls in mmdet, six, ...)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import xtcocotools; "
            "from musetalk_core.models.dwpose_mmpose import import_mmpose; import_mmpose()")
    return subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True).returncode == 0


def install_mmpose(constraint: str) -> None:
    """mmpose/mmdet as an optional backend: --no-deps so nothing pulls torchvision, chumpy or a second cv2."""
    if mmpose_present():
        print("mmpose backend already installed.")
        return
    pip(*MMPOSE_RUNTIME, "-c", constraint)
    pip("--no-deps", *MMPOSE_NO_DEPS)
    # The xtcocotools wheel is built against numpy 1.x; build it from source against the numpy installed here.
    pip("--force-reinstall", "--no-deps", "--no-build-isolation", "--no-binary", "xtcocotools", XTCOCOTOOLS)
    if not mmpose_present():
        raise SystemExit("The mmpose stack was installed but does not import; run\n  python -c \"from "
                         "musetalk_core.models.dwpose_mmpose import import_mmpose; import_mmpose()\"\nto see why.")


def setup_comfyui() -> None:
    """A real ComfyUI 0.8.0 in this environment (<venv>/comfyui/ComfyUI) for tests/test_comfyui_integration.py."""
    script = HERE / "tools" / "comfyui_env.py"
    tarball = Path(os.environ.get("MUSETALK_COMFYUI_TARBALL") or COMFYUI_SNAPSHOT)
    if not script.is_file() or not tarball.is_file():
        print(f"No ComfyUI snapshot at {tarball}: the tests that run the pack inside ComfyUI will skip "
              "(see tools/comfyui_env.py).")
        return
    subprocess.check_call([sys.executable, str(script)])


# --dev: playwright-core (from the npm registry) for the browser checks, the graph editor and the real-time page, in
# <venv>/node; tests/browser.py finds it there. Without node, npm or Chromium those checks skip.
PLAYWRIGHT = "playwright-core@1.65.2"


def setup_browser_tools() -> None:
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        print("No node/npm: the browser checks (graph editor, real-time page) will skip.")
        return
    target = Path(sys.prefix) / "node"
    if subprocess.call([npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(target), PLAYWRIGHT]):
        print(f"Warning: npm could not install {PLAYWRIGHT}; the browser checks will skip.")


def download(which: str, models_dir: str | None) -> int:
    sys.path.insert(0, str(HERE))
    from musetalk_core.weights.download import download_models
    from musetalk_core.errors import MuseTalkError

    try:
        written = download_models(which, Path(models_dir) if models_dir else default_models_dir(), report=print)
    except MuseTalkError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{len(written)} file(s) downloaded; the {which} model set is complete.")
    return 0


def default_models_dir() -> Path:
    """ComfyUI's models/musetalk when this pack sits in ComfyUI/custom_nodes/, else $MUSETALK_MODELS_DIR or ./models/musetalk."""
    env = os.environ.get("MUSETALK_MODELS_DIR")
    if env:
        return Path(env.split(os.pathsep)[0])
    if HERE.parent.name == "custom_nodes" and (HERE.parent.parent / "models").is_dir():
        return HERE.parent.parent / "models" / "musetalk"
    return HERE / "models" / "musetalk"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true", help="also install test tools and the mmpose yardstick")
    parser.add_argument("--with-mmpose", action="store_true", help="install the optional mmpose landmark backend")
    parser.add_argument("--with-ray", action="store_true",
                        help="install Ray for batch jobs on many GPUs or machines (python -m musetalk_core batch --ray)")
    parser.add_argument("--with-server", action="store_true",
                        help="install aiohttp and aiortc for the real-time avatar server (python -m musetalk_core "
                             "serve; WebRTC)")
    parser.add_argument("--download-models", nargs="?", const="v15",
                        choices=["v15", "v1", "all", "taesd", "latentsync15", "latentsync16"],
                        help="fetch model files (default v15; 'all' is every MuseTalk file and the optional TAESD "
                             "decoder; taesd = that decoder only; LatentSync sets apart)")
    parser.add_argument("--models-dir", help="models folder (default: ComfyUI's models/musetalk or ./models/musetalk)")
    parser.add_argument("--skip-requirements", action="store_true", help="only download / only mmpose")
    parser.add_argument("--skip-comfyui", action="store_true", help="--dev without the ComfyUI for the integration tests")
    args = parser.parse_args(argv)

    want_mmpose = args.with_mmpose or (args.dev and not args.skip_requirements)
    if not args.skip_requirements or want_mmpose or args.with_ray or args.with_server:
        constraint = torch_constraint()
        try:
            if not args.skip_requirements:
                install_requirements(constraint, args.dev)
            if want_mmpose:  # also with --skip-requirements ("only mmpose")
                install_mmpose(constraint)
            if args.with_ray:  # the constraint keeps torch as it is
                pip(RAY, "-c", constraint)
            if args.with_server:  # --dev has it already (requirements-dev.txt includes the file)
                pip("-r", str(SERVER_REQUIREMENTS), "-c", constraint)
        finally:
            os.unlink(constraint)  # running twice must not pile up temporary files
        if args.dev and not args.skip_requirements and not args.skip_comfyui:
            setup_comfyui()
        if args.dev and not args.skip_requirements:
            setup_browser_tools()
    if args.download_models:
        return download(args.download_models, args.models_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

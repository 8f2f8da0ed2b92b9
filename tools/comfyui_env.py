"""A real ComfyUI for the integration tests: the vendored 0.8.0 snapshot, installed into THIS Python's environment.

    python tools/comfyui_env.py                 unpack, install, link the pack, check that ComfyUI starts
    python tools/comfyui_env.py --dest DIR      somewhere else than <venv>/comfyui (default)
    python tools/comfyui_env.py --frontend latest --frontend-dir DIR
                                                only fetch that comfyui-frontend-package (a version, or 'latest') and
                                                unpack it; prints the folder to pass to main.py --front-end-root

Run it with the Python of a virtual environment that already has the pack's requirements and torch (what
`python install.py --dev` makes; `install.py --dev` also calls this script when the snapshot is there). It:

1. unpacks ``../shared/vendor/comfyui-0.8.0.tar.gz`` (``$MUSETALK_COMFYUI_TARBALL`` to use another) into
   ``<dest>/ComfyUI``; the tests find it there (``<sys.prefix>/comfyui/ComfyUI``) or through ``$COMFYUI_DIR``;
2. installs ComfyUI's requirements.txt without its torch / torchvision / torchaudio lines, under a constraints
   file pinning the installed torch, so pip can neither upgrade it nor swap the CPU build for a CUDA one;
3. installs torchvision and torchaudio for that torch, and makes them import if their compiled parts cannot load.
   The registry (PyPI) has no CPU build of either for Linux x86-64: its torchvision / torchaudio wheels are CUDA
   builds whose ``.so`` files need ``libtorch_cuda.so`` / ``libc10_cuda.so``, which a CPU torch lacks. Neither
   can be built here (no source distribution on PyPI). So, only when the import really fails:
   - torchvision (the release made for this torch, installed normally): its ``_meta_registrations.py`` registers
     fake kernels for ``torchvision::nms`` / ``qnms`` even when the C++ ops did not load, and the import dies with
     "operator torchvision::nms does not exist". The two decorators are guarded with ``extension._has_ops()``, as
     the file's other registrations already are. ComfyUI imports torchvision only for models and transforms; no
     path used here needs its C++ ops.
   - torchaudio (the newest release not newer than torch, ``--no-deps`` because the registry's releases stop
     before torch's): its loader raises when a ``.so`` is present but cannot load, and returns quietly when there is
     none. The compiled files are moved into ``torchaudio/lib/unloadable-cuda-build/``, and torchaudio runs
     in its pure-Python mode; ComfyUI's audio nodes use only ``torchaudio.functional.resample`` (pure Python).
   An environment whose torchvision / torchaudio already import (a CUDA machine, the PyTorch index's CPU wheels) is
   left exactly as it is.
4. links the pack into ``ComfyUI/custom_nodes/musetalk-nodes`` (so ``python main.py --cpu`` there loads it);
5. starts ComfyUI once with ``--quick-test-for-ci`` and fails if the pack or a core video/audio node is missing.

Exit status 2 when the snapshot is not there (the message says where it was looked for). A test-only tool: it is
not part of the published node pack (tools/ is left out of the Registry archive).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = "comfyui-0.8.0.tar.gz"
PACK_LINK = "musetalk-nodes"
TORCH_FAMILY = {"torch", "torchvision", "torchaudio"}
MARKER = ".musetalk-snapshot-sha256"
UNLOADABLE = "unloadable-cuda-build"
# what the quick start must show: the pack and the core nodes the example workflows use
REQUIRED_NODES = ["LoadMuseTalkModels", "BlendAndAssemble", "LoadLatentSyncModel", "LoadVideo", "GetVideoComponents",
                  "CreateVideo", "SaveVideo", "LoadAudio", "LoadImage", "ImageSharpen"]


def say(msg: str) -> None:
    print(f"[comfyui_env] {msg}", flush=True)


def default_tarball() -> Path:
    env = os.environ.get("MUSETALK_COMFYUI_TARBALL")
    return Path(env) if env else ROOT.parent / "shared" / "vendor" / SNAPSHOT


def default_dest() -> Path:
    return Path(sys.prefix) / "comfyui"


def installed_comfyui_dir() -> Path | None:
    """The ComfyUI this script set up for the running Python (what the tests use when COMFYUI_DIR is unset)."""
    path = default_dest() / "ComfyUI"
    return path if (path / "main.py").is_file() else None


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    say("+ " + " ".join(cmd))
    subprocess.check_call(cmd)


def torch_version() -> str:
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError:
        raise SystemExit("[comfyui_env] torch is not installed in this Python; run `python install.py --dev` first "
                         f"(python: {sys.executable})") from None
    return out.split("+")[0]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(tarball: Path, dest: Path) -> Path:
    comfy = dest / "ComfyUI"
    digest = sha256(tarball)
    if (comfy / MARKER).is_file() and (comfy / MARKER).read_text().strip() == digest:
        say(f"{comfy} already holds this snapshot")
        return comfy
    if comfy.exists():
        shutil.rmtree(comfy)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        if not names or any(not (n == "ComfyUI" or n.startswith("ComfyUI/")) or ".." in n.split("/") for n in names):
            raise SystemExit(f"[comfyui_env] {tarball} is not a ComfyUI snapshot (every path must be under ComfyUI/)")
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # Python < 3.10.12 has no extraction filters; the names were checked above
            tar.extractall(dest)
    (comfy / MARKER).write_text(digest + "\n")
    say(f"unpacked {tarball.name} into {comfy}")
    return comfy


def requirement_name(line: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def install_requirements(comfy: Path, constraint: Path) -> None:
    keep = [line for line in (comfy / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#") and requirement_name(line) not in TORCH_FAMILY]
    with tempfile.NamedTemporaryFile("w", suffix="-comfyui-requirements.txt", delete=False) as f:
        f.write("\n".join(keep) + "\n")
    try:
        pip("-r", f.name, "-c", str(constraint))
    finally:
        os.unlink(f.name)


def imports(module: str) -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    return proc.returncode == 0, proc.stderr.strip().splitlines()[-1] if proc.returncode else ""


def site_file(module: str, relative: str) -> Path:
    """A file inside an installed package, found without importing it (the import is what fails)."""
    out = subprocess.run([sys.executable, "-c", "import importlib.util, sys; "
                          "print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])", module],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out) / relative


def repair_torchvision() -> None:
    ok, err = imports("torchvision")
    if ok:
        return
    if "torchvision::nms" not in err and "torchvision::qnms" not in err:
        raise SystemExit(f"[comfyui_env] torchvision does not import, for a reason this script does not know: {err}")
    path = site_file("torchvision", "_meta_registrations.py")
    text = path.read_text()
    for op in ("nms", "qnms"):
        plain = f'@torch.library.register_fake("torchvision::{op}")'
        guarded = (f'@(torch.library.register_fake("torchvision::{op}") if torchvision.extension._has_ops() '
                   f'else (lambda fn: fn))  # guarded by musetalk-nodes tools/comfyui_env.py: CUDA build, CPU torch')
        if plain + "\n" in text:
            text = text.replace(plain + "\n", guarded + "\n")
    path.write_text(text)
    ok, err = imports("torchvision")
    if not ok:
        raise SystemExit(f"[comfyui_env] torchvision still does not import after guarding {path}: {err}")
    say(f"torchvision: its C++ ops cannot load with this torch (a CUDA build); guarded the nms/qnms fake kernels "
        f"in {path}")


def repair_torchaudio() -> None:
    ok, err = imports("torchaudio")
    if ok:
        return
    lib = site_file("torchaudio", "lib")
    compiled = sorted(lib.glob("*.so"))
    if not compiled:
        raise SystemExit(f"[comfyui_env] torchaudio does not import: {err}")
    aside = lib / UNLOADABLE
    aside.mkdir(exist_ok=True)
    for so in compiled:
        so.replace(aside / so.name)
    ok, err2 = imports("torchaudio")
    if not ok:
        raise SystemExit(f"[comfyui_env] torchaudio still does not import without its compiled parts: {err2}")
    say(f"torchaudio: its compiled parts cannot load with this torch ({err}); moved "
        f"{', '.join(p.name for p in compiled)} to {aside} (pure-Python mode)")


def install_torch_family(version: str, constraint: Path) -> None:
    if not imports("torchvision")[0]:
        pip("torchvision", "-c", str(constraint))  # the release made for this torch (it pins torch==version)
        repair_torchvision()
    if not imports("torchaudio")[0]:
        major_minor = ".".join(version.split(".")[:2])
        # no torchaudio release may exist for this torch yet (the registry's stop at 2.11): --no-deps keeps torch
        pip("--no-deps", f"torchaudio<={major_minor}.99")
        repair_torchaudio()


def link_pack(comfy: Path) -> Path:
    link = comfy / "custom_nodes" / PACK_LINK
    if link.is_symlink() and link.resolve() == ROOT:
        return link
    if link.is_symlink():  # a link to another checkout of the pack (another worktree set this venv up): repoint it
        link.unlink()
    elif link.exists():
        raise SystemExit(f"[comfyui_env] {link} exists and is not a link to this checkout ({ROOT}); remove it first")
    link.symlink_to(ROOT, target_is_directory=True)
    say(f"linked {link} -> {ROOT}")
    return link


def quick_start(comfy: Path) -> None:
    """Start ComfyUI once (it exits after loading every node) in a throw-away base folder; check what loaded."""
    with tempfile.TemporaryDirectory(prefix="comfyui-check-") as base:
        (Path(base) / "custom_nodes").mkdir()
        (Path(base) / "custom_nodes" / PACK_LINK).symlink_to(ROOT, target_is_directory=True)
        probe = Path(base) / "custom_nodes" / "zz_list_nodes.py"
        probe.write_text("import atexit, json, os, nodes\nNODE_CLASS_MAPPINGS = {}\n"
                         "atexit.register(lambda: open(os.path.join(os.path.dirname(__file__), 'nodes.json'), 'w')"
                         ".write(json.dumps(sorted(nodes.NODE_CLASS_MAPPINGS))))\n")
        proc = subprocess.run([sys.executable, "main.py", "--cpu", "--disable-api-nodes", "--quick-test-for-ci",
                               "--base-directory", base], cwd=comfy, capture_output=True, text=True, timeout=600)
        log = proc.stdout + proc.stderr
        listed = Path(base) / "custom_nodes" / "nodes.json"
        import json

        loaded = set(json.loads(listed.read_text())) if listed.is_file() else set()
    missing = [n for n in REQUIRED_NODES if n not in loaded]
    if proc.returncode != 0 or "IMPORT FAILED" in log or missing:
        raise SystemExit(f"[comfyui_env] ComfyUI did not start cleanly (exit {proc.returncode}, missing nodes "
                         f"{missing}):\n{log[-4000:]}")
    say(f"ComfyUI starts with the pack: {len(loaded)} nodes, {', '.join(REQUIRED_NODES)} among them")


def fetch_frontend(version: str, folder: Path) -> Path:
    """Download one comfyui-frontend-package wheel (no install) and unpack it; returns its static/ folder."""
    spec = "comfyui-frontend-package" + ("" if version == "latest" else f"=={version}")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                               "--only-binary", ":all:", "-d", tmp, spec], stdout=sys.stderr)  # stdout: the path
        wheel, = Path(tmp).glob("comfyui_frontend_package-*.whl")
        target = folder / wheel.name.split("-")[1]
        if not (target / "comfyui_frontend_package" / "static" / "index.html").is_file():
            with zipfile.ZipFile(wheel) as z:
                z.extractall(target)
    return target / "comfyui_frontend_package" / "static"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=None, help="folder that gets ComfyUI/ (default <venv>/comfyui)")
    parser.add_argument("--tarball", type=Path, default=None, help=f"the snapshot (default ../shared/vendor/{SNAPSHOT})")
    parser.add_argument("--no-check", action="store_true", help="skip the start-up check")
    parser.add_argument("--frontend", help="only fetch this comfyui-frontend-package version ('latest' = newest)")
    parser.add_argument("--frontend-dir", type=Path, default=Path(tempfile.gettempdir()) / "comfyui-frontends")
    args = parser.parse_args(argv)

    if args.frontend:
        print(fetch_frontend(args.frontend, args.frontend_dir))
        return 0

    tarball = args.tarball or default_tarball()
    if not tarball.is_file():
        print(f"[comfyui_env] The ComfyUI snapshot is not there: {tarball}\n"
              f"  It comes from the project's shared folder (shared/vendor/{SNAPSHOT}, expected at ../shared beside "
              f"this clone), or set MUSETALK_COMFYUI_TARBALL / --tarball. Without it the tests that run the pack "
              f"inside ComfyUI are skipped.", file=sys.stderr)
        return 2
    version = torch_version()
    comfy = unpack(tarball, (args.dest or default_dest()).resolve())
    with tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False) as f:
        f.write(f"torch=={version}\n")
    try:
        install_requirements(comfy, Path(f.name))
        install_torch_family(version, Path(f.name))
    finally:
        os.unlink(f.name)
    if torch_version() != version:
        raise SystemExit(f"[comfyui_env] torch changed from {version} to {torch_version()}: this must not happen")
    link_pack(comfy)
    if not args.no_check:
        quick_start(comfy)
    say(f"ready: COMFYUI_DIR={comfy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Against a real ComfyUI checkout (only when COMFYUI_DIR points at one): the real loader, folders and devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run these")


def run_in_comfyui(body: str, tmp_path) -> dict:
    code = textwrap.dedent(f"""
        import asyncio, json, os, sys
        sys.path.insert(0, {COMFYUI_DIR!r}); os.chdir({COMFYUI_DIR!r})
        sys.argv = ["main.py", "--cpu", "--base-directory", {str(tmp_path / "base")!r}]
        import comfy.options; comfy.options.enable_args_parsing()
        import folder_paths
        if os.environ.get("MUSETALK_TEST_MODELS"):
            folder_paths.add_model_folder_path("musetalk", os.environ["MUSETALK_TEST_MODELS"])  # extra_model_paths.yaml
        import nodes
        assert asyncio.run(nodes.load_custom_node({str(ROOT)!r}))
    """) + textwrap.dedent(body)
    proc = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-c", code], capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, **getattr(run_in_comfyui, "env", {})))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pack_registers_nodes_and_models_folder(tmp_path):
    out = run_in_comfyui("""
        ids = sorted(k for k, v in nodes.NODE_CLASS_MAPPINGS.items() if getattr(v, "CATEGORY", "") == "MuseTalk")
        print(json.dumps({"ids": ids, "paths": folder_paths.get_folder_paths("musetalk")}))
    """, tmp_path)
    assert out["ids"] == sorted(["LoadMuseTalkModels", "FaceDetectAndParse", "WhisperAudioEncode", "VAEEncodeMasked",
                                 "MuseTalkUNetInpaint", "BlendAndAssemble"])
    assert any(p.endswith(os.path.join("models", "musetalk")) for p in out["paths"])


def test_models_load_through_extra_model_paths(tmp_path, tiny_models_factory, monkeypatch):
    folder = tiny_models_factory("v15")
    monkeypatch.setattr(run_in_comfyui, "env", {"MUSETALK_TEST_MODELS": str(folder)}, raising=False)
    out = run_in_comfyui("""
        models, = nodes.NODE_CLASS_MAPPINGS["LoadMuseTalkModels"]().load("v15", "auto", "auto", "torch")
        print(json.dumps({"device": str(models.device), "placement": type(models.placement).__name__,
                          "networks": sorted(models.networks)}))
    """, tmp_path)
    assert out["device"] == "cpu" and out["placement"] == "ComfyPlacement"
    assert out["networks"] == sorted(["unet", "vae", "pe", "whisper", "s3fd", "landmarks", "face_parser"])


# ---------------------------------------------------------------------------------------------------------------
# The workflows in the real graph editor: ComfyUI's server on 127.0.0.1 and its frontend in headless Chromium
# (tools/editor_check.js, playwright-core). Needs, besides COMFYUI_DIR: `node`, NODE_PATH naming a node_modules that
# holds playwright-core, Chromium ($CHROMIUM, default /usr/bin/chromium) and COMFYUI_PYTHON, a Python with ComfyUI's
# requirements (default: this one). Screenshots are kept in $EDITOR_SHOTS if set.
# ---------------------------------------------------------------------------------------------------------------

def _editor_tools_missing():
    import shutil

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not shutil.which("node") or not os.path.exists(chromium):
        return "node or Chromium not installed"
    probe = subprocess.run(["node", "-e", "require.resolve('playwright-core')"], capture_output=True)
    return None if probe.returncode == 0 else "playwright-core not found on NODE_PATH"


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def comfyui_server(tmp_path_factory):
    import time
    import urllib.request
    from fractions import Fraction

    from media import face_frames, tone, write_video, write_wav
    from PIL import Image

    missing = _editor_tools_missing()
    if missing:
        pytest.skip(missing)
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "musetalk-nodes").symlink_to(ROOT, target_is_directory=True)
    inputs, outputs = base / "input", base / "output" / "video"
    inputs.mkdir()
    outputs.mkdir(parents=True)
    # the example file names the workflows carry, and a portrait clip (the tallest preview a user will load)
    write_video(inputs / "musetalk_example.mp4", face_frames(8, 360, 640), Fraction(25), audio=tone(0.32, 16000))
    write_video(inputs / "musetalk_portrait.mp4", face_frames(8, 640, 360), Fraction(25), audio=tone(0.32, 16000))
    write_video(outputs / "musetalk_portrait_00001_.mp4", face_frames(8, 640, 360), Fraction(25))
    Image.fromarray(face_frames(1, 512, 512)[0]).save(inputs / "musetalk_example.png")
    write_wav(inputs / "musetalk_example_speech.wav", tone(1.0, 16000), 16000)
    write_wav(inputs / "musetalk_example_speech_2.wav", tone(0.8, 22050, 1, 300.0), 22050)
    port = _free_port()
    log = open(base / "server.log", "w")
    server = subprocess.Popen([os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen",
                               "127.0.0.1", "--port", str(port), "--base-directory", str(base)],
                              cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/api/system_stats", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (base / "server.log").read_text()[-3000:]
                time.sleep(1)
        else:
            pytest.fail("ComfyUI did not start: " + (base / "server.log").read_text()[-3000:])
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_workflows_open_in_the_real_editor_without_alerts_or_overlaps(comfyui_server, tmp_path):
    import urllib.request

    ui_files = sorted((ROOT / "workflows" / "ui").glob("*.json"))
    titles = {json.loads(p.read_text())["extra"]["musetalk"]["title"] for p in ui_files}
    # the server lists the pack's templates by file name: the titles, and nothing else (no index.json)
    listed = json.loads(urllib.request.urlopen(comfyui_server + "/api/workflow_templates").read())
    assert set(listed["musetalk-nodes"]) == titles
    shots = os.environ.get("EDITOR_SHOTS") or str(tmp_path)
    os.makedirs(shots, exist_ok=True)
    proc = subprocess.run(["node", str(ROOT / "tools" / "editor_check.js"), comfyui_server, shots, *map(str, ui_files)],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PORTRAIT_VIDEO="musetalk_portrait.mp4",
                                   PORTRAIT_OUTPUT="video/musetalk_portrait_00001_.mp4",
                                   TEMPLATE_TITLES="\n".join(sorted(titles))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    views = []
    for name, seen in report["dropped"].items():
        assert seen["alerts"] == [] and seen["loaded"]["toasts"] == [], (name, seen["alerts"], seen["loaded"]["toasts"])
        views += [(name, seen["loaded"]), (name + " grown", seen["grown"])]
    grown = {s[0]: s for seen in report["dropped"].values() for s in seen["grown"]["sizes"]}
    assert any(k.startswith("SaveVideo") and s[2] > 600 for k, s in grown.items())  # the previews really grew
    assert len(report["cards"]) == len(titles) and all(c["loaded"] and (c["width"], c["height"]) == (480, 360)
                                                       for c in report["cards"])  # our thumbnails, not placeholders
    for title, seen in report["templates"].items():
        assert seen["found"] and seen["alerts"] == [] and seen["toasts"] == [], (title, seen)
        views.append((title, seen))
    assert set(report["templates"]) == titles
    for name, view in views:
        assert view["overlaps"] == [] and view["domOutside"] == [], (name, view["overlaps"], view["domOutside"])
        assert view["left"] >= view["sidebarRight"] + 10 and view["top"] >= 90, (name, view["left"], view["top"])

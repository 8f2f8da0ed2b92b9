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
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
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

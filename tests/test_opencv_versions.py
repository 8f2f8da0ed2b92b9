"""The goldens hold whichever OpenCV a user's ComfyUI has: the image goldens run again in a child pytest with
OpenCV 4.12, 5.0 and 5.1 put first on the path (pip install --target, the venv's own cv2 untouched).

OpenCV 5.0 changed warpAffine (up to 6 grey levels against 4.x), which broke the pipeline golden on fresh machines;
the warp is now musetalk_core/warp_ops.py. Every other OpenCV/PIL kernel on the default path (LANCZOS4 / linear /
area resize, GaussianBlur, erode/dilate, the ellipse element, cvtColor, drawing; PIL's BILINEAR/BICUBIC resize,
crop and paste) gave identical bytes on 4.9.0.80, 4.12, 5.0, 5.1 and Pillow 10.4-13.0 (BENCHMARKS.md, "OpenCV
independence"); this test keeps it that way for the versions below.

Runs in CI (CI=true) and when MUSETALK_OPENCV_MATRIX=1; it downloads each wheel once into
~/.cache/musetalk-nodes/opencv/<version> (about 50 MB each).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VERSIONS = ("4.12.0.88", "5.0.0.93", "5.1.0.95")
ROOT = Path(__file__).resolve().parents[1]
# every golden whose path goes through an OpenCV or PIL kernel: landmarks (warp) and crops (LANCZOS4), parsing masks
# (PIL resizes, GaussianBlur, erode/dilate), the blend (PIL paste, cv2 resize), VAE latents of the masked crops,
# LatentSync's alignment and restore, plus the warp's own golden
IMAGE_GOLDENS = ["tests/test_warp_ops.py",
                 "tests/test_pipeline_boxes.py::test_boxes_and_crops_match_reference",
                 "tests/test_parsing.py::test_masks_match_reference",
                 "tests/test_parsing.py::test_label_maps_match_reference_away_from_ties",
                 "tests/test_parsing.py::test_blend_stage_finishes_our_masks_like_the_reference",
                 "tests/test_blend.py::test_matches_reference_compositing",
                 "tests/test_latents.py::test_mean_latents_equal_reference",
                 "tests/test_latentsync.py::test_alignment_and_restore_match_reference",
                 "tests/test_latentsync_generate.py::test_restore_clamps_after_the_warp_as_reference",
                 "tests/test_latentsync_generate.py::test_insightface_alignment_matches_reference"]

pytestmark = pytest.mark.skipif(not (os.environ.get("CI") or os.environ.get("MUSETALK_OPENCV_MATRIX")),
                                reason="downloads three OpenCV wheels: runs in CI or with MUSETALK_OPENCV_MATRIX=1")


def _opencv_at(version: str) -> Path:
    target = Path.home() / ".cache" / "musetalk-nodes" / "opencv" / version
    if not (target / "cv2").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
                        "--target", str(target), f"opencv-python-headless=={version}"], check=True)
    return target


@pytest.mark.parametrize("version", VERSIONS)
def test_image_goldens_hold_with_opencv(version):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_opencv_at(version)),
                                                                      os.environ.get("PYTHONPATH")])))
    seen = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.__version__)"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert version.startswith(seen + "."), f"the child imported OpenCV {seen}, not {version}"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", *IMAGE_GOLDENS],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    tail = "\n".join(run.stdout.splitlines()[-25:])
    assert run.returncode == 0, f"image goldens with OpenCV {version}:\n{tail}\n{run.stderr[-2000:]}"
    assert " passed" in tail and " failed" not in tail, tail

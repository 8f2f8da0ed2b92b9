"""Record OpenCV 4.9.0.80's getAffineTransform and warpAffine(INTER_LINEAR) for tests/test_warp_ops.py.

The reference pins opencv-python 4.9.0.80, which needs numpy < 2; no torch is needed:

    python3 -m venv /tmp/cv49 && /tmp/cv49/bin/pip install "numpy<2" opencv-python-headless==4.9.0.80
    /tmp/cv49/bin/python tools/golden/record_warp.py

Output: tests/golden/warp/opencv49.npz (matrices of tests/warp_cases.point_cases, warped images of warp_cases).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from warp_cases import point_cases, warp_cases  # noqa: E402


def main() -> None:
    if cv2.__version__ != "4.9.0":
        raise SystemExit(f"needs OpenCV 4.9.0 (the reference's pin), found {cv2.__version__}")
    mats = np.stack([cv2.getAffineTransform(s, d) for s, d in point_cases()])
    warped = {name: cv2.warpAffine(img, cv2.getAffineTransform(s, d), size, flags=cv2.INTER_LINEAR)
              for name, img, s, d, size in warp_cases()}
    out = ROOT / "tests" / "golden" / "warp" / "opencv49.npz"
    np.savez_compressed(out, matrices=mats, **warped)
    print(f"written {out} ({out.stat().st_size} bytes), OpenCV {cv2.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()

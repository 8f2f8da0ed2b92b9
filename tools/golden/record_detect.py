"""Record golden values for face detection and the landmark crop box from the reference MuseTalk code.

    python tools/golden/record_detect.py --reference /work/ref/MuseTalk

1. S3FD: the reference's face_detection package (sfd detector, FaceAlignment.get_detections_for_batch at batch 1,
   exactly as preprocessing.py calls it) with the seeded S3FD weights of tests/tiny/s3fd.py loaded into its net
   directly (no model file, no download), on small synthetic frames. Stores the frames, the final box per frame
   (or none) and every box that survives NMS and p > 0.5 with its score (detect_from_batch).
2. Box logic: the reference's preprocessing.get_landmark_and_bbox on hand-made landmark sets, with mmpose and the
   detector replaced by stand-ins that return those landmarks / boxes (the box arithmetic, bbox_shift's in-place
   mutation, the clamp, the fallback and the range report are the reference's own code).
Output: tests/golden/detect/s3fd.npz and tests/golden/detect/boxes.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "detect"


def synthetic_frames():
    """High-contrast frames (discs on flat colour) of several sizes, plus flat frames."""
    import cv2

    rng = np.random.default_rng(2024)
    frames = []
    for size in [(128, 160)] * 4 + [(96, 96), (160, 120), (40, 72)]:
        f = np.zeros(size + (3,), np.uint8)
        f[:] = rng.integers(0, 255, 3)
        for _ in range(3):
            cv2.circle(f, (int(rng.integers(0, size[1])), int(rng.integers(0, size[0]))),
                       int(rng.integers(6, 40)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        frames.append(f)
    for value in (0, 128, 255):
        frames.append(np.full((128, 160, 3), value, np.uint8))
    return frames


def record_s3fd(ref_utils: Path):
    sys.path.insert(0, str(ref_utils))
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from face_detection.api import FaceAlignment
    from face_detection.detection.sfd.net_s3fd import s3fd
    from face_detection.detection.sfd.sfd_detector import SFDDetector
    from tiny.s3fd import seeded_state

    det = SFDDetector.__new__(SFDDetector)
    det.device, det.verbose = "cpu", False
    det.face_detector = s3fd()
    det.face_detector.load_state_dict(seeded_state())
    det.face_detector.eval()
    fa = FaceAlignment.__new__(FaceAlignment)
    fa.device, fa.flip_input, fa.verbose, fa.face_detector = "cpu", False, False, det

    frames = synthetic_frames()
    data, final = {}, []
    for i, rgb in enumerate(frames):
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        box = fa.get_detections_for_batch(bgr[None])[0]
        final.append([-1, -1, -1, -1] if box is None else list(box))
        kept = det.detect_from_batch(np.ascontiguousarray(bgr[None][..., ::-1]))[0]
        data[f"frame_{i}"] = rgb
        data[f"kept_{i}"] = np.array(kept, dtype=np.float32).reshape(-1, 5)
    data["final"] = np.array(final, dtype=np.int64)
    np.savez_compressed(OUT / "s3fd.npz", **data)
    print("s3fd final boxes:", final)


# ---------------------------------------------------------------------------------------------------------------
def base_face(x0=100, y0=80, s=2.0):
    """A plausible iBUG-68 layout (ints), scaled by s around (x0, y0)."""
    pts = []
    for i in range(17):  # jaw
        t = i / 16
        pts.append((x0 + s * (-40 + 80 * t), y0 + s * (10 + 40 * np.sin(np.pi * t))))
    for i in range(10):  # brows
        pts.append((x0 + s * (-35 + 70 * i / 9), y0 + s * -25))
    for i in range(4):  # nose bridge 27-30
        pts.append((x0, y0 + s * (-15 + 8 * i)))
    for i in range(5):  # nostrils
        pts.append((x0 + s * (-8 + 4 * i), y0 + s * 14))
    for i in range(12):  # eyes
        pts.append((x0 + s * (-25 + 4 * i + (10 if i >= 6 else 0)), y0 + s * -12))
    for i in range(20):  # mouth
        pts.append((x0 + s * (-15 + 1.5 * i), y0 + s * (25 + (3 if i % 2 else -3))))
    return np.array(pts, dtype=np.float32)


def landmark_cases():
    cases = []
    f = base_face()
    cases.append(("plain", f, (60, 30, 190, 200), [0, 7, -7, 30, -30, 200, -200]))
    top = base_face(y0=20, s=2.0)  # near the top: the clamp
    cases.append(("near_top", top, (40, 0, 170, 150), [0, -10, -40]))
    left = base_face(x0=30)  # jaw left of 0 -> x1 < 0 -> S3FD fallback
    cases.append(("off_left", left, (3, 40, 120, 190), [0, 5]))
    flat = np.tile(np.array([[100.0, 90.0]], np.float32), (68, 1))  # degenerate: zero-size box -> fallback
    cases.append(("degenerate", flat, (70, 60, 140, 150), [0, 3]))
    frac = base_face(x0=100.7, y0=80.9, s=1.37)  # fractional points: int32 truncation
    cases.append(("fractional", frac, (60, 30, 190, 200), [0, 1]))
    return cases


def record_boxes(ref_utils: Path):
    import cv2

    records = []
    for name, lm133_face, det_box, shifts in landmark_cases():
        for shift in shifts:
            for has_face in (True, False):
                records.append(dict(name=name, shift=shift, has_face=has_face, landmarks=lm133_face.tolist(),
                                    detector_box=list(det_box)))
    # stand-ins for the reference's imports (mmpose and the detector factory)
    current = {}

    class FakeKeypoints:
        pass

    def inference_topdown(model, img):
        return [current["lm"]]

    def merge_data_samples(results):
        r = types.SimpleNamespace()
        kp = np.zeros((1, 133, 2), np.float32)
        kp[0, 23:91] = results[0]
        r.pred_instances = types.SimpleNamespace(keypoints=kp)
        return r

    class FaceAlignment:
        def __init__(self, *a, **k):
            pass

        def get_detections_for_batch(self, images):
            return [current["det"]]

    mm = types.ModuleType("mmpose")
    apis = types.ModuleType("mmpose.apis")
    apis.inference_topdown, apis.init_model = inference_topdown, (lambda *a, **k: None)
    structures = types.ModuleType("mmpose.structures")
    structures.merge_data_samples = merge_data_samples
    fd = types.ModuleType("face_detection")
    fd.FaceAlignment, fd.LandmarksType = FaceAlignment, types.SimpleNamespace(_2D=1)
    saved = {k: sys.modules.get(k) for k in ("mmpose", "mmpose.apis", "mmpose.structures", "face_detection")}
    sys.modules.update({"mmpose": mm, "mmpose.apis": apis, "mmpose.structures": structures, "face_detection": fd})
    sys.path.insert(0, str(ref_utils))
    import preprocessing

    tmp = Path(tempfile.mkdtemp())
    img = tmp / "f.png"
    cv2.imwrite(str(img), np.zeros((240, 320, 3), np.uint8))  # frame height 240 (the reference only reads it)
    for rec in records:
        current["lm"] = np.array(rec["landmarks"], np.float32)
        current["det"] = tuple(rec["detector_box"]) if rec["has_face"] else None
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            try:
                coords, _ = preprocessing.get_landmark_and_bbox([str(img)], rec["shift"])
                rec["coords"] = [int(v) for v in coords[0]]
                rec["error"] = None
            except ZeroDivisionError:
                rec["coords"], rec["error"] = None, "ZeroDivisionError"
        lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("Total frame")]
        rec["range_text"] = lines[0] if lines else None
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v
    (OUT / "boxes.json").write_text(json.dumps(dict(frame_height=240, records=records), indent=0))
    print("box records:", len(records))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", default="/work/ref/MuseTalk")
    args = parser.parse_args()
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    ref_utils = Path(args.reference) / "musetalk" / "utils"
    record_boxes(ref_utils)
    record_s3fd(ref_utils)


if __name__ == "__main__":
    main()

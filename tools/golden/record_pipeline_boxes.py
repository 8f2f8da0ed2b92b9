"""Record the reference pipeline's boxes and crops for a small synthetic video (tests/test_pipeline_boxes.py).

    python tools/golden/record_pipeline_boxes.py --reference /work/ref/MuseTalk

Runs the reference's musetalk/utils/preprocessing.get_landmark_and_bbox on PNG files of the frames (cv2.imread, as
upstream), with
- its own face_detection package (FaceAlignment + SFD detector) holding the tiny S3FD weights of tests/tiny/s3fd.py
  (loaded into the reference's s3fd net; no model file, no download),
- mmpose's init_model with upstream's config file (rtmpose-l_8xb32-270e_coco-ubody-wholebody-384x288.py), its
  widen/deepen/GAU sizes set to the tiny checkpoint's (write_golden_models in tests/test_pipeline_boxes.py:
  calibrated tiny DWPose with windowed SimCC classifiers),
then scripts/inference.py's v1.5 step (y2 + extra_margin 10, clipped at the frame height) and its crop
cv2.resize(frame[y1:y2, x1:x2], (256, 256), INTER_LANCZOS4), for v1 and v15 at bbox_shift 0 and -7.
preprocessing.py builds its models at import time from fixed paths: during its import mmpose.apis.init_model and
face_detection.FaceAlignment are replaced by no-op stand-ins, then its module globals ``model`` and ``fa`` are set
to the objects built here. The reference's code itself runs unchanged.
Output: tests/golden/pipeline_boxes/{frames_crops.npz, reference.json}.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "pipeline_boxes"
H, W = 200, 160
NO_FACE_GREY = 96  # a flat frame on which the tiny S3FD finds nothing above p 0.5 (checked below)
SHIFTS = (0, -7)
EXTRA_MARGIN = 10


def synthetic_video(n=7, seed=5):
    """Coloured background, two discs, a skin-tone ellipse with a mouth; frame 3 is flat grey (no face)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        f = out[i]
        if i == 3:
            f[:] = NO_FACE_GREY
            continue
        f[:] = rng.integers(0, 255, 3)
        for _ in range(2):
            cv2.circle(f, (int(rng.integers(0, W)), int(rng.integers(0, H))), int(rng.integers(8, 30)),
                       tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cx, cy = W // 2 + int(rng.integers(-15, 16)), H // 2 + int(rng.integers(-15, 16))
        cv2.ellipse(f, (cx, cy), (W // 5, H // 4), 0, 0, 360, (235, 200, 170), -1)
        cv2.ellipse(f, (cx, cy + H // 8), (W // 12, H // 40 + 2), 0, 0, 360, (120, 30, 40), -1)
    return out


def build_mmpose(ref: Path, ckpt: Path):
    from mmengine.config import Config

    from musetalk_core.models.checkpoints import read_state_dict
    from musetalk_core.models.dwpose import DWPoseConfig
    from musetalk_core.models.dwpose_mmpose import import_mmpose

    init_model, _ = import_mmpose()  # mmcv._ext / torchvision import stand-ins (see that module)
    arch = DWPoseConfig.from_state_dict(read_state_dict(ckpt, unwrap=("state_dict",)), ckpt)
    cfg = Config.fromfile(str(ref / "musetalk/utils/dwpose/rtmpose-l_8xb32-270e_coco-ubody-wholebody-384x288.py"))
    cfg.model.backbone.deepen_factor = arch.deepen
    cfg.model.backbone.widen_factor = arch.widen
    cfg.model.head.in_channels = int(1024 * arch.widen)
    cfg.model.head.gau_cfg.hidden_dims = arch.hidden
    cfg.model.head.gau_cfg.s = arch.s
    return init_model(cfg, str(ckpt), device="cpu")


def build_fa(ref_utils: Path, s3fd_path: Path):
    from face_detection.api import FaceAlignment
    from face_detection.detection.sfd.net_s3fd import s3fd
    from face_detection.detection.sfd.sfd_detector import SFDDetector

    det = SFDDetector.__new__(SFDDetector)
    det.device, det.verbose = "cpu", False
    det.face_detector = s3fd()
    det.face_detector.load_state_dict(torch.load(s3fd_path, map_location="cpu", weights_only=True))
    det.face_detector.eval()
    fa = FaceAlignment.__new__(FaceAlignment)
    fa.device, fa.flip_input, fa.verbose, fa.face_detector = "cpu", False, False, det
    return fa


def import_preprocessing(ref_utils: Path):
    """Import the reference module with its import-time model construction turned into no-ops."""
    import face_detection
    import mmpose.apis

    saved = (mmpose.apis.init_model, face_detection.FaceAlignment)

    class _NoFA:
        def __init__(self, *a, **k):
            pass

    mmpose.apis.init_model, face_detection.FaceAlignment = (lambda *a, **k: None), _NoFA
    try:
        import preprocessing
    finally:
        mmpose.apis.init_model, face_detection.FaceAlignment = saved
    return preprocessing


def main():
    import cv2

    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", default="/work/ref/MuseTalk")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ref = Path(args.reference)
    ref_utils = ref / "musetalk" / "utils"
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ref_utils)]
    from test_pipeline_boxes import crop_hash, write_golden_models

    tmp = Path(tempfile.mkdtemp())
    models = write_golden_models(tmp / "models")
    mm_model = build_mmpose(ref, models / "dwpose" / "dw-ll_ucoco_384.pth")
    fa = build_fa(ref_utils, models / "s3fd" / "s3fd-619a316812.pth")
    pre = import_preprocessing(ref_utils)
    pre.model, pre.fa = mm_model, fa

    frames = synthetic_video()
    paths = []
    for i, rgb in enumerate(frames):
        p = tmp / f"{i:05d}.png"
        cv2.imwrite(str(p), np.ascontiguousarray(rgb[..., ::-1]))
        paths.append(str(p))

    # per frame: the reference's S3FD box and its 68 mmpose face points (as get_landmark_and_bbox computes them)
    det_boxes, landmarks = [], []
    for p in paths:
        bgr = cv2.imread(p)
        box = fa.get_detections_for_batch(np.asarray([bgr]))[0]
        det_boxes.append(None if box is None else [int(v) for v in box])
        res = pre.merge_data_samples(pre.inference_topdown(mm_model, bgr))
        lm = res.pred_instances.keypoints[0][23:91].astype(np.int32)
        landmarks.append(None if box is None else lm.tolist())
    assert det_boxes[3] is None, "the flat frame must have no face"

    runs, arrays = [], {"frames": frames}
    for shift in SHIFTS:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            coords, ref_frames = pre.get_landmark_and_bbox(paths, shift)
        range_text = [ln for ln in buf.getvalue().splitlines() if ln.startswith("Total frame")][0]
        coords = [[int(v) for v in c] for c in coords]
        fallback = [None if det_boxes[i] is None else c == det_boxes[i] for i, c in enumerate(coords)]
        for version in ("v1", "v15"):
            hashes, full = [], []
            for c, frame in zip(coords, ref_frames):
                if c == [0, 0, 0, 0]:  # coord_placeholder: inference.py skips the frame
                    hashes.append(None)
                    continue
                x1, y1, x2, y2 = c
                if version == "v15":
                    y2 = min(y2 + EXTRA_MARGIN, frame.shape[0])
                crop = cv2.resize(frame[y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_LANCZOS4)
                rgb_crop = np.ascontiguousarray(crop[..., ::-1])
                hashes.append(crop_hash(rgb_crop))
                full.append(rgb_crop)
            if version == "v15" and shift == 0 or version == "v1" and shift != 0:
                arrays[f"crops_{version}_shift{shift}"] = np.stack(full)
            runs.append(dict(version=version, bbox_shift=shift, coords=coords, fallback=fallback,
                             crop_sha256=hashes, range_text=range_text))
            print(version, shift, coords, "fallback:", fallback)
        print(range_text)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "frames_crops.npz", **arrays)
    meta = dict(frame_size=[H, W], extra_margin=EXTRA_MARGIN, detector_boxes=det_boxes, landmarks=landmarks,
                runs=runs, reference="TMElyralab/MuseTalk HEAD 0a89dec")
    (OUT / "reference.json").write_text(json.dumps(meta, ensure_ascii=False, indent=0))
    print("written", OUT)


if __name__ == "__main__":
    main()

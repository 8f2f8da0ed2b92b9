"""Record golden values for BlendAndAssemble from the reference MuseTalk compositing code.

For synthetic frames, 256x256 "generated" faces, face boxes (most with their expanded crop, many with the box itself,
partly outside the frame) and synthetic 512x512 parsing images, this runs the reference exactly as
scripts/inference.py (HEAD) and scripts/realtime_inference.py do after the VAE decode:

- blur 0.05 (normal mode): ``face = cv2.resize(face_bgr, (x2 - x1, y2 - y1))`` then
  ``get_image(frame_bgr, face, box, upper_boundary_ratio, expand, mode, fp=stand_in)``;
- blur 0.1 (real-time mode): ``get_image_prepare_material(frame_bgr, box, ratio, expand, fp=stand_in)`` then
  ``get_image_blending(frame_bgr, face, box, mask, crop_box)``.

``fp`` (the BiSeNet FaceParsing object) is replaced by a stand-in returning the case's synthetic 512x512 "L" parsing
image, so the goldens isolate compositing. The mask handed to our code (MuseTalkFaces.masks convention) is computed
here with the reference's own PIL steps: face_seg's resize of the parsing image to 2s x 2s, cropped to the face box
and pasted onto black (before the upper-boundary cut and the blur).

Stored (npz, RGB uint8): frames, faces, and per case i: box_i, crop_i, mask_i (2s, 2s), out_i (full output frame),
params_i = [frame index, face index, ratio * 1000, blur * 1000, expand * 1000].

Usage (opencv-python-headless==4.9.0.80 as the reference pins it, installed into a side folder):
  pip install --no-deps --target /tmp/cv49 opencv-python-headless==4.9.0.80 numpy==1.26.4
  PYTHONPATH=/tmp/cv49 python tools/golden/record_blend.py --reference /work/ref/MuseTalk
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

FRAME_SHAPES = [(120, 160), (120, 160), (144, 112)]
NUM_FACES = 3
NUM_CASES = 26


def load_reference_blending(reference: Path):
    path = reference / "musetalk" / "utils" / "blending.py"
    spec = importlib.util.spec_from_file_location("reference_blending", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parsing_image(rng: np.random.Generator) -> Image.Image:
    """A 512x512 binary face-parsing-like blob with some arbitrary grey values, as an "L" image."""
    yy, xx = np.mgrid[0:512, 0:512]
    cy, cx = rng.uniform(150, 360, size=2)
    ry, rx = rng.uniform(90, 260, size=2)
    img = ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1.0).astype(np.uint8) * 255
    speckle = rng.random((512, 512)) < 0.05
    img[speckle] = rng.integers(0, 256, size=int(speckle.sum()), dtype=np.uint8)
    return Image.fromarray(img)  # 2-D uint8 -> mode "L"


def make_box(rng: np.random.Generator, h: int, w: int, i: int):
    bw = int(rng.integers(16, 90))
    bh = int(rng.integers(16, 100))
    # walk around the frame edges so most crops (and some boxes) leave the frame; a few cases stay inside
    where = i % 9
    if where == 8:
        x = int(rng.integers(bw // 2, max(bw // 2 + 1, w - bw - bw // 2)))
        y = int(rng.integers(bh // 2, max(bh // 2 + 1, h - bh - bh // 2)))
    else:
        x = [-bw // 3, w - 2 * bw // 3, int(rng.integers(0, w - bw)), int(rng.integers(0, w - bw)),
             -bw // 4, w - bw + bw // 5, 2, w - bw - 2][where]
        y = [int(rng.integers(0, h - bh)), int(rng.integers(0, h - bh)), -bh // 3, h - 2 * bh // 3,
             -bh // 5, h - bh + bh // 4, 3, h - bh - 3][where]
    return (x, y, x + bw, y + bh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, required=True, help="TMElyralab/MuseTalk checkout (HEAD 0a89dec)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "golden" / "blend")
    args = ap.parse_args()
    ref = load_reference_blending(args.reference)

    rng = np.random.default_rng(20240607)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in FRAME_SHAPES]
    faces = rng.integers(0, 256, (NUM_FACES, 256, 256, 3), dtype=np.uint8)
    data = {"frame_%d" % k: f for k, f in enumerate(frames)}
    data["faces"] = faces
    ratios = [0.5, 0.5, 0.5, 0.3, 0.7, 0.0, 1.0, 0.45]
    outside = 0
    box_outside = 0
    for i in range(NUM_CASES):
        fi = i % len(frames)
        gi = i % NUM_FACES
        frame = frames[fi]
        h, w = frame.shape[:2]
        box = make_box(rng, h, w, i)
        expand = 1.2 if i % 5 == 4 else 1.5
        ratio = ratios[i % len(ratios)]
        blur = 0.1 if i % 3 == 2 else 0.05
        parse = parsing_image(rng)

        def stand_in(image, mode="raw", size=(512, 512)):  # the FaceParsing object, replaced
            return parse

        crop, s = ref.get_crop_box(box, expand)
        x, y, x1, y1 = box
        xs, ys = crop[0], crop[1]
        # the mask as MuseTalkFaces carries it: parse -> 2s x 2s (face_seg) -> face-box rectangle on black
        seg = ref.face_seg(Image.fromarray(frame).crop(crop), mode="raw", fp=stand_in)
        rect = (x - xs, y - ys, x1 - xs, y1 - ys)
        pre = Image.new("L", seg.size, 0)
        pre.paste(seg.crop(rect), rect)
        pre = np.array(pre)

        frame_bgr = np.ascontiguousarray(frame[:, :, ::-1])
        face_bgr = np.ascontiguousarray(faces[gi][:, :, ::-1])
        face_resized = cv2.resize(face_bgr, (x1 - x, y1 - y))  # inference.py, INTER_LINEAR
        if blur == 0.05:
            out_bgr = ref.get_image(frame_bgr, face_resized, list(box), upper_boundary_ratio=ratio, expand=expand,
                                    mode="raw", fp=stand_in)
        else:
            mask, crop2 = ref.get_image_prepare_material(frame_bgr, list(box), upper_boundary_ratio=ratio,
                                                         expand=expand, fp=stand_in, mode="raw")
            assert list(crop2) == list(crop)
            out_bgr = ref.get_image_blending(frame_bgr, face_resized, list(box), mask, crop2)
        out = np.ascontiguousarray(np.asarray(out_bgr)[:, :, ::-1])
        if crop[0] < 0 or crop[1] < 0 or crop[2] > w or crop[3] > h:
            outside += 1
        if x < 0 or y < 0 or x1 > w or y1 > h:
            box_outside += 1
        data[f"box_{i}"] = np.array(box, dtype=np.int64)
        data[f"crop_{i}"] = np.array(crop, dtype=np.int64)
        data[f"mask_{i}"] = pre
        data[f"out_{i}"] = out
        data[f"params_{i}"] = np.array([fi, gi, round(ratio * 1000), round(blur * 1000), round(expand * 1000)],
                                       dtype=np.int64)
    data["num_cases"] = np.array(NUM_CASES)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "blend_reference.npz"
    np.savez_compressed(path, **data)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {NUM_CASES} cases, {outside} with the crop partly "
          f"outside the frame, {box_outside} with the face box itself partly outside; cv2 {cv2.__version__}, numpy {np.__version__}, Pillow {Image.__version__}")


if __name__ == "__main__":
    main()

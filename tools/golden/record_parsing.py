"""Record golden values for face parsing and the blend-mask material from the reference MuseTalk code.

Runs the reference's FaceParsing (musetalk/utils/face_parsing) and get_image_prepare_material
(musetalk/utils/blending.py) on seeded random BiSeNet weights (tests/tiny/bisenet.py, same seed as the tests) for
synthetic frames of different sizes, in raw and jaw mode, and stores:
- frames, face boxes, cheek widths;
- labels: the reference's 512x512 argmax label map per frame (captured from the network output), and its near-ties:
  tie_idx (flat indices of the pixels whose two best class scores are within TIE_GAP) and tie_alt (the runner-up
  class there);
- seg_<mode>: face_seg's output (the mode mask bicubic-resized to 2s x 2s), per frame;
- preblur_<mode>: the mask right before cv2.GaussianBlur (after the face-box rectangle and the upper-boundary cut);
- final_<mode>: get_image_prepare_material's mask (blur factor 0.1), and crop_boxes.

The reference imports torchvision (ToTensor/Normalize, and `import torchvision` in model.py); it is not installed
here, so a minimal stand-in with the same arithmetic is put in sys.modules inside this script only. The ResNet-18
init file the reference opens is written from the same seeded weights' trunk (it is overwritten by 79999_iter.pth
anyway).

Usage: python tools/golden/record_parsing.py --reference /work/ref/MuseTalk [--out tests/golden/parsing]
(/work/ref/MuseTalk: a checkout of github.com/TMElyralab/MuseTalk at 0a89dec.)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# (H, W) and face box (x1, y1, x2, y2); some boxes touch or leave the frame (x2 > W / y2 > H, as the reference allows)
CASES = [
    ((96, 128), (40, 20, 88, 80)),
    ((120, 160), (50, 30, 110, 100)),
    ((144, 112), (0, 40, 60, 120)),        # touches the left edge
    ((160, 200), (60, 40, 140, 150)),
    ((180, 180), (100, 90, 180, 180)),     # bottom-right corner
    ((200, 150), (30, 50, 120, 170)),
    ((128, 256), (90, 10, 170, 128)),      # top/bottom edges
    ((240, 180), (50, 70, 140, 200)),
    ((100, 100), (10, 0, 100, 100)),       # the whole frame
    ((210, 280), (100, 60, 200, 190)),
    ((150, 150), (40, 30, 115, 160)),      # y2 beyond the frame height
]
CHEEKS = [(90, 90)] * 8 + [(60, 110), (120, 40), (90, 90)]
MODES = ("raw", "jaw")
# Class scores (std ~20 here) computed by other CPU kernels or thread counts differ by up to ~3e-4, which can flip
# the argmax where the two best classes are that close: such pixels are stored (index, runner-up class) so the
# tests compare label maps away from them. 0.01 leaves a wide margin and marks ~0.05% of the pixels.
TIE_GAP = 0.01


def synthetic_frame(rng: np.random.Generator, size, box) -> np.ndarray:
    """RGB uint8: a smooth colour background with a skin-toned face ellipse and a mouth inside the box."""
    import cv2

    h, w = size
    low = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    ax, ay = max((x2 - x1) // 2, 2), max((y2 - y1) // 2, 2)
    skin = tuple(int(v) for v in rng.integers(150, 240, 3))
    cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, skin, -1)
    cv2.ellipse(img, (cx, cy + ay // 2), (max(ax // 2, 1), max(ay // 6, 1)), 0, 0, 360, (150, 40, 50), -1)
    noise = rng.integers(-12, 13, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def install_torchvision_stub() -> None:
    """ToTensor + Normalize with torchvision's arithmetic (uint8 HWC -> float CHW / 255; (x - mean) / std)."""
    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")

    class Compose:
        def __init__(self, fns):
            self.fns = fns

        def __call__(self, x):
            for fn in self.fns:
                x = fn(x)
            return x

    class ToTensor:
        def __call__(self, pic):
            arr = torch.from_numpy(np.array(pic, copy=True)).permute(2, 0, 1).contiguous()
            return arr.to(torch.get_default_dtype()).div(255)

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = mean, std

        def __call__(self, t):
            mean = torch.as_tensor(self.mean, dtype=t.dtype).view(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=t.dtype).view(-1, 1, 1)
            return t.sub(mean).div(std)

    tr.Compose, tr.ToTensor, tr.Normalize = Compose, ToTensor, Normalize
    tv.transforms = tr
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="MuseTalk checkout (HEAD 0a89dec)")
    ap.add_argument("--out", default=str(ROOT / "tests" / "golden" / "parsing"))
    args = ap.parse_args()
    torch.set_num_threads(2)

    install_torchvision_stub()
    sys.path.insert(0, str(Path(args.reference).resolve()))
    from tiny.bisenet import DEFAULT_SEED, seeded_state

    state = seeded_state(DEFAULT_SEED)
    digest = hashlib.sha1(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()

    work = Path(tempfile.mkdtemp(prefix="record_parsing_"))
    (work / "models" / "face-parse-bisent").mkdir(parents=True)
    torch.save(state, str(work / "models" / "face-parse-bisent" / "79999_iter.pth"))
    trunk = {k[len("cp.resnet."):]: v for k, v in state.items() if k.startswith("cp.resnet.")}
    torch.save(trunk, str(work / "models" / "face-parse-bisent" / "resnet18-5c106cde.pth"))

    from musetalk.utils import blending
    from musetalk.utils.face_parsing import FaceParsing

    cwd = os.getcwd()
    os.chdir(work)  # the reference opens ./models/face-parse-bisent/... relative to the working directory
    try:
        parsers = {cheeks: FaceParsing(left_cheek_width=cheeks[0], right_cheek_width=cheeks[1])
                   for cheeks in sorted(set(CHEEKS))}
    finally:
        os.chdir(cwd)

    captured = {}

    class Recorder(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            out = self.net(x)
            scores = out[0].squeeze(0).cpu().numpy()
            captured["labels"] = scores.argmax(0).astype(np.uint8)
            top2 = np.sort(scores, axis=0)[-2:]
            near = np.flatnonzero(top2[1] - top2[0] < TIE_GAP)
            captured["tie_idx"] = near.astype(np.int32)
            captured["tie_alt"] = np.argsort(scores, axis=0)[-2].ravel()[near].astype(np.uint8)
            return out

    for fp in parsers.values():
        fp.net = Recorder(fp.net)

    real_face_seg = blending.face_seg

    def face_seg(image, mode="raw", fp=None):
        out = real_face_seg(image, mode=mode, fp=fp)
        captured["seg"] = np.array(out)
        return out

    class Cv2Proxy:
        def __getattr__(self, name):
            import cv2

            return getattr(cv2, name)

        def GaussianBlur(self, src, ksize, sigma):
            import cv2

            captured["preblur"] = np.array(src).copy()
            return cv2.GaussianBlur(src, ksize, sigma)

    blending.face_seg = face_seg
    blending.cv2 = Cv2Proxy()

    rng = np.random.default_rng(20240605)
    record = {"weights_sha1": np.array(digest), "num_cases": np.array(len(CASES)), "tie_gap": np.array(TIE_GAP)}
    for i, ((size, box), cheeks) in enumerate(zip(CASES, CHEEKS)):
        frame_rgb = synthetic_frame(rng, size, box)
        frame_bgr = np.ascontiguousarray(frame_rgb[:, :, ::-1])
        record[f"frame_{i}"] = frame_rgb
        record[f"box_{i}"] = np.array(box, np.int64)
        record[f"cheeks_{i}"] = np.array(cheeks, np.int64)
        for mode in MODES:
            captured.clear()
            mask, crop = blending.get_image_prepare_material(frame_bgr, list(box), fp=parsers[cheeks], mode=mode)
            record[f"labels_{i}"] = captured["labels"]
            record[f"tie_idx_{i}"] = captured["tie_idx"]
            record[f"tie_alt_{i}"] = captured["tie_alt"]
            record[f"seg_{mode}_{i}"] = captured["seg"]
            record[f"preblur_{mode}_{i}"] = captured["preblur"]
            record[f"final_{mode}_{i}"] = np.asarray(mask, np.uint8)
            record[f"crop_box_{i}"] = np.array(crop, np.int64)
            hist = np.bincount(captured["labels"].ravel(), minlength=19)
            print(f"case {i} {size} box {box} {mode}: crop {crop}, mask>0 {np.mean(captured['preblur'] > 0):.3f}, "
                  f"skin {hist[1] / hist.sum():.2f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "parsing_cases.npz", **record)
    print("wrote", out / "parsing_cases.npz", (out / "parsing_cases.npz").stat().st_size, "bytes")


if __name__ == "__main__":
    main()

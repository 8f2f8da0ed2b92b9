"""The straightforward way: each stage done as the reference does it (pipeline spec §3-§7, §11.1), for comparison.

Written from the specification, not from the reference's code: frame by frame, batch 1 wherever the reference is
batch 1, numpy/PIL/cv2 on the CPU, S3FD candidates decoded in a Python loop over cells, two VAE encoder passes per
frame, the UNet at the reference's batch of 8 with the PE and time step recomputed every batch, each decoded batch
copied to the host, and BiSeNet re-run for every output frame inside the PIL blend. The networks are the project's
own modules (the same weights), so every difference in time is the way the work is organised, not the network.

Outputs are kept only as far as the next stage needs them (they are not compared here; faithfulness has its own
tests). Images are BGR uint8 numpy arrays where the reference uses BGR.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Optional, Sequence

import numpy as np
import torch

S3FD_MEAN = np.array([104.0, 117.0, 123.0], np.float32)
UNET_BATCH = 8  # scripts/inference.py --batch_size default
EXPAND = 1.5
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


# ---------------------------------------------------------------------------------------------------- §3.1 S3FD
def _nms(dets: np.ndarray, thresh: float) -> list:
    if len(dets) == 0:
        return []
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        ovr = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


@torch.no_grad()
def detect_frame(net, frame_bgr: np.ndarray):
    """One frame, batch 1, full resolution; per-cell Python decode; numpy NMS. -> (box or None, candidates)."""
    dev = next(net.parameters()).device
    img = frame_bgr[..., ::-1].astype(np.float32) - S3FD_MEAN  # BGR -> RGB, minus (104, 117, 123)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(dev)
    olist = net(x)
    for i in range(len(olist) // 2):
        olist[i * 2] = torch.softmax(olist[i * 2], dim=1)
    olist = [o.cpu() for o in olist]
    bboxlist = []
    for i in range(len(olist) // 2):
        ocls, oreg = olist[i * 2], olist[i * 2 + 1]
        stride = 2 ** (i + 2)
        for hindex, windex in zip(*np.where(ocls[0, 1, :, :].numpy() > 0.05)):
            axc, ayc = stride / 2 + windex * stride, stride / 2 + hindex * stride
            score = ocls[0, 1, hindex, windex]
            loc = oreg[0, :, hindex, windex].contiguous().view(1, 4)
            priors = torch.Tensor([[axc / 1.0, ayc / 1.0, stride * 4 / 1.0, stride * 4 / 1.0]])
            centre = priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:]
            size = priors[:, 2:] * torch.exp(loc[:, 2:] * 0.2)
            box = torch.cat((centre - size / 2, size), 1)
            box[:, 2:] += box[:, :2]
            x1, y1, x2, y2 = box[0] * 1.0
            bboxlist.append([x1, y1, x2, y2, score])
    candidates = len(bboxlist)
    bboxlist = np.array(bboxlist, dtype=np.float32) if bboxlist else np.zeros((1, 5), np.float32)
    keep = _nms(bboxlist, 0.3)
    bboxlist = bboxlist[keep, :]
    bboxlist = [b for b in bboxlist if b[-1] > 0.5]
    if not bboxlist:
        return None, candidates
    d = np.clip(bboxlist[0], 0, None)
    return (int(d[0]), int(d[1]), int(d[2]), int(d[3])), candidates


def detect(net, frames_bgr: Sequence[np.ndarray]) -> list:
    return [detect_frame(net, f)[0] for f in frames_bgr]


# ---------------------------------------------------------------------------------------------- §3.2 DWPose
@torch.no_grad()
def landmarks_frame(net, frame_bgr: np.ndarray) -> np.ndarray:
    """mmpose top-down on the whole frame at batch 1, flip test as two batch-1 passes -> int32 (68, 2)."""
    import cv2

    from musetalk_core.models import dwpose as dw

    h, w = frame_bgr.shape[:2]
    centre, scale = dw.center_scale((0, 0, w, h))
    mat = dw.warp_matrix(centre, scale)
    warped = cv2.warpAffine(frame_bgr, mat, (dw.INPUT_W, dw.INPUT_H), flags=cv2.INTER_LINEAR)
    rgb = warped[..., ::-1].astype(np.float32)
    x = (rgb - np.array(dw.MEAN, np.float32)) / np.array(dw.STD, np.float32)
    dev = next(net.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(dev)
    px, py = net(x)
    fx, fy = net(x.flip(-1))
    flip = dw.wholebody_flip_indices()
    px = ((px + fx[:, flip].flip(-1)) * 0.5)[0].cpu().numpy()
    py = ((py + fy[:, flip]) * 0.5)[0].cpu().numpy()
    locs = np.stack([px.argmax(1), py.argmax(1)], -1).astype(np.float32)
    vals = np.minimum(px.max(1), py.max(1))
    locs[vals <= 0] = -1
    kp = locs / dw.SPLIT_RATIO / (dw.INPUT_W, dw.INPUT_H) * scale + centre - 0.5 * scale
    return kp[23:91].astype(np.int32)


def landmarks(net, frames_bgr: Sequence[np.ndarray]) -> list:
    return [landmarks_frame(net, f) for f in frames_bgr]


# ----------------------------------------------------------------------------------------- §3.3-3.4 the box
def landmark_box(lm: np.ndarray, fallback, frame_h: int, extra_margin: Optional[int] = 10):
    lm = lm.copy()
    half = lm[29]
    y2 = int(lm[:, 1].max())
    upper = max(0, int(half[1]) - (y2 - int(half[1])))
    box = (int(lm[:, 0].min()), upper, int(lm[:, 0].max()), y2)
    if box[3] - box[1] <= 0 or box[2] - box[0] <= 0 or box[0] < 0:
        box = fallback
    if extra_margin is not None:
        box = (box[0], box[1], box[2], min(box[3] + extra_margin, frame_h))
    return box


def crop_box(box, expand: float = EXPAND):
    x, y, x1, y1 = box
    xc, yc = (x + x1) // 2, (y + y1) // 2
    s = int(max(x1 - x, y1 - y) // 2 * expand)
    return [xc - s, yc - s, xc + s, yc + s], s


# ------------------------------------------------------------------------------------------- §6 face parsing
_JAW = {}


def _jaw_kernels():
    import cv2

    if not _JAW:
        k = np.zeros((33, 33), np.uint8)
        for r in range(10, 21):
            k[r, 16 - (r - 10):16 + (r - 10) + 1] = 1
        k[21:, 6:27] = 1
        _JAW["dilate"] = k
        _JAW["erode"] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))
    return _JAW["dilate"], _JAW["erode"]


@torch.no_grad()
def parse_pil(parser, face_large, mode: str = "jaw", cheeks=(90, 90)):
    """FaceParsing.__call__: PIL bilinear 512, ToTensor+Normalize in numpy, BiSeNet at batch 1, argmax, mode mask."""
    import cv2
    from PIL import Image

    img = face_large.resize((512, 512), Image.BILINEAR)
    x = (np.asarray(img, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    dev = next(parser.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(dev)
    labels = parser(x)[0].argmax(0).cpu().numpy()
    if mode == "jaw":
        dil, ero = _jaw_kernels()
        skin = (labels == 1).astype(np.uint8) * 255
        d = cv2.dilate(skin, dil, iterations=1)
        e = cv2.erode(d, ero, iterations=2)
        cheek = np.zeros((512, 512), np.uint8)
        cv2.rectangle(cheek, (0, 0), (256 - cheeks[0], 512), 255, -1)
        cv2.rectangle(cheek, (256 + cheeks[1], 0), (512, 512), 255, -1)
        region = np.where(cheek > 0, e, d)
        out = np.where(((region == 255) & (labels != 10)) | np.isin(labels, (11, 12, 13)), 255, 0)
    else:
        out = np.where(np.isin(labels, (1, 11, 12, 13)), 255, 0)
    return Image.fromarray(out.astype(np.uint8))


def face_seg(parser, face_large, mode="jaw"):
    seg = parse_pil(parser, face_large, mode)
    return seg.resize(face_large.size)  # PIL's default for mode L: BICUBIC


def mask_material(parser, frame_bgr: np.ndarray, box, mode="jaw"):
    """§7.2 steps 1-3 for one frame: the expanded crop's parsing mask limited to the face box (uint8 2s x 2s)."""
    from PIL import Image

    body = Image.fromarray(frame_bgr[:, :, ::-1])
    x, y, x1, y1 = box
    cb, _ = crop_box(box)
    x_s, y_s = cb[0], cb[1]
    face_large = body.crop(cb)
    mask = face_seg(parser, face_large, mode)
    small = mask.crop((x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    full = Image.new("L", face_large.size, 0)
    full.paste(small, (x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    return np.array(full), cb


def parse(parser, frames_bgr, boxes, mode="jaw") -> list:
    return [mask_material(parser, f, b, mode) if b is not None else None for f, b in zip(frames_bgr, boxes)]


# ---------------------------------------------------------------------------------------------------- §4 VAE
def crop_256(frame_bgr: np.ndarray, box) -> np.ndarray:
    import cv2

    x1, y1, x2, y2 = box
    return cv2.resize(frame_bgr[y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_LANCZOS4)


@torch.no_grad()
def encode_frame(vae, crop_bgr: np.ndarray) -> torch.Tensor:
    """preprocess_img in float64 numpy, then two batch-1 encoder passes (masked, full), latent_dist.sample()."""
    dev, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    img = crop_bgr[:, :, ::-1] / 255.0  # float64
    img = np.transpose(img, (2, 0, 1))
    out = []
    for half in (True, False):
        x = torch.FloatTensor(img.copy())
        if half:
            mask = torch.zeros_like(x)
            mask[:, :128, :] = 1
            x = x * mask
        x = ((x - 0.5) / 0.5)[None].to(dev)
        z = vae.encode(x.to(dtype)).latent_dist.sample() * 0.18215
        out.append(z)
    return torch.cat(out, dim=1)


def encode(vae, frames_bgr, boxes) -> list:
    return [encode_frame(vae, crop_256(f, b)) for f, b in zip(frames_bgr, boxes)]


# --------------------------------------------------------------------------------------------------- §2.1 audio
@torch.no_grad()
def audio_features(whisper, feature_extractor, waveform_16k: np.ndarray, fps: float, pad_left=2, pad_right=2):
    """HEAD audio path: per-30 s-segment mel (transformers), encoder hidden states, then a Python loop per frame."""
    dev, dtype = next(whisper.parameters()).device, next(whisper.parameters()).dtype
    seg_len = 30 * 16000
    feats = []
    for start in range(0, len(waveform_16k), seg_len):
        seg = waveform_16k[start:start + seg_len]
        mel = feature_extractor(seg, sampling_rate=16000, return_tensors="pt").input_features
        states = whisper(mel.to(dev, dtype), output_hidden_states=True).hidden_states
        feats.append(torch.stack(states, dim=2))
    whole = torch.cat(feats, dim=1)
    fps = int(fps)
    m = 50.0 / fps
    num_frames = math.floor(len(waveform_16k) / 16000 * fps)
    actual = math.floor(len(waveform_16k) / 16000 * 50)
    whole = whole[:, :actual]
    p = math.ceil(m)
    left = torch.zeros_like(whole[:, :p * pad_left])
    right = torch.zeros_like(whole[:, :p * 3 * pad_right])
    padded = torch.cat([left, whole, right], 1)
    chunks = []
    length = 2 * (pad_left + pad_right + 1)
    for i in range(num_frames):
        a = int(i * m)
        chunks.append(padded[:, a:a + length])
    out = torch.cat(chunks, 0)  # (T, 10, 5, 384)
    return out.reshape(out.shape[0], -1, out.shape[-1])


# ------------------------------------------------------------------------------------------ §5 UNet and decode
@torch.no_grad()
def unet_frames(unet, pe, latents_cycle: list, features: torch.Tensor, batch_size: int = UNET_BATCH) -> list:
    """datagen + UNet: batches of 8 in cycle order, PE and time step built every batch."""
    dev, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    preds = []
    t = features.shape[0]
    for start in range(0, t, batch_size):
        idx = range(start, min(t, start + batch_size))
        lat = torch.cat([latents_cycle[i % len(latents_cycle)] for i in idx], 0).to(dev, dtype)
        audio = pe(features[start:start + len(idx)].to(dev, dtype))
        timesteps = torch.tensor([0], device=dev)
        preds.append(unet(lat, timesteps, encoder_hidden_states=audio).sample)
    return preds


@torch.no_grad()
def decode_batches(vae, preds: list) -> list:
    """decode_latents per batch: /0.18215, decode, clamp, synchronous copy to the host, round, uint8, RGB->BGR."""
    dtype = next(vae.parameters()).dtype
    frames = []
    for z in preds:
        image = vae.decode((z / 0.18215).to(dtype)).sample
        image = (image / 2 + 0.5).clamp(0, 1)
        image = image.detach().cpu().permute(0, 2, 3, 1).float().numpy()
        image = (image * 255).round().astype("uint8")[..., ::-1]
        frames.extend(list(image))
    return frames


# -------------------------------------------------------------------------------------------------- §7 blending
def get_image(parser, frame_bgr, face_bgr, box, upper_boundary_ratio=0.5, mode="jaw", blur=0.05):
    """§7.2 for one output frame, BiSeNet included: PIL crop/paste with the parsing mask re-computed."""
    import cv2
    from PIL import Image

    body = Image.fromarray(frame_bgr[:, :, ::-1])
    face = Image.fromarray(face_bgr[:, :, ::-1])
    x, y, x1, y1 = box
    cb, _ = crop_box(box)
    x_s, y_s = cb[0], cb[1]
    face_large = body.crop(cb)
    ori_shape = face_large.size
    mask_image = face_seg(parser, face_large, mode)
    mask_small = mask_image.crop((x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    mask_image = Image.new("L", ori_shape, 0)
    mask_image.paste(mask_small, (x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    arr = np.array(mask_image)
    top = int(ori_shape[1] * upper_boundary_ratio)
    modified = np.zeros_like(arr)
    modified[top:, :] = arr[top:, :]
    k = int(blur * ori_shape[0] // 2 * 2) + 1
    mask_image = Image.fromarray(cv2.GaussianBlur(modified, (k, k), 0))
    face_large.paste(face, (x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    body.paste(face_large, tuple(cb[:2]), mask_image)
    return np.array(body)[:, :, ::-1]


def blend(parser, frames_cycle_bgr: list, boxes_cycle: list, faces_bgr: list, mode="jaw",
          png_dir: Optional[str] = None) -> list:
    """Per output frame: cv2.resize the face into its box (INTER_LINEAR), get_image, optionally cv2.imwrite PNG."""
    import cv2

    out = []
    for i, face in enumerate(faces_bgr):
        frame = frames_cycle_bgr[i % len(frames_cycle_bgr)]
        x1, y1, x2, y2 = boxes_cycle[i % len(boxes_cycle)]
        res = cv2.resize(face.astype(np.uint8), (x2 - x1, y2 - y1))
        img = get_image(parser, frame, res, (x1, y1, x2, y2), mode=mode)
        if png_dir is not None:
            cv2.imwrite(os.path.join(png_dir, f"{i:08d}.png"), img)
        out.append(img)
    return out


def png_roundtrip(frames_bgr: Sequence[np.ndarray]) -> None:
    """The reference's frame I/O: extracted frames written as PNG and read back with cv2.imread (§9)."""
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(frames_bgr):
            cv2.imwrite(os.path.join(tmp, f"{i:08d}.png"), f)
        for i in range(len(frames_bgr)):
            cv2.imread(os.path.join(tmp, f"{i:08d}.png"))


def cycle(items: list) -> list:
    """frame_list_cycle = items + items[::-1]."""
    return list(items) + list(items)[::-1]

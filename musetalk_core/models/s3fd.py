"""S3FD face detector (Zhang et al. 2017) in plain torch, loading ``s3fd-619a316812.pth`` with strict keys.

Same network as face_alignment's sfd (pipeline spec §3.1): VGG16 trunk, L2Norm on conv3_3/4_3/5_3, six heads with
max-out background on the first one. Detection is batched and fully vectorised on the device: softmax, candidate
cells (p > 0.05), anchor decoding with variances (0.1, 0.2), NMS at IoU 0.3 (+1-pixel areas) and the p > 0.5 keep.
The reference loops in Python over every candidate cell and runs NMS in numpy; the result is the same boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import load_strict, read_state_dict

# The reference subtracts these from the RGB-ordered frame (R-104, G-117, B-123).
MEAN_RGB = (104.0, 117.0, 123.0)
CANDIDATE_THRESHOLD = 0.05
NMS_IOU = 0.3
KEEP_THRESHOLD = 0.5
VARIANCES = (0.1, 0.2)
STRIDES = (4, 8, 16, 32, 64, 128)
MIN_SIZE = 32  # below this the fifth max-pool has nothing left; smaller frames are padded (see pad_to_min)


class L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)


class S3FD(nn.Module):
    """The sfd network; forward returns [cls1, reg1, ..., cls6, reg6] like the reference."""

    _VGG = (("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
            ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
            ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
            ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512))
    _HEADS = (("conv3_3_norm", 256, 4), ("conv4_3_norm", 512, 2), ("conv5_3_norm", 512, 2), ("fc7", 1024, 2),
              ("conv6_2", 512, 2), ("conv7_2", 256, 2))

    def __init__(self):
        super().__init__()
        for name, cin, cout in self._VGG:
            setattr(self, name, nn.Conv2d(cin, cout, 3, 1, 1))
        self.fc6 = nn.Conv2d(512, 1024, 3, 1, padding=3)
        self.fc7 = nn.Conv2d(1024, 1024, 1, 1, 0)
        self.conv6_1 = nn.Conv2d(1024, 256, 1, 1, 0)
        self.conv6_2 = nn.Conv2d(256, 512, 3, 2, 1)
        self.conv7_1 = nn.Conv2d(512, 128, 1, 1, 0)
        self.conv7_2 = nn.Conv2d(128, 256, 3, 2, 1)
        self.conv3_3_norm = L2Norm(256, 10)
        self.conv4_3_norm = L2Norm(512, 8)
        self.conv5_3_norm = L2Norm(512, 5)
        for name, cin, ncls in self._HEADS:
            setattr(self, f"{name}_mbox_conf", nn.Conv2d(cin, ncls, 3, 1, 1))
            setattr(self, f"{name}_mbox_loc", nn.Conv2d(cin, 4, 3, 1, 1))

    def forward(self, x):
        r = F.relu
        h = r(self.conv1_2(r(self.conv1_1(x))))
        h = F.max_pool2d(h, 2, 2)
        h = r(self.conv2_2(r(self.conv2_1(h))))
        h = F.max_pool2d(h, 2, 2)
        f3 = h = r(self.conv3_3(r(self.conv3_2(r(self.conv3_1(h))))))
        h = F.max_pool2d(h, 2, 2)
        f4 = h = r(self.conv4_3(r(self.conv4_2(r(self.conv4_1(h))))))
        h = F.max_pool2d(h, 2, 2)
        f5 = h = r(self.conv5_3(r(self.conv5_2(r(self.conv5_1(h))))))
        h = F.max_pool2d(h, 2, 2)
        f7 = h = r(self.fc7(r(self.fc6(h))))
        f6_2 = h = r(self.conv6_2(r(self.conv6_1(h))))
        f7_2 = r(self.conv7_2(r(self.conv7_1(h))))
        f3, f4, f5 = self.conv3_3_norm(f3), self.conv4_3_norm(f4), self.conv5_3_norm(f5)
        out = []
        for (name, _, _), feat in zip(self._HEADS, (f3, f4, f5, f7, f6_2, f7_2)):
            out.append(getattr(self, f"{name}_mbox_conf")(feat))
            out.append(getattr(self, f"{name}_mbox_loc")(feat))
        c = torch.chunk(out[0], 4, 1)
        out[0] = torch.cat([torch.max(torch.max(c[0], c[1]), c[2]), c[3]], dim=1)
        return out


def load_s3fd(path) -> nn.Module:
    """fp32, eval, strict keys. A file with other keys (e.g. the DWPose checkpoint) is a WeightFileError."""
    state = read_state_dict(Path(path), unwrap=("state_dict",))
    net = load_strict(S3FD(), state, Path(path), "S3FD face detector (s3fd-619a316812.pth)")
    return net.float().eval().requires_grad_(False)


@dataclass(frozen=True)
class Detections:
    """Per frame, the boxes that survive NMS and p > 0.5, in the reference's order (highest score first).

    boxes: float32 (K, 4) x1, y1, x2, y2 as decoded (not clipped); scores: float32 (K,).
    """

    boxes: torch.Tensor
    scores: torch.Tensor


def preprocess(frames_u8: torch.Tensor, device, dtype=torch.float32) -> torch.Tensor:
    """uint8 (B,H,W,3) RGB -> (B,3,H,W) minus (104,117,123), padded to MIN_SIZE with zeros (= the mean colour)."""
    x = frames_u8.to(device).permute(0, 3, 1, 2).to(torch.float32)
    x = x - torch.tensor(MEAN_RGB, device=x.device).view(1, 3, 1, 1)
    h, w = x.shape[-2:]
    if h < MIN_SIZE or w < MIN_SIZE:
        x = F.pad(x, (0, max(0, MIN_SIZE - w), 0, max(0, MIN_SIZE - h)))
    return x.to(dtype)


def _decode_level(cls: torch.Tensor, reg: torch.Tensor, stride: int):
    """All cells of one level: probabilities (B, HW) and boxes (B, HW, 4), float32 ops in the reference's order."""
    prob = F.softmax(cls.float(), dim=1)[:, 1]  # (B, h, w)
    b, h, w = prob.shape
    dev = prob.device
    ys = torch.arange(h, device=dev, dtype=torch.float32)
    xs = torch.arange(w, device=dev, dtype=torch.float32)
    acy, acx = torch.meshgrid(stride / 2 + ys * stride, stride / 2 + xs * stride, indexing="ij")
    size = float(stride * 4)
    loc = reg.float().permute(0, 2, 3, 1)  # (B, h, w, 4)
    cx = acx + loc[..., 0] * VARIANCES[0] * size
    cy = acy + loc[..., 1] * VARIANCES[0] * size
    bw = size * torch.exp(loc[..., 2] * VARIANCES[1])
    bh = size * torch.exp(loc[..., 3] * VARIANCES[1])
    x1 = cx - bw / 2
    y1 = cy - bh / 2
    boxes = torch.stack([x1, y1, bw + x1, bh + y1], dim=-1)
    return prob.reshape(b, -1), boxes.reshape(b, -1, 4)


def nms_keep(boxes: torch.Tensor, scores: torch.Tensor, iou: float = NMS_IOU, order=None) -> torch.Tensor:
    """Greedy NMS as the reference's numpy nms (areas with +1, suppress IoU > thresh). Returns kept indices.

    ``order``: the visiting order (default: numpy's ``scores.argsort()[::-1]``, the reference's order, ties
    included). The IoU matrix is computed once on the device; the greedy pass walks the few high-score candidates.
    """
    n = scores.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    if order is None:
        order = np.argsort(scores.detach().cpu().numpy())[::-1].copy()
    order = torch.as_tensor(np.asarray(order), dtype=torch.long, device=scores.device)
    b = boxes[order]
    x1, y1, x2, y2 = b.unbind(-1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    xx1 = torch.maximum(x1[:, None], x1[None, :])
    yy1 = torch.maximum(y1[:, None], y1[None, :])
    xx2 = torch.minimum(x2[:, None], x2[None, :])
    yy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (xx2 - xx1 + 1).clamp(min=0.0) * (yy2 - yy1 + 1).clamp(min=0.0)
    ovr = inter / (areas[:, None] + areas[None, :] - inter)
    suppress = (ovr > iou).cpu()
    alive = torch.ones(order.shape[0], dtype=torch.bool)
    keep = []
    for i in range(order.shape[0]):
        if not alive[i]:
            continue
        keep.append(i)
        alive &= ~suppress[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


@torch.no_grad()
def detect(net: nn.Module, frames_u8: torch.Tensor, *, scale: float = 1.0) -> List[Detections]:
    """Run S3FD on uint8 (B,H,W,3) RGB frames; boxes are in the original frame's pixels.

    ``scale`` < 1 detects on a frame resized by that factor (bilinear, antialiased) and scales the boxes back: much
    faster on large frames, not the reference (which always detects at full resolution).
    """
    param = next(net.parameters())
    frames = frames_u8
    if scale != 1.0:
        h, w = frames.shape[1:3]
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        x = frames.to(param.device).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        frames = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    x = preprocess(frames, param.device, param.dtype)
    outs = net(x)
    probs, boxes = [], []
    for level in range(6):
        p, b = _decode_level(outs[2 * level], outs[2 * level + 1], STRIDES[level])
        probs.append(p)
        boxes.append(b)
    probs = torch.cat(probs, dim=1)  # (B, cells) in the reference's candidate order (level, row, column)
    boxes = torch.cat(boxes, dim=1)
    results = []
    for i in range(probs.shape[0]):
        # Candidates below 0.5 can never be kept, and NMS only lets a higher score suppress a lower one, so NMS on
        # the p > 0.5 candidates keeps exactly the reference's surviving p > 0.5 boxes.
        # The reference sorts every candidate (p > 0.05) with numpy's argsort()[::-1]; ties (flat image regions give
        # bit-identical cells) are broken by that sort, so we sort the same candidates the same way (on the CPU,
        # a few thousand floats). Below-0.5 candidates are never kept and NMS lets only a higher-ranked box
        # suppress a lower one, so walking the p > 0.5 part of that order keeps exactly the reference's boxes.
        cand = torch.nonzero(probs[i] > CANDIDATE_THRESHOLD).flatten()
        cand_scores = probs[i, cand]
        full_order = np.argsort(cand_scores.cpu().numpy())[::-1]
        high = full_order[cand_scores.cpu().numpy()[full_order] > KEEP_THRESHOLD]
        sel = cand[torch.as_tensor(high.copy(), dtype=torch.long, device=cand.device)]
        s, bx = probs[i, sel], boxes[i, sel]
        keep = nms_keep(bx, s, order=np.arange(len(high)))
        bx, s = bx[keep], s[keep]
        if scale != 1.0:
            bx = bx / scale
        results.append(Detections(bx.float(), s.float()))
    return results


"""DWPose (RTMPose-l COCO-WholeBody 384x288: CSPNeXt-P5 backbone + RTMCC head) in plain torch.

Loads ``dw-ll_ucoco_384.pth`` (an mmengine checkpoint: {"meta", "state_dict": {backbone.*, head.*}}) with strict
keys and reproduces mmpose 1.x's top-down inference as MuseTalk calls it (pipeline spec §3.2): the whole frame (or a
given box) as the person box, padding 1.25, aspect fixed to 288/384, cv2.warpAffine INTER_LINEAR to 288x384,
BGR->RGB, mean/std, flip test with the COCO-WholeBody flip indices, SimCC argmax decode (split ratio 2), and
back to frame pixels. The network runs batched on the device. The affine warp is warp_ops' reproduction of the
reference's OpenCV 4.9 getAffineTransform + warpAffine (OpenCV 5 moved its results by up to 6 grey levels).

Width and depth (widen/deepen factors, GAU sizes) are read from the checkpoint's shapes, so the published file
gives the published architecture and a small same-format file (tests) gives a small one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .checkpoints import load_strict, read_state_dict
from ..errors import WeightFileError
from ..warp_ops import affine_from_points, warp_affine_linear

INPUT_W, INPUT_H = 288, 384
SPLIT_RATIO = 2.0
PADDING = 1.25
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
NUM_KEYPOINTS = 133
FACE_SLICE = slice(23, 91)  # the 68 iBUG face points inside COCO-WholeBody's 133
BN_EPS = 1e-5  # the config's SyncBN (reverted to BatchNorm2d by init_model) keeps torch's default eps


def wholebody_flip_indices() -> list:
    """COCO-WholeBody's 133 flip indices (mmpose configs/_base_/datasets/coco_wholebody.py swap pairs)."""
    idx = list(range(NUM_KEYPOINTS))

    def swap(a, b):
        idx[a], idx[b] = b, a

    for a, b in ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)):  # body
        swap(a, b)
    for k in range(3):  # feet 17-19 <-> 20-22
        swap(17 + k, 20 + k)
    face = 23  # face-0..67 in iBUG order
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]  # mouth
    for a, b in pairs:
        swap(face + a, face + b)
    for k in range(21):  # left hand 91-111 <-> right hand 112-132
        swap(91 + k, 112 + k)
    return idx


class ConvBN(nn.Module):
    """mmcv ConvModule: conv (no bias) -> BatchNorm2d -> SiLU (keys conv.*, bn.*)."""

    def __init__(self, cin, cout, k, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.depthwise_conv = ConvBN(cin, cin, k, groups=cin)
        self.pointwise_conv = ConvBN(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    def __init__(self, ch, add_identity):
        super().__init__()
        self.conv1 = ConvBN(ch, ch, 3)
        self.conv2 = DepthwiseSeparable(ch, ch, 5)
        self.add_identity = add_identity

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(ch, ch, 1, 1, 0, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)

    def forward(self, x):
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPLayer(nn.Module):
    def __init__(self, ch, num_blocks, add_identity):
        super().__init__()
        mid = int(ch * 0.5)
        self.main_conv = ConvBN(ch, mid, 1)
        self.short_conv = ConvBN(ch, mid, 1)
        self.final_conv = ConvBN(2 * mid, ch, 1)
        self.blocks = nn.Sequential(*[CSPNeXtBlock(mid, add_identity) for _ in range(num_blocks)])
        self.attention = ChannelAttention(2 * mid)

    def forward(self, x):
        short = self.short_conv(x)
        main = self.blocks(self.main_conv(x))
        return self.final_conv(self.attention(torch.cat((main, short), dim=1)))


class SPPBottleneck(nn.Module):
    def __init__(self, ch, kernels=(5, 9, 13)):
        super().__init__()
        mid = ch // 2
        self.conv1 = ConvBN(ch, mid, 1)
        self.poolings = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernels])
        self.conv2 = ConvBN(mid * (len(kernels) + 1), ch, 1)

    def forward(self, x):
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [p(x) for p in self.poolings], dim=1))


# CSPNeXt P5: (in, out, blocks, add_identity, use_spp) before widen/deepen
_P5 = ((64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False),
       (512, 1024, 3, False, True))


class CSPNeXt(nn.Module):
    def __init__(self, widen: float = 1.0, deepen: float = 1.0):
        super().__init__()
        c0 = int(_P5[0][0] * widen // 2)
        c1 = int(_P5[0][0] * widen)
        self.stem = nn.Sequential(ConvBN(3, c0, 3, 2), ConvBN(c0, c0, 3), ConvBN(c0, c1, 3))
        for i, (cin, cout, n, add, spp) in enumerate(_P5):
            cin, cout = int(cin * widen), int(cout * widen)
            n = max(round(n * deepen), 1)
            layers = [ConvBN(cin, cout, 3, 2)]
            if spp:
                layers.append(SPPBottleneck(cout))
            layers.append(CSPLayer(cout, n, add))
            setattr(self, f"stage{i + 1}", nn.Sequential(*layers))
        self.out_channels = int(_P5[-1][1] * widen)

    def forward(self, x):
        x = self.stem(x)
        for i in range(4):
            x = getattr(self, f"stage{i + 1}")(x)
        return x


class ScaleNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.scale = dim ** -0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x):
        norm = torch.norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.scale


class GAU(nn.Module):
    """RTMCCBlock, self-attention, no relative bias, no RoPE (DWPose's gau_cfg)."""

    def __init__(self, dims, s, expansion):
        super().__init__()
        self.s, self.e = s, int(dims * expansion)
        self.o = nn.Linear(self.e, dims, bias=False)
        self.uv = nn.Linear(dims, 2 * self.e + s, bias=False)
        self.gamma = nn.Parameter(torch.ones(2, s))
        self.beta = nn.Parameter(torch.zeros(2, s))
        self.ln = ScaleNorm(dims)
        self.act_fn = nn.SiLU(True)
        self.res_scale = Scale(dims)
        self.sqrt_s = math.sqrt(s)

    def forward(self, inputs):
        x = self.act_fn(self.uv(self.ln(inputs)))
        u, v, base = torch.split(x, [self.e, self.e, self.s], dim=2)
        base = base.unsqueeze(2) * self.gamma[None, None, :] + self.beta
        q, k = torch.unbind(base, dim=2)
        qk = torch.bmm(q, k.permute(0, 2, 1))
        kernel = torch.square(torch.relu(qk / self.sqrt_s))
        x = self.o(u * torch.bmm(kernel, v))
        return self.res_scale(inputs) + x


class RTMCCHead(nn.Module):
    def __init__(self, in_channels, hidden=256, s=128, expansion=2.0, kernel=7, featuremap=(9, 12)):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, NUM_KEYPOINTS, kernel, 1, kernel // 2)
        flat = featuremap[0] * featuremap[1]
        self.mlp = nn.Sequential(ScaleNorm(flat), nn.Linear(flat, hidden, bias=False))
        self.gau = GAU(hidden, s, expansion)
        self.cls_x = nn.Linear(hidden, int(INPUT_W * SPLIT_RATIO), bias=False)
        self.cls_y = nn.Linear(hidden, int(INPUT_H * SPLIT_RATIO), bias=False)

    def forward(self, feats):
        x = torch.flatten(self.final_layer(feats), 2)
        x = self.gau(self.mlp(x))
        return self.cls_x(x), self.cls_y(x)


@dataclass(frozen=True)
class DWPoseConfig:
    widen: float = 1.0
    deepen: float = 1.0
    hidden: int = 256
    s: int = 128
    expansion: float = 2.0
    kernel: int = 7

    @classmethod
    def from_state_dict(cls, state, path="dwpose") -> "DWPoseConfig":
        """Architecture factors from the checkpoint's shapes (the published file gives 1.0 / 1.0 / 256 / 128 / 2)."""
        try:
            stem_out = state["backbone.stem.2.conv.weight"].shape[0]
            n_blocks = len({k.split(".")[4] for k in state if k.startswith("backbone.stage1.1.blocks.")})
            hidden = state["head.mlp.1.weight"].shape[0]
            s = state["head.gau.gamma"].shape[1]
            uv = state["head.gau.uv.weight"].shape[0]
            kernel = state["head.final_layer.weight"].shape[-1]
        except (KeyError, IndexError):
            raise WeightFileError(path, "is not a DWPose / RTMPose checkpoint (no backbone.stem.* / head.gau.* "
                                        "weights). Put dw-ll_ucoco_384.pth from yzd-v/DWPose in models/musetalk/"
                                        "dwpose/.") from None
        widen = stem_out / 64.0
        deepen = 1.0 if n_blocks == 3 else n_blocks / 3.0
        return cls(widen=widen, deepen=deepen, hidden=int(hidden), s=int(s),
                   expansion=(uv - s) / 2 / hidden, kernel=int(kernel))


class DWPose(nn.Module):
    """backbone + head; ``forward(x)`` returns SimCC logits (x: (B,133,576), y: (B,133,768))."""

    def __init__(self, config: DWPoseConfig = DWPoseConfig()):
        super().__init__()
        self.config = config
        self.backbone = CSPNeXt(config.widen, config.deepen)
        self.head = RTMCCHead(self.backbone.out_channels, config.hidden, config.s, config.expansion, config.kernel)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return self.head(self.backbone(x))


def load_dwpose(path) -> nn.Module:
    """fp32, eval, strict keys from the mmengine checkpoint's state_dict."""
    path = Path(path)
    state = read_state_dict(path, unwrap=("state_dict",))
    config = DWPoseConfig.from_state_dict(state, path)
    net = load_strict(DWPose(config), state, path, "DWPose (dw-ll_ucoco_384.pth)")
    return net.float().eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------------------
# mmpose 1.x top-down inference, batched


def center_scale(box_xyxy: Sequence[float]):
    """GetBBoxCenterScale(padding=1.25) then TopdownAffine's aspect fix, in float32 as mmpose computes them."""
    bbox = np.asarray(box_xyxy, dtype=np.float32)[None]
    scale = (bbox[..., 2:] - bbox[..., :2]) * PADDING
    center = (bbox[..., 2:] + bbox[..., :2]) * 0.5
    aspect = INPUT_W / INPUT_H
    w, h = np.hsplit(scale, [1])
    scale = np.where(w > h * aspect, np.hstack([w, w / aspect]), np.hstack([h * aspect, h]))
    return center[0].astype(np.float32), scale[0].astype(np.float32)


def warp_matrix(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """mmpose get_warp_matrix(center, scale, rot=0, output_size=(288, 384)) (three points, getAffineTransform)."""
    src_w = scale[0]
    src_dir = np.array([src_w * -0.5, 0.0])  # rotation by 0
    dst_dir = np.array([INPUT_W * -0.5, 0.0])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center + scale * np.array((0.0, 0.0))
    src[1, :] = center + src_dir + scale * np.array((0.0, 0.0))
    dst[0, :] = [INPUT_W * 0.5, INPUT_H * 0.5]
    dst[1, :] = np.array([INPUT_W * 0.5, INPUT_H * 0.5]) + dst_dir
    for pts in (src, dst):
        d = pts[0, :] - pts[1, :]
        pts[2, :] = pts[1, :] + np.r_[-d[1], d[0]]
    return affine_from_points(src, dst)


def warp_inputs(frames_rgb: np.ndarray, boxes: Optional[Sequence] = None, device="cpu"):
    """Per frame: the 384x288 RGB uint8 input, centre and scale. ``boxes`` None = the whole frame [0, 0, W, H].
    The warp runs on ``device`` (bit-identical on any device: integer arithmetic)."""
    n = len(frames_rgb)
    centers = np.empty((n, 2), dtype=np.float32)
    scales = np.empty((n, 2), dtype=np.float32)
    mats = []
    for i, frame in enumerate(frames_rgb):
        h, w = frame.shape[:2]
        box = (0, 0, w, h) if boxes is None or boxes[i] is None else boxes[i]
        centers[i], scales[i] = center_scale(box)
        mats.append(warp_matrix(centers[i], scales[i]))
    if n == 0:
        return np.empty((0, INPUT_H, INPUT_W, 3), np.uint8), centers, scales
    # mmpose warps the BGR frame; warping is per channel, so warping RGB gives the same values.
    if isinstance(frames_rgb, np.ndarray) and frames_rgb.ndim == 4:
        batches = [(slice(0, n), np.ascontiguousarray(frames_rgb))]
    else:  # a list of frames that may differ in size
        batches = [(slice(i, i + 1), np.ascontiguousarray(f)[None]) for i, f in enumerate(frames_rgb)]
    out = np.empty((n, INPUT_H, INPUT_W, 3), dtype=np.uint8)
    for rows, frames in batches:
        warped = warp_affine_linear(torch.as_tensor(frames, device=device), mats[rows], (INPUT_W, INPUT_H))
        out[rows] = warped.cpu().numpy()
    return out, centers, scales


@torch.no_grad()
def simcc_logits(net: DWPose, inputs_rgb_u8: np.ndarray, flip_test: bool = True):
    """Normalise, run (with the flip test) and average, as TopdownPoseEstimator.predict. Returns x, y logits (CPU)."""
    dev, dtype = net.mean.device, next(net.parameters()).dtype
    x = torch.from_numpy(inputs_rgb_u8).to(dev).permute(0, 3, 1, 2).float()
    # contiguous (NCHW) as mmpose feeds it: the permuted tensor is channels-last, and CPU convolutions round
    # differently in that layout (scores off by up to ~3e-4)
    x = ((x - net.mean) / net.std).to(dtype).contiguous()
    px, py = net(x)
    if flip_test:
        fx, fy = net(x.flip(-1))
        flip = torch.tensor(wholebody_flip_indices(), device=fx.device)
        fx = fx[:, flip].flip(-1)
        fy = fy[:, flip]
        px = (px + fx) * 0.5
        py = (py + fy) * 0.5
    return px.float().cpu(), py.float().cpu()


def decode(px: torch.Tensor, py: torch.Tensor, centers: np.ndarray, scales: np.ndarray):
    """SimCC argmax decode (no DARK) and back to frame pixels, in numpy float32 as mmpose. -> (B,133,2), (B,133)."""
    sx, sy = px.numpy(), py.numpy()
    b, k = sx.shape[:2]
    sx, sy = sx.reshape(b * k, -1), sy.reshape(b * k, -1)
    locs = np.stack((np.argmax(sx, axis=1), np.argmax(sy, axis=1)), axis=-1).astype(np.float32)
    mx, my = np.amax(sx, axis=1), np.amax(sy, axis=1)
    vals = np.where(mx > my, my, mx)
    locs[vals <= 0.0] = -1
    kp = locs.reshape(b, k, 2) / SPLIT_RATIO
    vals = vals.reshape(b, k)
    out = np.empty_like(kp)
    for i in range(b):
        out[i] = kp[i] / (INPUT_W, INPUT_H) * scales[i] + centers[i] - 0.5 * scales[i]
    return out, vals


def predict_keypoints(net: DWPose, frames_rgb: np.ndarray, boxes: Optional[Sequence] = None, flip_test: bool = True):
    """All 133 keypoints (float32 frame pixels) and scores for a batch of uint8 RGB frames (one person each)."""
    inputs, centers, scales = warp_inputs(frames_rgb, boxes)
    px, py = simcc_logits(net, inputs, flip_test)
    return decode(px, py, centers, scales)

"""The optional ``mmpose`` landmark backend: mmpose's own init_model / inference_topdown, as the reference calls them.

Needs mmengine, mmcv(-lite), mmdet and mmpose (``python install.py --with-mmpose``). The config is upstream's
rtmpose-l_8xb32-270e_coco-ubody-wholebody-384x288.py reduced to what init_model and inference_topdown read (model,
codec, test pipeline, dataset metainfo), built here as a dict. Width/depth come from the checkpoint's shapes (the
published file gives upstream's values), so the same small test checkpoints work with both backends.

Importing mmpose with current torch/numpy needs two import-time stand-ins (shared/reference/dependencies.md):
``mmcv._ext`` (mmcv-lite has no compiled ops; RTMPose uses none) and a temporary ``torchvision`` module for an
import mmpose makes only for visualisation. The torchvision stand-in is removed right after the import.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .checkpoints import read_state_dict
from ..errors import InputError
from .dwpose import INPUT_H, INPUT_W, DWPoseConfig

INSTALL_HINT = ("The 'mmpose' landmark backend needs mmengine, mmcv-lite, mmdet and mmpose. Install them with "
                "`python install.py --with-mmpose` (in ComfyUI's Python), or choose landmark_backend 'torch' "
                "(same results, no OpenMMLab needed).")

_IMPORT_LOCK = threading.Lock()


def _stand_in_ext() -> None:
    if "mmcv._ext" in sys.modules:
        return

    def _missing(*_args, **_kwargs):
        raise NotImplementedError("mmcv-lite has no compiled ops (MuseTalk's DWPose never uses them).")

    ext = types.ModuleType("mmcv._ext")
    # a spec without a loader: mmengine's mmcv_full_available() then (rightly) answers False
    ext.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)

    def __getattr__(name):  # noqa: N807 - module-level attribute hook
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing

    ext.__getattr__ = __getattr__
    sys.modules["mmcv._ext"] = ext


def import_mmpose():
    """(init_model, inference_topdown) from mmpose, or an InputError saying how to install it."""
    with _IMPORT_LOCK:
        try:
            import mmcv  # noqa: F401
            import mmdet  # noqa: F401
            import mmengine  # noqa: F401
            import mmpose  # noqa: F401
        except ImportError as exc:
            raise InputError(f"{INSTALL_HINT} (import failed: {exc})") from None
        _stand_in_ext()
        import mmengine.model  # noqa: F401 - imports transformers before the torchvision stand-in exists
        added = []
        if "torchvision" not in sys.modules:
            try:
                import torchvision  # noqa: F401
            except ImportError:
                tv = types.ModuleType("torchvision")
                tr = types.ModuleType("torchvision.transforms")

                class ToPILImage:  # only referenced by mmpose's visualiser
                    def __init__(self, *a, **k):
                        raise NotImplementedError("torchvision stand-in")

                tr.ToPILImage = ToPILImage
                tv.transforms = tr
                sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tr
                added = ["torchvision", "torchvision.transforms"]
        try:
            from mmpose.apis import inference_topdown, init_model
        except Exception as exc:  # noqa: BLE001 - any import failure of the stack is the same user problem
            raise InputError(f"{INSTALL_HINT} (mmpose did not import: {type(exc).__name__}: {exc})") from None
        finally:
            for name in added:
                sys.modules.pop(name, None)
        return init_model, inference_topdown


def mmpose_config(arch: DWPoseConfig = DWPoseConfig()) -> dict:
    """Upstream's config, reduced to what init_model / inference_topdown use (a plain dict for mmengine.Config)."""
    codec = dict(type="SimCCLabel", input_size=(INPUT_W, INPUT_H), sigma=(6.0, 6.93), simcc_split_ratio=2.0,
                 normalize=False, use_dark=False)
    return dict(
        default_scope="mmpose",
        model=dict(
            type="TopdownPoseEstimator",
            data_preprocessor=dict(type="PoseDataPreprocessor", mean=[123.675, 116.28, 103.53],
                                   std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
            backbone=dict(_scope_="mmdet", type="CSPNeXt", arch="P5", expand_ratio=0.5,
                          deepen_factor=arch.deepen, widen_factor=arch.widen, out_indices=(4,),
                          channel_attention=True, norm_cfg=dict(type="SyncBN"), act_cfg=dict(type="SiLU")),
            head=dict(type="RTMCCHead", in_channels=int(1024 * arch.widen), out_channels=133,
                      input_size=codec["input_size"], in_featuremap_size=(9, 12),
                      simcc_split_ratio=codec["simcc_split_ratio"], final_layer_kernel_size=arch.kernel,
                      gau_cfg=dict(hidden_dims=arch.hidden, s=arch.s, expansion_factor=arch.expansion,
                                   dropout_rate=0.0, drop_path=0.0, act_fn="SiLU", use_rel_bias=False,
                                   pos_enc=False),
                      loss=dict(type="KLDiscretLoss", use_target_weight=True, beta=10.0, label_softmax=True),
                      decoder=codec),
            test_cfg=dict(flip_test=True),
        ),
        train_dataloader=dict(dataset=dict(
            type="CocoWholeBodyDataset", metainfo=dict(from_file="configs/_base_/datasets/coco_wholebody.py"))),
        test_dataloader=dict(dataset=dict(
            type="CocoWholeBodyDataset", data_mode="topdown",
            pipeline=[dict(type="LoadImage"), dict(type="GetBBoxCenterScale"),
                      dict(type="TopdownAffine", input_size=codec["input_size"]), dict(type="PackPoseInputs")])),
    )


class MMPoseDWPose:
    """The mmpose model with the same ``predict_keypoints`` contract as the torch DWPose (one frame per call)."""

    def __init__(self, model, inference_topdown):
        self.model = model
        self._infer = inference_topdown

    def predict_keypoints(self, frames_rgb: np.ndarray, boxes: Optional[Sequence] = None):
        kps, scores = [], []
        for i, frame in enumerate(frames_rgb):
            bgr = np.ascontiguousarray(frame[..., ::-1])
            bb = None if boxes is None or boxes[i] is None else np.asarray([boxes[i]], dtype=np.float32)
            result = self._infer(self.model, bgr, bb)[0].pred_instances
            kps.append(np.asarray(result.keypoints[0], dtype=np.float32))
            scores.append(np.asarray(result.keypoint_scores[0], dtype=np.float32))
        return np.stack(kps), np.stack(scores)


def load_mmpose_dwpose(path, device) -> object:
    """init_model(<upstream config as a dict>, path, device), wrapped for face_locate."""
    init_model, inference_topdown = import_mmpose()
    from mmengine.config import Config

    path = Path(path)
    arch = DWPoseConfig.from_state_dict(read_state_dict(path, unwrap=("state_dict",)), path)
    config = Config(mmpose_config(arch))
    dev = str(device) if not isinstance(device, torch.device) else str(device)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = init_model(config, str(path), device=dev)
    return MMPoseDWPose(model, inference_topdown)

"""Stand-ins for the per-frame network calls, for length sweeps of the memory benchmark (``--networks stand-in``).

On a 2-core CPU the tiny real-format networks cost about 3-4 s per frame (BiSeNet at 512x512 one crop at a time,
the VAE encoder, S3FD, DWPose, the UNet): one minute of video takes hours. Their memory is per batch (it does not
depend on the video's length), so to measure what grows with the *length* the network calls are replaced here by
cheap functions with the same inputs and outputs, and everything else runs for real: decoding, the frame mapping,
crops, mask material (labels_to_mask, mask_material), the spill files, the latent / audio-window / generated-face
rows read back per batch, blurring and compositing, H.264 + AAC encoding, and the whole audio path (Whisper
encoder included: it runs once per 30 s, not per frame).

What is replaced (``install()``, in the child process, before any pipeline code runs):
- S3FD ``detect``: one box per frame (a fixed face-sized box at the frame's centre);
- DWPose ``predict_keypoints``: 133 points whose face points span that box (so landmark_box gives a real box);
- BiSeNet ``parse_labels``: a fixed label map (skin, nose, mouth, lips) per input;
- the VAE encoder ``encode_moments``: zero mean, unit std of the right shape;
- the UNet + decoder batches (``generate.iter_generated``): a uint8 face per output frame computed from the
  latent and audio rows it reads (the rows are still read from their spill files, batch by batch).

Peak RSS measured with stand-ins is the pipeline's own memory (frames, masks, buffers, metadata, audio) without
the networks' per-batch activations; those are measured with ``--networks tiny`` on short clips.
"""

from __future__ import annotations

import numpy as np
import torch


def _box(h: int, w: int):
    side = min(h, w) * 0.4
    cx, cy = w / 2, h / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def install() -> None:
    from musetalk_core.faces import locate as face_locate
    from musetalk_core.generators.musetalk import generate
    from musetalk_core.generators.musetalk import latents
    from musetalk_core.faces import parsing
    from musetalk_core.models import s3fd
    from musetalk_core.models.dwpose import FACE_SLICE

    def detect(net, frames_u8, *, scale=1.0):
        h, w = (int(v) for v in frames_u8.shape[1:3])
        box = torch.tensor([_box(h, w)], dtype=torch.float32)
        return [s3fd.Detections(box.clone(), torch.tensor([0.99])) for _ in range(int(frames_u8.shape[0]))]

    def landmarks(lm_net, frames_rgb, boxes):
        b, h, w = frames_rgb.shape[:3]
        x1, y1, x2, y2 = _box(h, w)
        kps = np.zeros((b, 133, 2), dtype=np.float32)
        t = np.linspace(0.0, 1.0, 68, dtype=np.float32)
        face = np.stack([x1 + (x2 - x1) * t, y1 + (y2 - y1) * (0.3 + 0.7 * np.abs(np.sin(7 * t)))], -1)
        face[28], face[29], face[30] = ((x1 + x2) / 2, y1 + 0.45 * (y2 - y1)), ((x1 + x2) / 2, y1 + 0.5 * (y2 - y1)), \
            ((x1 + x2) / 2, y1 + 0.55 * (y2 - y1))
        kps[:, FACE_SLICE] = face
        return kps, np.ones((b, 133), dtype=np.float32)

    labels = np.zeros((parsing.PARSE_SIZE, parsing.PARSE_SIZE), np.uint8)
    labels[120:460, 110:400] = 1   # skin
    labels[230:300, 230:280] = 10  # nose
    labels[330:370, 200:310] = 12  # upper lip
    labels[370:390, 210:300] = 11  # mouth
    labels[390:420, 200:310] = 13  # lower lip

    def parse_labels(net, inputs, device=None, one_by_one=None):
        return np.stack([labels] * len(inputs), 0)

    def encode_moments(vae, x):
        shape = (int(x.shape[0]), 4, x.shape[-2] // 8, x.shape[-1] // 8)
        return torch.zeros(shape, dtype=x.dtype), torch.ones(shape, dtype=x.dtype)

    def iter_generated(models, lat_in, audio_features, plan, batch_size, decoder="vae", acceleration="off",
                       report=None):
        todo, src, features = plan.todo, lat_in.latents, audio_features.features
        for start in range(0, int(todo.numel()), int(batch_size)):
            out_idx = todo[start:start + int(batch_size)]
            lat = src[plan.rows[out_idx]].float()
            audio = features[out_idx].float()
            level = (lat.mean(dim=(1, 2, 3)) + audio.mean(dim=(1, 2)) * 0 + 128).clamp(0, 255)
            faces = level.to(torch.uint8)[:, None, None, None].expand(-1, 256, 256, 3).contiguous()
            faces[:, 128:, :, 0] = 200
            yield out_idx, faces

    s3fd.detect = detect
    face_locate._landmarks = landmarks
    parsing.parse_labels = parse_labels
    latents.encode_moments = encode_moments
    generate.iter_generated = iter_generated

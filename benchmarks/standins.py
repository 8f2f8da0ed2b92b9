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

``heads_detector`` / ``heads_landmarks``: S3FD and DWPose stand-ins for a ``synthetic.MultiClip`` (several heads),
for tests of face tracks and speaker selection: they recognise the clip's frames by content and answer from its
ground truth (the detector with a little seeded box jitter), so what they return does not depend on batching.
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


def heads_detector(clip, jitter: float = 0.02):
    """A function with s3fd.detect's signature that finds ``clip``'s visible heads in its frames: the drawn box
    plus normal jitter of ``jitter`` x the box width per coordinate (seeded by frame index), highest score first."""
    from musetalk_core.models.s3fd import Detections

    def detect(net, frames_u8, *, scale=1.0):
        out = []
        for frame in torch.as_tensor(frames_u8).cpu().numpy():
            i = clip.frame_index(frame)
            heads = np.flatnonzero(clip.visible[:, i])
            rng = np.random.default_rng((7, i))
            boxes = clip.boxes[heads, i].astype(np.float64)
            boxes += rng.normal(0, jitter, boxes.shape) * (boxes[:, 2:3] - boxes[:, 0:1])
            scores = rng.uniform(0.9, 0.999, len(heads))
            order = np.argsort(-scores, kind="stable")
            out.append(Detections(torch.from_numpy(boxes[order].astype(np.float32)).reshape(-1, 4),
                                  torch.from_numpy(scores[order].astype(np.float32))))
        return out

    return detect


def heads_landmarks(clip, jitter: float = 0.0):
    """A function with dwpose.predict_keypoints' signature giving, per frame, the 68 drawn points (in the 133's
    FACE_SLICE, plus normal jitter of ``jitter`` pixels) of the visible head whose box centre is nearest the given
    box's centre; box None: the head the detector stand-in scores highest. No visible head: zeros, score 0."""
    from musetalk_core.models.dwpose import FACE_SLICE, NUM_KEYPOINTS

    detect = heads_detector(clip, jitter=0.0)

    def predict(net, frames_rgb, boxes=None):
        frames = np.asarray(frames_rgb)
        kps = np.zeros((len(frames), NUM_KEYPOINTS, 2), np.float32)
        scores = np.zeros((len(frames), NUM_KEYPOINTS), np.float32)
        for k, frame in enumerate(frames):
            i = clip.frame_index(frame)
            heads = np.flatnonzero(clip.visible[:, i])
            if not len(heads):
                continue
            box = None if boxes is None else boxes[k]
            if box is None:
                first = detect(None, torch.from_numpy(frame)[None])[0].boxes[0].numpy()
                box = first
            centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            centres = (clip.boxes[heads, i, :2] + clip.boxes[heads, i, 2:]) / 2
            j = heads[int(np.argmin(((centres - centre) ** 2).sum(1)))]
            rng = np.random.default_rng((11, i, int(j)))
            kps[k, FACE_SLICE] = clip.landmarks[j, i] + rng.normal(0, jitter, (68, 2)) * (jitter > 0)
            scores[k, FACE_SLICE] = 0.9
        return kps, scores

    return predict

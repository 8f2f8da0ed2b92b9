"""Record golden values for the LatentSync generator from the reference bytedance/LatentSync code.

Runs the reference's own code at the pinned commit (latentsync/models/*, latentsync/pipelines/lipsync_pipeline.py,
latentsync/utils/image_processor.py, latentsync/whisper/audio2feature.py's chunking, configs/) on the tiny seeded
checkpoint of tests/tiny_latentsync.py written in the published ``latentsync_unet.pt`` format, on the CPU in fp32:

    /work/ls-venv/bin/python tools/golden/record_latentsync.py --reference /work/.mirror/bytedance+LatentSync/repo

``--reference`` is a checkout or a bare git dir of bytedance/LatentSync; the pinned commit is extracted to a temp
folder (nothing of it is kept). The venv needs diffusers==0.32.2 (LatentSync's pin), einops, omegaconf, opencv.

What is stubbed, and why it does not touch the recorded maths: torchvision (Resize only ever sees crops already
at the resolution, where torchvision returns the input unchanged; Normalize is (x - 0.5) / 0.5), soundfile, the
video/audio file helpers of latentsync/utils/util.py, the face detector and the affine restorer (alignment is not
recorded here: ``affine_transform_video`` returns the given crops, ``restore_video`` returns the pasted faces),
and the Whisper model (``audio2feat`` returns seeded features; ``feature2chunks`` is the reference's).

Writes tests/golden/latentsync/latentsync.npz.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "latentsync" / "latentsync.npz"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from musetalk_core.generators.latentsync.config import REFERENCE_COMMIT  # noqa: E402

TINY_OVERRIDES = {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "attention_head_dim": 2,
                  "norm_num_groups": 8}
PIXEL_FRAMES = [0, 7, 15, 16, 19]


def extract(reference: Path, dest: Path) -> None:
    """The pinned commit's latentsync/ and configs/ into ``dest`` (git archive works on checkouts and bare dirs)."""
    git = ["git", "--git-dir", str(reference if (reference / "HEAD").is_file() else reference / ".git")]
    archive = subprocess.run(git + ["archive", REFERENCE_COMMIT, "latentsync", "configs"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def stub_modules(tree: Path) -> None:
    """Stand-ins for the dependencies the recorded path does not use (see the module docstring)."""

    class Resize:
        def __init__(self, size, interpolation=None, antialias=None):
            self.size = tuple(size)

        def __call__(self, img):
            if tuple(img.shape[-2:]) != self.size:
                raise AssertionError("the golden only feeds crops already at the resolution")
            return img  # torchvision returns the input unchanged when it already has the size

    class Normalize:
        def __init__(self, mean, std, inplace=False):
            self.mean, self.std = mean[0], std[0]

        def __call__(self, x):
            return (x - self.mean) / self.std

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    tr.Resize, tr.Normalize = Resize, Normalize
    tr.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    tv.transforms = tr
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr})
    sf = types.ModuleType("soundfile")
    sf.write = lambda *a, **k: None
    sys.modules["soundfile"] = sf

    (tree / "latentsync" / "utils" / "util.py").write_text(
        "def zero_rank_log(logger, message):\n    logger.info(message)\n"
        "def read_video(*a, **k):\n    raise NotImplementedError\n"
        "def read_audio(*a, **k):\n    raise NotImplementedError\n"
        "def write_video(*a, **k):\n    return None\n"
        "def check_ffmpeg_installed():\n    return None\n")
    (tree / "latentsync" / "utils" / "affine_transform.py").write_text(
        "class AlignRestore:\n    def __init__(self, *a, **k):\n        pass\n")
    (tree / "latentsync" / "utils" / "face_detector.py").write_text(
        "class FaceDetector:\n    def __init__(self, *a, **k):\n        pass\n")
    whisper_pkg = tree / "latentsync" / "whisper" / "whisper"
    (whisper_pkg / "__init__.py").write_text("def load_model(*a, **k):\n    raise NotImplementedError\n")


def seeded_inputs_check(model_dict: dict) -> None:
    from musetalk_core.generators.latentsync.config import config_from_dict, tiny_config

    if config_from_dict(model_dict) != tiny_config():
        raise SystemExit("tiny_config() no longer equals the reference's stage2.yaml with TINY_OVERRIDES")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.set_num_threads(2)

    import tiny_latentsync as tl

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "ref"
        tree.mkdir()
        extract(args.reference.resolve(), tree)
        # diffusers probes for torchvision at import: import it (and the pipeline base) before the stub.
        from diffusers import AutoencoderKL, DDIMScheduler  # noqa: F401
        from diffusers.pipelines import DiffusionPipeline  # noqa: F401
        from omegaconf import OmegaConf

        stub_modules(tree)
        sys.path.insert(0, str(tree))

        from latentsync.models.unet import UNet3DConditionModel  # reference code from here on
        from latentsync.pipelines import lipsync_pipeline as lp
        from latentsync.whisper.audio2feature import Audio2Feature

        published = OmegaConf.to_container(OmegaConf.load(tree / "configs" / "unet" / "stage2.yaml").model)
        published_512 = OmegaConf.to_container(OmegaConf.load(tree / "configs" / "unet" / "stage2_512.yaml").model)
        model_dict = dict(published, **TINY_OVERRIDES)
        seeded_inputs_check(model_dict)

        ckpt = tl.write_checkpoint(Path(tmp) / "latentsync_unet.pt")
        unet, _ = UNet3DConditionModel.from_pretrained(model_dict, str(ckpt), device="cpu")
        ours = torch.load(ckpt, weights_only=True)["state_dict"]
        theirs = unet.state_dict()
        if set(ours) != set(theirs) or any(ours[k].shape != theirs[k].shape for k in ours):
            raise SystemExit(f"key mismatch: missing {sorted(set(theirs) - set(ours))[:5]}, "
                             f"unexpected {sorted(set(ours) - set(theirs))[:5]}")
        unet.eval()

        out = {"published_model_json": np.array(json.dumps(published)),
               "published_512_model_json": np.array(json.dumps(published_512)),
               "tiny_model_json": np.array(json.dumps(model_dict)),
               "reference_commit": np.array(REFERENCE_COMMIT)}

        # 1. UNet3D forward on fixed inputs.
        g = tl.golden_inputs()
        with torch.no_grad():
            out["unet_a"] = unet(g["a_sample"], g["a_t"], encoder_hidden_states=g["a_audio"]).sample.numpy()
            out["unet_b"] = unet(g["b_sample"], g["b_t"], encoder_hidden_states=g["b_audio"]).sample.numpy()

        # 2. The pipeline's sampling: audio chunking, video looping, seeded latents, DDIM + guidance, paste-back.
        s = tl.SAMPLER
        scheduler = DDIMScheduler.from_pretrained(str(tree / "configs"))
        from tiny.unet_vae import seeded_vae

        vae = seeded_vae()
        vae.config.scaling_factor = 0.18215  # as scripts/inference.py sets them
        vae.config.shift_factor = 0
        audio_encoder = Audio2Feature.__new__(Audio2Feature)
        audio_encoder.embedding_dim, audio_encoder.audio_feat_length = 384, [2, 2]
        audio_encoder.num_frames, audio_encoder.audio_embeds_cache_dir = 16, None
        features = tl.sampler_features()
        audio_encoder.audio2feat = lambda path: features
        faces = tl.sampler_faces()
        frames_np = faces.permute(0, 2, 3, 1).numpy()

        rec = {"unet_out": [], "t": [], "guided": [], "stepped": [], "mask": [], "masked": [], "ref": [],
               "decoded": []}
        pipe = lp.LipsyncPipeline(vae=vae, audio_encoder=audio_encoder, unet=unet, scheduler=scheduler)

        def affine_transform_video(frames):
            idx = [int(np.argmin([np.abs(frames_np[k].astype(int) - f.astype(int)).sum()
                                  for k in range(len(frames_np))])) for f in frames]
            return faces[idx], [[0, 0, s["size"], s["size"]]] * len(idx), idx

        def restore_video(pasted, video_frames, boxes, matrices):
            rec["restored"] = pasted.numpy()
            rec["source_index"] = np.array(matrices, np.int64)
            return np.zeros((len(pasted), 1, 1, 3), np.uint8)

        def wrap(name, store):
            original = getattr(pipe, name)

            def wrapped(*a, **k):
                result = original(*a, **k)
                store(result)
                return result
            setattr(pipe, name, wrapped)

        wrap("prepare_latents", lambda r: rec.__setitem__("init_latents", r.numpy()))
        wrap("prepare_mask_latents", lambda r: (rec["mask"].append(r[0][:1].numpy()),
                                                rec["masked"].append(r[1][:1].numpy())))
        wrap("prepare_image_latents", lambda r: rec["ref"].append(r[:1].numpy()))
        wrap("decode_latents", lambda r: rec["decoded"].append(r.numpy()))
        pipe.affine_transform_video = affine_transform_video
        pipe.restore_video = restore_video

        unet_forward = unet.forward

        def unet_recording(sample, timestep, *a, **k):
            result = unet_forward(sample, timestep, *a, **k)
            rec["unet_out"].append(result.sample.numpy())
            rec["t"].append(int(timestep))
            return result
        unet.forward = unet_recording
        step = scheduler.step

        def step_recording(model_output, timestep, sample, *a, **k):
            result = step(model_output, timestep, sample, *a, **k)
            rec["guided"].append(model_output.numpy())
            rec["stepped"].append(result.prev_sample.numpy())
            return result
        scheduler.step = step_recording

        lp.read_video = lambda path, use_decord=False: frames_np
        lp.read_audio = lambda path: torch.zeros(16000)
        lp.subprocess = types.SimpleNamespace(run=lambda *a, **k: None)

        chunks = audio_encoder.feature2chunks(feature_array=features, fps=25)
        tagged = torch.arange(len(features), dtype=torch.float32)[:, None, None].expand(-1, 1, 384)
        chunk_index = [audio_encoder.get_sliced_feature(tagged, i, fps=25)[1] for i in range(len(chunks))]

        torch.manual_seed(s["seed"])  # accelerate's set_seed(seed) in scripts/inference.py seeds torch the same way
        pipe(video_path="video.mp4", audio_path="audio.wav", video_out_path=str(Path(tmp) / "out.mp4"),
             num_frames=16, video_fps=25, height=s["size"], width=s["size"], num_inference_steps=s["steps"],
             guidance_scale=s["guidance"], weight_dtype=torch.float32, eta=0.0,
             mask_image_path=str(tree / "latentsync" / "utils" / "mask.png"), temp_dir=str(Path(tmp) / "temp"))

        from latentsync.utils.image_processor import load_fixed_mask

        # Pixels are large: keep the frames in PIXEL_FRAMES (both windows, first/middle/last), as float16.
        decoded = np.concatenate(rec["decoded"])
        out.update({
            "audio_chunk_index": np.array(chunk_index, np.int64),
            "audio_chunks_sum": torch.stack(chunks).sum((1, 2)).numpy(),
            "init_latents": rec["init_latents"], "timesteps": np.array(rec["t"], np.int64),
            "source_index": rec["source_index"], "pixel_frames": np.array(PIXEL_FRAMES, np.int64),
            "decoded": decoded[PIXEL_FRAMES].astype(np.float16),
            "restored": rec["restored"][PIXEL_FRAMES].astype(np.float16),
            "mask_image": load_fixed_mask(s["size"], str(tree / "latentsync" / "utils" / "mask.png")).numpy(),
        })
        for w in range(len(rec["mask"])):
            out[f"w{w}_mask"], out[f"w{w}_masked"], out[f"w{w}_ref"] = rec["mask"][w], rec["masked"][w], rec["ref"][w]
            for j in range(s["steps"]):
                k = w * s["steps"] + j
                out[f"w{w}_s{j}_unet"] = rec["unet_out"][k]
                out[f"w{w}_s{j}_guided"] = rec["guided"][k]
                out[f"w{w}_s{j}_latents"] = rec["stepped"][k]

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {len(out)} arrays, windows {len(rec['mask'])}, timesteps {rec['t'][:s['steps']]}")


if __name__ == "__main__":
    main()

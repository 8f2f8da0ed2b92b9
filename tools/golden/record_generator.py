"""Record golden values for the generator (VAEEncodeMasked + MuseTalkUNetInpaint) from the reference MuseTalk.

Runs the reference's own code (musetalk/models/vae.py VAE wrapper, musetalk/models/unet.py UNet + PositionalEncoding,
musetalk/utils/utils.py datagen, and the frame/latent cycle lists of scripts/inference.py) on the tiny seeded
weights of tests/tiny/unet_vae.py, with latent_dist.sample() patched to return the mean (the reference's only random
step). torchvision (imported by the reference VAE wrapper for Normalize only) is stubbed minimally here.

    python tools/golden/record_generator.py --reference /work/ref/MuseTalk

Writes tests/golden/generator/generator.npz.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "generator" / "generator.npz"

N_SOURCE = 3
T_OUTPUT = 7
REF_BATCH = 4
MAPPING_N = (1, 2, 5)
MAPPING_T = (1, 7, 23)


def stub_torchvision() -> None:
    """transforms.Normalize(mean, std)(x) = (x - mean[:, None, None]) / std[:, None, None], as torchvision does."""

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = mean, std

        def __call__(self, x):
            mean = torch.as_tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
            return x.sub(mean).div(std)

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    tr.Normalize = Normalize
    tv.transforms = tr
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tr


def synthetic_crops(n: int, seed: int = 0) -> np.ndarray:
    """Smooth face-sized RGB test crops (gradients + blobs + a little noise), uint8 (n, 256, 256, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32) / 255.0
    crops = []
    for _ in range(n):
        img = np.zeros((256, 256, 3), np.float32)
        for c in range(3):
            a, b, d = rng.uniform(-1, 1, 3)
            img[..., c] = 0.5 + 0.25 * (a * xx + b * yy) + 0.1 * d
            for _ in range(4):
                cx, cy, r, amp = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(-.3, .3)
                img[..., c] += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += rng.normal(0, 0.03, img.shape)
        crops.append(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.stack(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="checkout of TMElyralab/MuseTalk (HEAD 0a89dec)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    sys.path.insert(0, str(Path(args.reference).resolve()))
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))  # tests/tiny imports musetalk_core
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401  (before the stub: diffusers probes it)
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    stub_torchvision()

    DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean  # reference on its mean latent

    from musetalk.models.unet import PositionalEncoding, UNet  # noqa: E402  (reference code)
    from musetalk.models.vae import VAE  # noqa: E402
    from musetalk.utils.utils import datagen  # noqa: E402
    from tiny import write_models  # noqa: E402  (the same tiny weights our tests load)

    torch.set_num_threads(2)
    crops_rgb = synthetic_crops(N_SOURCE)
    audio = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (T_OUTPUT, 50, 384)).astype(np.float32))

    with tempfile.TemporaryDirectory() as tmp:
        models_dir = write_models(Path(tmp), "v15", ["unet", "vae"])
        vae = VAE(model_path=str(models_dir / "sd-vae"), use_float16=False)
        unet = UNet(unet_config=str(models_dir / "musetalkV15" / "musetalk.json"),
                    model_path=str(models_dir / "musetalkV15" / "unet.pth"), device=torch.device("cpu"))
        pe = PositionalEncoding(d_model=384)
        timesteps = torch.tensor([0])

        with torch.no_grad():
            # scripts/inference.py: the reference gets BGR crops; preprocess_img flips them to RGB.
            input_latent_list = [vae.get_latents_for_unet(np.ascontiguousarray(c[..., ::-1])) for c in crops_rgb]
            cycle = input_latent_list + input_latent_list[::-1]
            preds, faces = [], []
            for whisper_batch, latent_batch in datagen(whisper_chunks=audio, vae_encode_latents=cycle,
                                                       batch_size=REF_BATCH, delay_frame=0, device="cpu"):
                audio_feature_batch = pe(whisper_batch)
                latent_batch = latent_batch.to(dtype=unet.model.dtype)
                pred = unet.model(latent_batch, timesteps, encoder_hidden_states=audio_feature_batch).sample
                preds.append(pred)
                faces.extend(vae.decode_latents(pred))  # BGR uint8
        latents = torch.cat(input_latent_list).numpy()
        pred = torch.cat(preds).numpy()
        faces_rgb = np.stack([f[..., ::-1] for f in faces])

    # Frame mapping: which latent (datagen over the latent cycle) and which frame (frame_list_cycle[i % 2N]) each
    # output frame i uses, with every frame holding a face (then they agree).
    tables = {}
    for n in MAPPING_N:
        tagged = [torch.full((1, 1), float(k)) for k in range(n)]
        latent_cycle = tagged + tagged[::-1]
        frame_cycle = list(range(n)) + list(range(n))[::-1]
        for t in MAPPING_T:
            chunks = torch.zeros(t, 1)
            used = [int(v) for _, lb in datagen(chunks, latent_cycle, batch_size=8, device="cpu")
                    for v in lb.flatten().tolist()]
            tables[f"map_latent_n{n}_t{t}"] = np.array(used, np.int64)
            tables[f"map_frame_n{n}_t{t}"] = np.array([frame_cycle[i % len(frame_cycle)] for i in range(t)], np.int64)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, crops_rgb=crops_rgb, audio=audio.numpy(), latents=latents, unet_out=pred,
                        faces_rgb=faces_rgb, ref_batch=np.array(REF_BATCH), **tables)
    print(f"wrote {args.out}: latents {latents.shape}, unet_out {pred.shape}, faces {faces_rgb.shape}")


if __name__ == "__main__":
    main()

"""LatentSync generator speed: the real-size UNet3D (random weights) on the CPU or a GPU, ours against upstream's module.

    python -m benchmarks.latentsync --version latentsync15 --frames 4 --steps 1 --json ls.json
    python -m benchmarks.latentsync ... --reference LATENTSYNC_CHECKOUT \\
        --reference-python LATENTSYNC_PYTHON     # upstream's UNet3D in its own venv, same weights

(LATENTSYNC_CHECKOUT: a checkout of bytedance/LatentSync at a229c39; LATENTSYNC_PYTHON: the python of a virtual
environment with its requirements.)

Measured (median of --repeats after --warmup):
- ``unet_step``: one denoising step of a window of ``--frames`` frames at the version's resolution: the UNet3D
  forward on the classifier-free-guidance batch (2, 13, f, res/8, res/8) with (2f, 50, 384) audio. Upstream's
  straightforward way (lipsync_pipeline) makes exactly this call per step, so with ``--reference`` its own
  UNet3DConditionModel (built by from_config at the pinned commit, in the reference's venv) and ours are timed in
  one process on the same inputs and weights, alternating, so a busy machine slows both alike (``side_by_side``;
  needs memory for two models: about 10 GB at real size).
- ``window``: our whole generator on one window (generate.generate_windows: two VAE encodes, ``--steps`` steps of
  ``--scheduler``, decode, mouth paste) with a real-size sd-vae (random weights).
- ``--compare-schedulers``: the opt-in sampler (``--scheduler dpm_solver++ --steps 10``) against upstream's 20 DDIM
  steps and a 100-step DDIM solution on the same latents: RMS differences and times.
Frames per second of a 20-step generation are projected from these: f / (20 x unet_step + VAE share).

Weights: every parameter, in name order, gets seeded noise scaled by 1 / sqrt(fan-in) from one CPU generator, on
both sides (same names, same shapes: the same numbers), so the two outputs can be compared too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def seeded_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill ``model`` in place (name order): weights N(0, 1/fan_in), norm weights near 1, biases small."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / p[0].numel()) ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def inputs(frames: int, size: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 13, frames, size, size, generator=gen)
    audio = torch.randn(2 * frames, 50, 384, generator=gen)
    audio[:frames] = 0  # the unconditional half
    return sample, audio


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        runs.append(time.perf_counter() - start)
    import statistics

    return {"median_s": statistics.median(runs), "runs_s": runs}


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def ours(args) -> dict:
    unet, spec = build_ours(args.version, args.tiny)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    unet = unet.to(device=device, dtype=dtype)
    sample, audio = (x.to(device=device, dtype=dtype) for x in inputs(args.frames, spec.resolution // 8))
    with torch.no_grad():
        out = {"unet_step": timed(lambda: unet(sample, 981, audio), args.warmup, args.repeats)}
    out["window"] = window(unet, spec, args) if args.window else None
    if args.compare_schedulers:
        out["schedulers"] = compare_schedulers(unet, spec, args)
    out["parameters"] = sum(p.numel() for p in unet.parameters())
    if device.type == "cuda":
        out["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def window(unet, spec, args) -> dict:
    """Our generator on one window: VAE encodes, ``args.steps`` steps of ``args.scheduler`` with guidance, decode,
    paste."""
    from diffusers import AutoencoderKL

    from benchmarks.networks import REAL_VAE_CONFIG
    from musetalk_core.generators.latentsync.generate import SamplingSettings, generate_windows

    vae = seeded_(AutoencoderKL(**REAL_VAE_CONFIG), seed=2).eval().to(device=args.device, dtype=DTYPES[args.dtype])
    res, f = spec.resolution, args.frames
    crops = torch.randint(0, 256, (f, res, res, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(3, res, res, dtype=torch.float64)
    mask[:, res // 2:, res // 4: 3 * res // 4] = 0
    audio = torch.randn(f, 50, 384)
    settings = SamplingSettings(steps=args.steps, scheduler=args.scheduler)
    run = lambda: generate_windows(unet, vae, mask, lambda rows: crops[rows], audio, torch.ones(f, dtype=torch.bool),
                                   settings, device=torch.device(args.device))
    return timed(run, 0, 1)


def compare_schedulers(unet, spec, args) -> dict:
    """The opt-in sampler against the default on the same UNet and inputs (latents, no VAE): upstream's 20 DDIM
    steps, ``--steps`` of ``--scheduler``, and a 100-step DDIM run as the ODE's solution. RMS of the final latents
    against the default and against the solution, and the time of each run. With random weights this measures how
    the samplers integrate, not how the faces look."""
    from musetalk_core.generators.latentsync.sampler import sample

    device, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    size, f = spec.resolution // 8, args.frames
    gen = torch.Generator().manual_seed(5)
    masked = torch.randn(1, 4, f, size, size, generator=gen)
    cond = [x.to(device=device, dtype=dtype) for x in (torch.ones(1, 1, f, size, size), masked, masked.flip(2))]
    audio = torch.randn(f, 50, 384, generator=gen).to(device=device, dtype=dtype)
    runs, out = {}, {}
    with torch.no_grad():  # warm-up, untimed: the first calls pay one-time costs that would go to the default
        sample(unet, *cond, audio, steps=2, guidance_scale=1.5, window=f, scheduler=args.scheduler)
    for name, kind, steps in (("default", "ddim", 20), ("opt_in", args.scheduler, args.steps),
                              ("solution", "ddim", 100)):
        _sync()
        start = time.perf_counter()
        with torch.no_grad():
            runs[name] = sample(unet, *cond, audio, steps=steps, guidance_scale=1.5, window=f,
                                scheduler=kind).float()
        _sync()
        out[name] = {"scheduler": kind, "steps": steps, "seconds": time.perf_counter() - start}
    rms = lambda a, b: float((runs[a] - runs[b]).pow(2).mean().sqrt())
    out["opt_in"].update(rms_to_default=rms("opt_in", "default"), rms_to_solution=rms("opt_in", "solution"))
    out["default"]["rms_to_solution"] = rms("default", "solution")
    out["latent_rms"] = float(runs["default"].pow(2).mean().sqrt())
    return out


REFERENCE_SCRIPT = r"""
import json, os, sys, tempfile
from pathlib import Path
import torch
root, reference, frames, version, warmup, repeats, tiny = sys.argv[1:8]
sys.path.insert(0, root)
sys.path.insert(0, root + "/tools/golden")
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
from record_latentsync import TINY_OVERRIDES, extract, stub_modules
from benchmarks.latentsync import build_ours, inputs, seeded_, side_by_side
with tempfile.TemporaryDirectory() as tmp:
    tree = Path(tmp) / "ref"; tree.mkdir()
    extract(Path(reference), tree)
    from diffusers import AutoencoderKL, DDIMScheduler  # noqa: F401  (before the torchvision stub)
    from diffusers.pipelines import DiffusionPipeline  # noqa: F401
    from omegaconf import OmegaConf
    stub_modules(tree)
    sys.path.insert(0, str(tree))
    from latentsync.models.unet import UNet3DConditionModel
    ours, spec = build_ours(version, tiny == "1")
    name = "stage2.yaml" if spec.resolution == 256 else "stage2_512.yaml"
    model = OmegaConf.to_container(OmegaConf.load(tree / "configs" / "unet" / name).model)
    if tiny == "1":
        model.update(TINY_OVERRIDES)
    theirs = seeded_(UNet3DConditionModel.from_config(model)).eval()
out = side_by_side(ours, lambda s, a: theirs(s, 981, encoder_hidden_states=a).sample, int(frames),
                   spec.resolution // 8, int(warmup), int(repeats))
print("RESULT " + json.dumps(out))
"""


def side_by_side(ours_unet, theirs, frames: int, size: int, warmup: int, repeats: int) -> dict:
    """Ours and upstream's UNet3D step in one process, alternating (a shared machine's load hits both alike)."""
    import statistics

    sample, audio = inputs(frames, size)
    runs = {"ours": [], "reference": []}
    calls = {"ours": lambda: ours_unet(sample, 981, audio), "reference": lambda: theirs(sample, audio)}
    with torch.no_grad():
        diff = float((calls["ours"]() - calls["reference"]()).abs().max())
        for k in range(warmup + repeats):
            for name in (("ours", "reference") if k % 2 == 0 else ("reference", "ours")):
                start = time.perf_counter()
                calls[name]()
                if k >= warmup:
                    runs[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(r), "runs_s": r} for name, r in runs.items()} | \
        {"max_abs_diff": diff}


def build_ours(version: str, tiny: bool = False):
    """Our UNet3D of ``version`` (tiny widths if asked) with the seeded weights, and the version spec."""
    from dataclasses import replace

    from musetalk_core.models.checkpoints import on_meta
    from musetalk_core.generators.latentsync.config import get_version, tiny_config
    from musetalk_core.generators.latentsync.layers import sinusoid_table
    from musetalk_core.generators.latentsync.unet3d import UNet3DConditionModel

    spec = get_version(version)
    if tiny:  # smoke runs: the published structure with tiny widths
        spec = replace(spec, unet=tiny_config())
    unet = on_meta(lambda: UNet3DConditionModel(spec.unet)).to_empty(device="cpu")
    with torch.no_grad():
        for _, buf in unet.named_buffers():  # the temporal position tables: constants of the config
            buf.copy_(sinusoid_table(buf.shape[2], buf.shape[1]))
    return seeded_(unet).eval(), spec


def reference(args) -> dict:
    """Both UNet3Ds side by side in the reference's venv (it imports ours too; two models in memory)."""
    cmd = [args.reference_python, "-c", REFERENCE_SCRIPT, str(ROOT), str(args.reference), str(args.frames),
           args.version, str(args.warmup), str(args.repeats), "1" if args.tiny else "0"]
    env = dict(os.environ, BENCH_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"reference side failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="latentsync15", choices=("latentsync15", "latentsync16"))
    parser.add_argument("--frames", type=int, default=4, help="frames in the window (upstream: 16)")
    parser.add_argument("--steps", type=int, default=1, help="DDIM steps of the timed window (upstream: 20)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-window", dest="window", action="store_false", help="skip the whole-window timing")
    parser.add_argument("--reference", type=Path, default=None, help="bytedance/LatentSync checkout or git dir")
    parser.add_argument("--reference-python", default=None,
                        help="the python of a venv with LatentSync's requirements (needed with --reference)")
    parser.add_argument("--tiny", action="store_true", help="tiny widths (a smoke run of the script itself)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ours only; --reference runs on the CPU)")
    parser.add_argument("--dtype", default="fp32", choices=tuple(DTYPES), help="ours: upstream uses fp16 on GPUs")
    from musetalk_core.generators.latentsync.sampler import SCHEDULERS

    parser.add_argument("--scheduler", default="ddim", choices=SCHEDULERS,
                        help="the window's sampler (ddim = upstream; dpm_solver++ usually with --steps 10)")
    parser.add_argument("--compare-schedulers", action="store_true",
                        help="also run upstream's 20 DDIM steps, --steps of --scheduler and 100 DDIM steps on the "
                             "same latents: their differences and times")
    parser.add_argument("--json", default=None)
    return parser


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.reference is not None and not args.reference_python:
        parser.error("--reference needs --reference-python (the python of a venv with LatentSync's requirements)")
    report = {"version": args.version, "frames": args.frames, "steps": args.steps, "scheduler": args.scheduler,
              "threads": torch.get_num_threads(),
              "device": args.device, "dtype": args.dtype,
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
              "torch": torch.__version__, "command": " ".join(["python -m benchmarks.latentsync"] + list(argv or
                                                                                                        sys.argv[1:]))}
    report["ours"] = ours(args)  # alone: the step, and the whole window with the VAE
    print(f"ours: UNet3D step {report['ours']['unet_step']['median_s']:.2f} s", flush=True)
    if args.reference is not None:  # then both in one process, alternating
        report["side_by_side"] = reference(args)
        print(f"side by side: ours {report['side_by_side']['ours']['median_s']:.2f} s, upstream "
              f"{report['side_by_side']['reference']['median_s']:.2f} s per step", flush=True)
    step = report["ours"]["unet_step"]["median_s"]
    report["projected_20_step_fps_unet_only"] = args.frames / (20 * step)
    report["projected_fps_unet_only_at_steps"] = args.frames / (args.steps * step)  # --steps of --scheduler
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

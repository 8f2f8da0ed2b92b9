"""Images per forward pass: time a batch of VAE encodes, VAE decodes and UNet calls split into passes of 1, 2, 4, 8.

    python -m benchmarks.passes --device cpu --dtype fp32 --batch 8 --json passes.json
    python -m benchmarks.passes --smoke                     # tiny networks (the test suite runs this)

The figures behind musetalk_core/passes.py's CPU_PASS_SIZE: on a CPU big passes of the VAE's 256x256 layers fall
out of the cache, while the 850 M-parameter UNet gains from big passes (its weights are read once per pass).
Networks at their real size with random weights (benchmarks/networks.py), called directly, no pipeline around them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # python benchmarks/passes.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"  # noqa: A001

from . import networks as bench_networks  # noqa: E402
from .run import machine_info  # noqa: E402
from .timing import synchronize  # noqa: E402


def _calls(models, batch: int) -> dict:
    """network name -> f(pass_size) running the whole batch in passes of that size."""
    dev, dtype = models.device, models.dtype
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 3, 256, 256, generator=gen) * 2 - 1).to(dev, dtype)
    latents = torch.randn(batch, 4, 32, 32, generator=gen).to(dev, dtype)
    unet_in = torch.randn(batch, 8, 32, 32, generator=gen).to(dev, dtype)
    context = torch.randn(batch, 50, 384, generator=gen).to(dev, dtype)
    vae, unet = models.network("vae"), models.network("unet")
    t0 = torch.zeros(1, dtype=torch.int64, device=dev)

    def split(fn):
        return lambda size: [fn(slice(i, i + size)) for i in range(0, batch, size)]
    return {"vae_encoder": split(lambda s: vae.encode(images[s]).latent_dist.mean),
            "vae_decoder": split(lambda s: vae.decode(latents[s]).sample),
            "unet": split(lambda s: unet(unet_in[s], t0, encoder_hidden_states=context[s]).sample)}


def measure_passes(args) -> dict:
    from musetalk_core.weights import loading

    folder = bench_networks.models_folder(args.scale, "v15", ["unet", "vae"])
    models = loading.load_models([folder], "v15", precision=args.dtype, device=args.device, networks=["unet", "vae"])
    sizes = [s for s in (1, 2, 4, 8, 16, 32) if s <= args.batch]
    results = {}
    # models.use places the networks on the device (load_models builds them on the CPU)
    with models.use("unet", "vae"):
        for name, run in _calls(models, args.batch).items():
            row = {}
            for size in sizes:
                run(size)  # warm-up
                times = []
                for _ in range(args.repeats):
                    synchronize(models.device)
                    start = time.perf_counter()
                    run(size)
                    synchronize(models.device)
                    times.append(time.perf_counter() - start)
                row[str(size)] = min(times)
            results[name] = row
    return {"command": "python -m benchmarks.passes " + " ".join(sys.argv[1:]), "machine": machine_info(),
            "device": str(models.device), "dtype": str(models.dtype).replace("torch.", ""), "batch": args.batch,
            "scale": args.scale, "seconds_per_batch": results}


def format_table(report: dict) -> str:
    sizes = list(next(iter(report["seconds_per_batch"].values())))
    rows = [f"{report['batch']} images, {report['device']} {report['dtype']}, {report['scale']} networks: seconds "
            "for the batch (best of the repeats) by images per pass", "",
            "| network | " + " | ".join(f"pass {s}" for s in sizes) + " | fastest |",
            "|---|" + "---:|" * (len(sizes) + 1)]
    for name, row in report["seconds_per_batch"].items():
        best = min(row, key=row.get)
        rows.append(f"| {name} | " + " | ".join(f"{row[s]:.2f}" for s in sizes) + f" | {best} |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny networks, batch 2, one repeat")
    p.add_argument("--scale", choices=("tiny", "real"), default="real")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dtype", default="fp32", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="write the report as JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        args.scale, args.batch, args.repeats = "tiny", 2, 1
    report = measure_passes(args)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

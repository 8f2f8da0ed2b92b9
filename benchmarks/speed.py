"""UNet + decoder speed settings side by side: one process, the same networks, inputs and card for every variant.

    python -m benchmarks.speed --scale real --frames 64 --device cuda --dtype bf16 --batch-size 32 \\
        --variants off channels_last cuda_graphs taesd:off off@8 cuda_graphs@8 --json speed.json
    python -m benchmarks.speed --smoke                     # tiny networks on the CPU (the test suite runs this)

A variant is ``[decoder:]acceleration[@batch]``: decoder vae (default) or taesd, acceleration as in
musetalk_core/generators/musetalk/accel.py ("off", or flags joined by "+"), batch size (default --batch-size). For each variant the
stages of benchmarks.run (default unet, decode, unet_decode: frames per second, median of --repeats after
--warmup) are measured, with the one-off compile / capture seconds (paid in the warm-up), peak VRAM allocated and
reserved (a CUDA graph's memory pool is reserved, not allocated), and how far the generated faces move from the
default variant at the same batch size (exact decoder, acceleration off): max / mean grey levels and PSNR.
Results are written after every variant, so a run cut short by a time limit keeps what it measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # python benchmarks/speed.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"  # noqa: A001

from . import networks as bench_networks  # noqa: E402
from .fidelity import image_error  # noqa: E402
from .run import Bench, build_parser, machine_info  # noqa: E402
from .timing import measure, synchronize  # noqa: E402

DEFAULT_VARIANTS = ("off", "channels_last", "cudnn_benchmark", "channels_last+cudnn_benchmark", "cuda_graphs",
                    "channels_last+cudnn_benchmark+cuda_graphs", "taesd:off", "taesd:channels_last+cuda_graphs")


def parse_variant(text: str, batch: int) -> tuple:
    """'[decoder:]acceleration[@batch]' -> (decoder, acceleration name, batch)."""
    from musetalk_core.generators.musetalk.accel import Acceleration

    decoder, _, rest = text.rpartition(":")
    decoder = decoder or "vae"
    if decoder not in ("vae", "taesd"):
        raise SystemExit(f"variant {text!r}: decoder must be vae or taesd")
    rest, _, size = rest.partition("@")
    return decoder, Acceleration.parse(rest or "off").name, int(size) if size else int(batch)


def _release(bench: Bench) -> None:
    """Drop the previous variant's runners (a CUDA graph holds its memory pool) and results."""
    for key in [k for k in bench._prepared if isinstance(k, tuple) and k[0] == "runner"]:
        del bench._prepared[key]
    for key in ("preds", "generated"):
        bench._prepared.pop(key, None)
    if isinstance(bench.models.extras, dict):
        bench.models.extras.pop("_accel_runner", None)
    if bench.device.type == "cuda":
        torch.cuda.empty_cache()


def profile_once(fn, device: torch.device, top: int) -> list:
    """One call under torch.profiler: the ``top`` kernels / ops by self time on the device, as table lines."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=top).splitlines()


def run_variants(args) -> dict:
    torch.manual_seed(0)
    variants = [parse_variant(v, args.batch_size) for v in args.variants]
    # the default of every batch size first: the faces of the others are compared with it
    for size in dict.fromkeys(b for _, _, b in variants):
        if ("vae", "off", size) not in variants:
            variants.insert(0, ("vae", "off", size))
    variants.sort(key=lambda v: (v[2], v[:2] != ("vae", "off")))
    bench = Bench(args)
    if any(d == "taesd" for d, _, _ in variants) and not args.models_dir:
        bench_networks.write_taesd(bench.models_dir)
    bench.latents()
    bench.features()
    report = {"benchmark": "musetalk-nodes speed settings", "machine": machine_info(),
              "command": "python -m benchmarks.speed " + " ".join(args.argv),
              "settings": {"scale": args.scale, "device": str(bench.device),
                           "dtype": str(bench.dtype).replace("torch.", ""), "frames": bench.n,
                           "output_frames": bench.t, "warmup": args.warmup, "repeats": args.repeats},
              "variants": []}
    baseline = {}
    for decoder, acceleration, size in variants:
        _release(bench)
        bench.args.batch_size, bench.args.decoder, bench.args.acceleration = size, decoder, acceleration
        name = f"{decoder}:{acceleration}@{size}"
        row = {"variant": name, "decoder": decoder, "acceleration": acceleration, "batch_size": size, "stages": {}}
        print(f"[speed] {name}", file=sys.stderr, flush=True)
        if bench.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(bench.device)
        for stage in args.stages:
            try:
                row["stages"][stage] = measure(bench.ours(stage), bench.t, bench.device, args.warmup,
                                               args.repeats).as_dict()
            except Exception as exc:  # noqa: BLE001 - one failing variant must not hide the others
                row["stages"][stage] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        row["build_s"] = bench.build_seconds()
        if bench.device.type == "cuda":
            row["peak_vram_allocated_mb"] = round(torch.cuda.max_memory_allocated(bench.device) / 2**20)
            row["peak_vram_reserved_mb"] = round(torch.cuda.max_memory_reserved(bench.device) / 2**20)
        generated = bench._prepared.get("generated")
        if generated is not None:
            faces = generated.faces.cpu()
            if (decoder, acceleration) == ("vae", "off"):
                baseline[size] = faces
            elif size in baseline:
                row["faces_vs_default"] = image_error(baseline[size], faces)
        if name in (args.profile or ()) and "unet_decode" in args.stages:
            try:
                row["profile_unet_decode"] = profile_once(bench.ours("unet_decode"), bench.device, args.profile_top)
            except Exception as exc:  # noqa: BLE001
                row["profile_unet_decode"] = [f"{type(exc).__name__}: {exc}"]
        report["variants"].append(row)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(format_row(row), file=sys.stderr, flush=True)
    _release(bench)
    return report


def format_row(row: dict) -> str:
    parts = [f"{row['variant']:<52}"]
    for stage, m in row["stages"].items():
        parts.append(f"{stage} {m['fps']:.1f} fps" if m.get("fps") else f"{stage} {m.get('error', '-')[:60]}")
    if row.get("build_s"):
        parts.append(f"build {row['build_s']}")
    if "peak_vram_reserved_mb" in row:
        parts.append(f"VRAM {row['peak_vram_allocated_mb']}/{row['peak_vram_reserved_mb']} MB")
    if "faces_vs_default" in row:
        e = row["faces_vs_default"]
        parts.append(f"faces vs default: max {e['max_levels']}, mean {e['mean_levels']:.3f}, {e['psnr_db']:.1f} dB")
    return " | ".join(parts)


def format_table(report: dict) -> str:
    stages = list(dict.fromkeys(s for r in report["variants"] for s in r["stages"]))
    s = report["settings"]
    lines = [f"{s['device']} {s['dtype']}, {s['scale']} networks, T = {s['output_frames']} output frames; fps (median)",
             "", "| variant | " + " | ".join(stages) + " | build s | VRAM alloc / reserved MB | faces vs default |",
             "|---|" + "---:|" * (len(stages) + 3)]
    for row in report["variants"]:
        cells = []
        for stage in stages:
            m = row["stages"].get(stage, {})
            cells.append(f"{m['fps']:.1f}" if m.get("fps") else ("error" if m.get("error") else "–"))
        build = ", ".join(f"{k} {v:.1f}" for k, v in (row.get("build_s") or {}).items()) or "–"
        vram = (f"{row['peak_vram_allocated_mb']} / {row['peak_vram_reserved_mb']}"
                if "peak_vram_reserved_mb" in row else "–")
        e = row.get("faces_vs_default")
        err = f"max {e['max_levels']}, mean {e['mean_levels']:.3f}, {e['psnr_db']:.1f} dB" if e else "–"
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {build} | {vram} | {err} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help="[decoder:]acceleration[@batch] entries (see the module docstring)")
    parser.add_argument("--speed-stages", dest="speed_stages", nargs="+", default=["unet", "decode", "unet_decode"],
                        choices=["unet", "decode", "unet_decode"])
    parser.add_argument("--profile-variants", dest="profile_variants", nargs="*", default=None,
                        help="variants (decoder:acceleration@batch, as printed) to profile one unet_decode call of")
    args = parser.parse_args(argv)
    args.argv = argv
    args.stages = args.speed_stages
    args.profile = args.profile_variants
    if args.smoke:
        args.scale, args.size = "tiny", "tiny"
        args.frames = min(args.frames, 2) if "--frames" in argv else 2
        args.warmup = 0 if "--warmup" not in argv else args.warmup
        args.repeats = 1 if "--repeats" not in argv else args.repeats
    args.detect_size = args.detect_size or args.size
    args.no_reference = True
    report = run_variants(args)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    if args.markdown:
        Path(args.markdown).write_text(format_table(report) + "\n")
    return report


if __name__ == "__main__":
    main()

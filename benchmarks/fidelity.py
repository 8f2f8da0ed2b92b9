"""How far an opt-in precision, decoder or acceleration moves the output from the exact default, stage by stage.

    python -m benchmarks.fidelity --scale real --frames 4 --size 720p --dtype bf16 --json bf16.json
    python -m benchmarks.fidelity --models-dir models/musetalk --dtype fp16 --decoder taesd   # TAESD vs sd-vae
    python -m benchmarks.fidelity --smoke                     # tiny networks, seconds (the test suite runs this)

With --decoder taesd or --acceleration the exact side is the sd-vae decoder with acceleration off at the same
precision (--baseline-dtype to change it), so the faces' figures (max / mean grey levels, PSNR) are the choice's own.

The same synthetic clip, audio and face material go through the fp32 default and through the chosen --dtype on
the same weights (benchmarks.run's Bench: real-size random networks, the drawn face's truth boxes), and every
precision-dependent stage is compared with the fp32 result:

    audio features   whisper hidden-state windows        max / mean abs error, relative L2 error
    latents          VAEEncodeMasked (8, 32, 32)        idem
    faces            MuseTalkUNetInpaint's uint8 faces   max / mean abs error in grey levels, share changed, PSNR
    frames           BlendAndAssemble's IMAGE            idem, over the whole frame

Random weights are not trained weights: their activations have the right scale (diffusers' initialisation), but
how far a trained network's output moves in bf16 can only be read off real checkpoints (``--models-dir``).
Detection, landmarks and parsing always run in fp32, so they are not compared here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # python benchmarks/fidelity.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"  # noqa: A001

from .run import Bench, build_parser, machine_info  # noqa: E402


def tensor_error(want: torch.Tensor, got: torch.Tensor) -> dict:
    """Float tensors: max and mean absolute error, and the error's L2 norm relative to the reference's."""
    want, got = want.detach().double().cpu(), got.detach().double().cpu()
    diff = (got - want).abs()
    norm = float(want.norm())
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "rel_l2": float(diff.norm() / norm) if norm > 0 else float(diff.norm())}


def image_error(want: torch.Tensor, got: torch.Tensor) -> dict:
    """uint8 images (or 0..1 floats, rounded to uint8 as a saved frame would be): grey-level error and PSNR."""
    want, got = _as_uint8(want).int(), _as_uint8(got).int()
    diff = (got - want).abs()
    mse = float((diff.double() ** 2).mean())
    return {"max_levels": int(diff.max()), "mean_levels": float(diff.double().mean()),
            "changed": float((diff > 0).double().mean()),
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)}


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().cpu()
    if x.dtype == torch.uint8:
        return x
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8)


def run_graph(bench: Bench, args) -> dict:
    """The precision-dependent stages on the bench's inputs -> their outputs (CPU tensors)."""
    from musetalk_core.blend.blender import blend_frames

    with torch.inference_mode():
        latents = bench.latents()
        features = bench.features()
        generated = bench.generated()
        blended = blend_frames(bench.frames, bench.faces(), generated, chunk_size=args.chunk_size)
    images = blended[0] if isinstance(blended, tuple) else blended.images
    return {"audio features": features.features[: bench.t].float().cpu(), "latents": latents.latents.float().cpu(),
            "faces": generated.faces.cpu(), "frames": images.cpu()}


def compare(baseline: dict, candidate: dict) -> dict:
    out = {}
    for key in ("audio features", "latents"):
        out[key] = tensor_error(baseline[key], candidate[key])
    for key in ("faces", "frames"):
        out[key] = image_error(baseline[key], candidate[key])
    return out


def format_table(report: dict) -> str:
    what = report["dtype"]
    if report.get("decoder", "vae") != "vae" or report.get("acceleration", "off") != "off":
        what += f", decoder {report.get('decoder', 'vae')}, acceleration {report.get('acceleration', 'off')},"
    base = report.get("baseline_dtype", "fp32")
    if base != "fp32" or what != report["dtype"]:
        base += " with the exact decoder"
    rows = [f"{what} against {base} on the same weights ({report['settings']})", "",
            "| stage | max abs | mean abs | relative L2 | share changed | PSNR dB |", "|---|---:|---:|---:|---:|---:|"]
    for stage, e in report["stages"].items():
        if "rel_l2" in e:
            rows.append(f"| {stage} | {e['max_abs']:.3g} | {e['mean_abs']:.3g} | {e['rel_l2']:.3g} | | |")
        else:
            rows.append(f"| {stage} | {e['max_levels']} levels | {e['mean_levels']:.3g} levels | | "
                        f"{100 * e['changed']:.2f} % | {e['psnr_db']:.1f} |")
    rows += [f"Note: {n}" for n in report.get("notes", [])]
    return "\n".join(rows)


def measure_fidelity(args) -> dict:
    """The candidate (--dtype, --decoder, --acceleration) against its exact counterpart on the same weights.

    Precision alone (decoder vae, acceleration off): against fp32. A decoder or acceleration choice: against the
    exact decoder with acceleration off at the same precision (--baseline-dtype to choose another), so the figure
    is the choice's own effect."""
    from musetalk_core.generators.musetalk.accel import Acceleration

    decoder = getattr(args, "decoder", "vae")
    acceleration = Acceleration.parse(getattr(args, "acceleration", "off")).name
    exact_generation = decoder == "vae" and acceleration == "off"
    base_dtype = getattr(args, "baseline_dtype", None) or ("fp32" if exact_generation else args.dtype)
    if exact_generation and base_dtype == args.dtype:
        raise SystemExit("nothing to compare: give --dtype bf16/fp16 (against fp32), --decoder taesd or "
                         "--acceleration (against the exact decoder, acceleration off)")
    torch.manual_seed(0)
    base_args = argparse.Namespace(**{**vars(args), "dtype": base_dtype, "decoder": "vae", "acceleration": "off"})
    baseline = run_graph(Bench(base_args), base_args)
    bench = Bench(args)
    candidate = run_graph(bench, args)
    notes = []
    if decoder == "taesd" and not args.models_dir:
        notes.append("random weights: TAESD is trained to imitate the sd-vae decoder, random networks are not; this "
                     "run checks the plumbing only. The real figure needs --models-dir with the published "
                     "checkpoints and taesd/taesd_decoder.safetensors.")
    return {"dtype": args.dtype, "baseline_dtype": base_dtype, "decoder": decoder, "acceleration": acceleration,
            "device": str(bench.device), "machine": machine_info(),
            "settings": f"{args.scale} networks, N = {bench.n} at {args.size}, T = {bench.t}, batch {args.batch_size}",
            "command": "python -m benchmarks.fidelity " + " ".join(sys.argv[1:]),
            "stages": compare(baseline, candidate), "notes": notes}


def main(argv=None) -> dict:
    parser = build_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(dtype="bf16")
    parser.add_argument("--baseline-dtype", dest="baseline_dtype", choices=("fp32", "fp16", "bf16"), default=None,
                        help="precision of the exact side (default: fp32 for a precision check, else --dtype)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.size, args.frames = "tiny", "tiny", 2
    args.detect_size = args.detect_size or args.size
    report = measure_fidelity(args)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, allow_nan=True))
    return report


if __name__ == "__main__":
    main()

"""How long importing the pack takes, as ComfyUI imports it (by path, as a package), in fresh processes.

    python -m benchmarks.import_time --repeats 5 --json benchmarks/results/cpu-import-time.json

Each repeat is a new Python process: it first imports torch (timed apart: ComfyUI has imported it before any custom
node), then the pack's ``__init__.py`` by path, and reports both times, the node ids it registered and which heavy
modules (diffusers, transformers, cv2, whisper, mmpose) the import pulled in (none should be). Medians over the
repeats; the first process also pays the cold file cache, so it is reported apart. No figure is asserted anywhere:
tests/test_foundation.py checks only that the import registers the nodes and loads nothing heavy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("diffusers", "transformers", "cv2", "whisper", "mmpose")


def probe_code(root: Path = ROOT) -> str:
    return textwrap.dedent(f"""
        import importlib.util, json, sys, time
        t0 = time.perf_counter()
        import torch
        t1 = time.perf_counter()
        spec = importlib.util.spec_from_file_location("custom_nodes_x_pack", r"{root / '__init__.py'}",
                                                      submodule_search_locations=[r"{root}"])
        m = importlib.util.module_from_spec(spec); sys.modules["custom_nodes_x_pack"] = m
        spec.loader.exec_module(m)
        t2 = time.perf_counter()
        heavy = [n for n in {HEAVY!r} if n in sys.modules]
        print(json.dumps({{"torch_s": t1 - t0, "pack_s": t2 - t1, "nodes": sorted(m.NODE_CLASS_MAPPINGS),
                          "heavy": heavy}}))
    """)


def one_import(root: Path = ROOT) -> dict:
    out = subprocess.run([sys.executable, "-c", probe_code(root)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(repeats: int, root: Path = ROOT, command: str = "") -> dict:
    runs = [one_import(root) for _ in range(max(1, int(repeats)))]
    later = runs[1:] or runs
    import platform

    import torch

    return {
        "benchmark": "musetalk-nodes import time",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu_count": __import__("os").cpu_count()},
        "repeats": len(runs),
        "first_process": {"torch_s": round(runs[0]["torch_s"], 3), "pack_s": round(runs[0]["pack_s"], 3)},
        "median_torch_s": round(statistics.median(r["torch_s"] for r in later), 3),
        "median_pack_s": round(statistics.median(r["pack_s"] for r in later), 3),
        "pack_s": [round(r["pack_s"], 3) for r in runs],
        "nodes": runs[0]["nodes"],
        "heavy_modules": sorted({n for r in runs for n in r["heavy"]}),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes (the first is reported apart)")
    parser.add_argument("--json", help="write the report here")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    report = measure(args.repeats, command=" ".join(["python -m benchmarks.import_time", *argv]))
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(f"pack import {report['median_pack_s']:.3f} s (median of {max(1, report['repeats'] - 1)} warm "
          f"processes; first process {report['first_process']['pack_s']:.3f} s), torch before it "
          f"{report['median_torch_s']:.3f} s; {len(report['nodes'])} nodes; heavy modules: "
          f"{', '.join(report['heavy_modules']) or 'none'}")
    return report


if __name__ == "__main__":
    main()

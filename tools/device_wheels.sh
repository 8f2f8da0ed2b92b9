#!/usr/bin/env bash
# The wheels a lent GPU machine lacks (it has PyTorch, transformers, numpy, OpenCV, Pillow, aiohttp, but no internet):
# fetched here into .whl/ (kept out of git through .git/info/exclude), carried by the device call
# (carry: [".whl"]), installed there by benchmarks/gpu_session.sh. About 42 MB, within the call's 64 MiB with the
# repository (about 16 MB). Run once from the repository root: bash tools/device_wheels.sh
set -euo pipefail
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl
# the versions the goldens were checked with; the machine's Python is 3.12 (KINDS.md)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    diffusers==0.42.1 importlib_metadata soxr==1.1.0 av==18.1.0
ls -l .whl

#!/usr/bin/env bash
# Everything a lent GPU machine should run, in two steps that each fit one 10-minute device call:
#   bash benchmarks/gpu_session.sh check   # CUDA faithfulness tests, pass sizes, bf16/fp16 fidelity  (~5 min)
#   bash benchmarks/gpu_session.sh bench   # the stage-by-stage benchmark, bf16, 720p, 64 frames     (~8 min)
#   bash benchmarks/gpu_session.sh all     # one call (< 9.5 min): tests, bench, passes, bf16 fidelity, each under a
#                                          # time limit so a slow step cannot take the others' results with it
# The machine has PyTorch but no internet: diffusers, soxr and importlib_metadata travel as wheels in .whl/
# (BENCHMARKS.md, "Recording GPU figures", says how to fetch them). Results go to $OUT (the device tool's folder).
set -uo pipefail
step=${1:?usage: gpu_session.sh check|bench|all}
OUT=${OUT:-/tmp/musetalk-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MUSETALK_BENCH_CACHE=/tmp/musetalk-bench
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)" \
    | tee -a "$OUT/gpu.txt"

case "$step" in
check)
    python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py tests/test_blend.py -k "cuda" 2>&1 \
        | tee "$OUT/cuda-tests.log"
    python3 -m benchmarks.passes --device cuda --dtype bf16 --batch 32 --json "$OUT/gpu-passes-bf16.json"
    for dtype in bf16 fp16; do
        python3 -m benchmarks.fidelity --scale real --frames 8 --size 720p --device cuda --dtype "$dtype" \
            --json "$OUT/gpu-720p-$dtype-fidelity.json"
    done
    ;;
bench)
    python3 -m benchmarks.run --scale real --frames 64 --size 720p --device cuda --dtype bf16 --batch-size 32 \
        --face-batch-size 16 --warmup 1 --repeats 3 --json "$OUT/gpu-720p-bf16.json" --markdown "$OUT/gpu-720p-bf16.md"
    ;;
all)
    timeout 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py tests/test_blend.py -k "cuda" 2>&1 \
        | tee "$OUT/cuda-tests.log"
    timeout 280 python3 -m benchmarks.run --scale real --frames 64 --size 720p --device cuda --dtype bf16 \
        --batch-size 32 --face-batch-size 16 --warmup 1 --repeats 3 --json "$OUT/gpu-720p-bf16.json" \
        --markdown "$OUT/gpu-720p-bf16.md" 2>&1 | tee "$OUT/bench.log"
    timeout 40 python3 -m benchmarks.passes --device cuda --dtype bf16 --batch 32 --json "$OUT/gpu-passes-bf16.json"
    timeout 80 python3 -m benchmarks.fidelity --scale real --frames 8 --size 720p --device cuda --dtype bf16 \
        --json "$OUT/gpu-720p-bf16-fidelity.json"
    ;;
*)
    echo "unknown step '$step': check or bench" >&2
    exit 2
    ;;
esac

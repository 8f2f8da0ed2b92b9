#!/usr/bin/env bash
# Everything a lent GPU machine should run. A task is lent 15 minutes of device time in all (a machine's start
# included), so one call of `first` is the plan; the other steps are for a second lease or a narrower question:
#   bash benchmarks/gpu_session.sh first   # ONE call (at most FIRST_BUDGET_S, default 540 s, + packing): the open
#                                          # targets of issues 24 and 26 in priority order, each step capped by what
#                                          # is left: networks, video_file + avatar_file exact (profiled), fast
#                                          # opt-ins, CUDA tests, live sessions 1/8 (+ cuda_graphs 8/16), generate
#                                          # ahead off (does it pay), 4x longer video (VRAM), LatentSync 1.5/1.6
#                                          # (and 1.5 with dpm_solver++ at 10 steps).
#                                          # Results: $OUT/first-results.tgz (re-packed after every step, so a
#                                          # killed call still returns what finished), logs.txt, gpu.txt.
#                                          # FIRST_DRY=1 runs every command on this CPU with tiny networks (~4 min)
#   bash benchmarks/gpu_session.sh check   # CUDA faithfulness tests, pass sizes, bf16/fp16 fidelity  (~5 min)
#   bash benchmarks/gpu_session.sh bench   # the stage-by-stage benchmark, bf16, 720p, 64 frames     (~8 min)
#   bash benchmarks/gpu_session.sh all     # one call (< 9.5 min): tests, bench, passes, bf16 fidelity, each under a
#                                          # time limit so a slow step cannot take the others' results with it
#   bash benchmarks/gpu_session.sh profile # one call (~4 min): CUDA tests, per-video stages, blend, both graphs
#                                          # (IMAGE and video file), cProfile of face_prepare, blend, video_file
#   bash benchmarks/gpu_session.sh stream  # one call (~5 min): video file in to video file out (exact; fast
#                                          # opt-ins; and a second audio on the video prepared as an avatar:
#                                          # avatar_file), profiled, and the straightforward pipeline on 16 frames
#   bash benchmarks/gpu_session.sh latentsync # one short call (~5 min): CUDA tests, video_file, LatentSync 1.5/1.6
#                                          # UNet3D step and 20-step window on the GPU in fp16
#   bash benchmarks/gpu_session.sh squares # one call (~7 min): CUDA tests, the streaming blend (squares only vs
#                                          # whole frames, benchmarks.blend_stream), video_file (and avatar_file:
#                                          # lipsync --avatar) at 720p on 64 and
#                                          # 256 source frames (peak VRAM against length)
#   bash benchmarks/gpu_session.sh fast    # one call (< 8 min, networks written included): CUDA tests, the UNet +
#                                          # decoder speed settings side by side (benchmarks.speed), passes, a
#                                          # torch.compile try, the graph with an exact fast setting; 8 files
#                                          # (FAST_BUDGET_S, default 440, bounds the whole step)
#   bash benchmarks/gpu_session.sh graphs  # one short call (~4 min): cuda_graphs with a short last batch (run
#                                          # eagerly since accel.call_plan; padded before: 67.7 dB fp32 / 49.7 dB
#                                          # bf16 against the default) must give the default's faces bit for bit
#   bash benchmarks/gpu_session.sh warp    # one short call (~1 min, no networks): warp_ops (OpenCV 4.9.0.80's
#                                          # warpAffine in torch) on the GPU against its golden, and its speed
#                                          # against cv2.warpAffine at 720p / 1080p (benchmarks.warp)
#   bash benchmarks/gpu_session.sh speakers # one short call (~4 min, networks written included): per-speaker cost,
#                                          # file to file, 1 / 2 / 3 speakers and the default path on a 3-head
#                                          # clip, real-size random weights, bf16, 720p (benchmarks.speakers)
#   bash benchmarks/gpu_session.sh ahead   # one short call (~6 min, networks written included): video_file and
#                                          # avatar_file with the UNet batches made ahead of the blend (the default
#                                          # on a GPU) and in turn, exact and fast opt-ins, 720p bf16 (issue 24)
#   bash benchmarks/gpu_session.sh realtime # one call (~6 min, at most 560 s; networks written included): live sessions on
#                                          # a 720p avatar, real-size random weights, bf16 (benchmarks.realtime):
#                                          # first-frame latency, fps per stream, 1 / 4 / 8 / 16 sessions sharing
#                                          # generate_batch; CUDA graphs; TAESD; live vs offline windows at
#                                          # whisper-tiny's size
# The machine has PyTorch but no internet: diffusers, soxr and importlib_metadata travel as wheels in .whl/
# (BENCHMARKS.md, "Recording GPU figures", says how to fetch them). Results go to $OUT (the device tool's folder).
set -uo pipefail
step=${1:?usage: gpu_session.sh first|check|bench|all|profile|stream|latentsync|squares|fast|graphs|warp|speakers|\
ahead|realtime}
OUT=${OUT:-/tmp/musetalk-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MUSETALK_BENCH_CACHE=/tmp/musetalk-bench
if [[ -z "${FIRST_DRY:-}" ]] && compgen -G ".whl/*.whl" > /dev/null; then  # the GPU machine's Python 3.12
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)" \
    | tee -a "$OUT/gpu.txt"

# shared by the steps: the real-size random networks (cached; TAESD too) and the CUDA tests, each under a limit
log="$OUT/logs.txt"
# the commands themselves, once: the helpers below and the first step's runner both use them
write_networks=(python3 -c "from benchmarks import networks as n; import sys
n.write_taesd(n.models_folder(sys.argv[1], 'v15'))")  # + SCALE
cuda_test_cmd=(python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py tests/test_blend.py -k cuda)
networks() {  # networks SECONDS [SCALE]
    echo "== networks $(date -u +%T)" >> "$log"
    timeout "$1" "${write_networks[@]}" "${2:-real}" \
        >> "$log" 2>&1
}
cuda_tests() {  # cuda_tests SECONDS
    echo "== CUDA tests $(date -u +%T)" >> "$log"
    timeout "$1" "${cuda_test_cmd[@]}" \
        > "$OUT/cuda-tests.log" 2>&1
}

case "$step" in
first)
    # priority order: what the open targets need most comes first. Every step runs under what is left of the
    # budget (counted from the script's start, set-up included), capped; one with under 15 s left is skipped, so the
    # last ones shrink or drop instead of the call running past its limit. logs.txt says each step's limit and rc.
    end=${FIRST_BUDGET_S:-540}
    res=${FIRST_RESULTS:-/tmp/musetalk-first}; rm -rf "$res"; mkdir -p "$res"
    pack() {  # $OUT returns at most 8 files: one archive, replaced whole (a call killed mid-pack keeps the last)
        cp "$log" "$res/" 2>/dev/null
        tar -czf "$OUT/.first-results.tmp" -C "$res" . && mv -f "$OUT/.first-results.tmp" "$OUT/first-results.tgz"
    }
    step() {  # step NAME CAP COMMAND...
        local name=$1 cap=$2 l=$((end - SECONDS)); shift 2
        (( l > cap )) && l=$cap
        if (( l < 15 )); then echo "== skipped, budget spent: $name" >> "$log"; return; fi
        echo "== $name $(date -u +%T), limit ${l} s" >> "$log"
        timeout -k 5 "$l" "$@" >> "$log" 2>&1
        echo "== rc $? ($name)" >> "$log"
        pack
    }
    if [[ -n "${FIRST_DRY:-}" ]]; then  # every command once on a CPU, tiny networks and frames
        dev=cpu; scale=tiny; size=tiny; frames=4; long=8; secs=1; reps=(--warmup 0 --repeats 1)
        ls_args=(--tiny --device cpu --dtype fp32 --frames 4 --steps 1 --warmup 0 --repeats 1 --no-window)
    else
        dev=cuda; scale=real; size=720p; frames=64; long=256; secs=8; reps=(--warmup 1 --repeats 3)
        ls_args=(--device cuda --dtype fp16 --frames 16 --steps 20 --warmup 1 --repeats 3)
    fi
    run=(python3 -m benchmarks.run --scale "$scale" --size "$size" --device "$dev" --dtype bf16 --batch-size 32
         --face-batch-size 16 --no-reference)
    fast=(--decoder taesd --acceleration cuda_graphs --detector-scale 0.5)
    [[ "$dev" == cpu ]] && fast=(--decoder taesd --detector-scale 0.5)
    live=(python3 -m benchmarks.realtime --scale "$scale" --device "$dev" --dtype bf16 --size "$size" --frames 32
          --seconds "$secs" --batch-size 32)
    step "networks" 120 "${write_networks[@]}" "$scale"
    step "video_file + avatar_file, exact defaults (generate ahead: auto)" 120 "${run[@]}" --frames "$frames" \
        "${reps[@]}" --stages face_prepare vae_encode unet_decode blend video_file avatar_file --profile video_file \
        --json "$res/video-file-exact.json"
    step "video_file + avatar_file, fast opt-ins" 90 "${run[@]}" "${fast[@]}" --frames "$frames" "${reps[@]}" \
        --stages unet_decode video_file avatar_file --json "$res/video-file-fast.json"
    if [[ "$dev" == cuda ]]; then
        step "CUDA tests" 100 "${cuda_test_cmd[@]}"
    fi
    step "live sessions, vae" 100 "${live[@]}" --sessions 1 8 --json "$res/realtime-bf16.json"
    if [[ "$dev" == cuda ]]; then
        step "live sessions, vae, cuda_graphs" 70 "${live[@]}" --sessions 8 16 --acceleration cuda_graphs \
            --json "$res/realtime-graphs-bf16.json"
    fi
    step "video_file + avatar_file, exact, generate ahead off" 70 "${run[@]}" --frames "$frames" "${reps[@]}" \
        --generate-ahead off --stages video_file avatar_file --json "$res/video-file-exact-ahead-off.json"
    step "video_file, 4x longer (peak VRAM against length)" 90 "${run[@]}" --frames "$long" --warmup 0 --repeats 1 \
        --stages video_file --json "$res/video-file-exact-long.json"
    for v in latentsync15 latentsync16; do
        step "$v" 60 python3 -m benchmarks.latentsync --version "$v" "${ls_args[@]}" --json "$res/$v.json"
    done
    step "latentsync15, dpm_solver++ at 10 steps (the opt-in sampler; 20 DDIM steps above)" 90 \
        python3 -m benchmarks.latentsync --version latentsync15 "${ls_args[@]}" --scheduler dpm_solver++ --steps 10 \
        --compare-schedulers --json "$res/latentsync15-dpm10.json"
    echo "== done $(date -u +%T)" >> "$log"
    pack
    ;;
check)
    "${cuda_test_cmd[@]}" 2>&1 \
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
    timeout 150 "${cuda_test_cmd[@]}" 2>&1 \
        | tee "$OUT/cuda-tests.log"
    timeout 280 python3 -m benchmarks.run --scale real --frames 64 --size 720p --device cuda --dtype bf16 \
        --batch-size 32 --face-batch-size 16 --warmup 1 --repeats 3 --json "$OUT/gpu-720p-bf16.json" \
        --markdown "$OUT/gpu-720p-bf16.md" 2>&1 | tee "$OUT/bench.log"
    timeout 40 python3 -m benchmarks.passes --device cuda --dtype bf16 --batch 32 --json "$OUT/gpu-passes-bf16.json"
    timeout 80 python3 -m benchmarks.fidelity --scale real --frames 8 --size 720p --device cuda --dtype bf16 \
        --json "$OUT/gpu-720p-bf16-fidelity.json"
    ;;
fast)
    # every step gets what is left of the budget (capped per step), so the last ones shrink instead of the call
    # running past its limit; every result file is written as it goes
    end=$((SECONDS + ${FAST_BUDGET_S:-440}))
    left() { local l=$((end - SECONDS)); (( l > $1 )) && l=$1; (( l < 5 )) && l=5; echo "$l"; }
    # FAST_DEVICE=cpu FAST_SCALE=tiny FAST_SMOKE=1 dry-runs every command on a CPU (tiny networks, tiny frames)
    scale=${FAST_SCALE:-real}
    common=(--scale "$scale" --frames 64 --size 720p --device "${FAST_DEVICE:-cuda}" --dtype bf16 --face-batch-size 16
            ${FAST_SMOKE:+--smoke})
    exact="channels_last+cudnn_benchmark+cuda_graphs"
    networks "$(left 240)" "$scale"
    cuda_tests "$(left 100)"
    echo "== speed settings $(date -u +%T)" >> "$log"
    timeout "$(left 170)" python3 -m benchmarks.speed "${common[@]}" --batch-size 32 --warmup 1 --repeats 3 \
        --variants off channels_last cudnn_benchmark channels_last+cudnn_benchmark cuda_graphs "$exact" \
        taesd:off "taesd:$exact" off@8 cuda_graphs@8 "$exact@8" \
        --profile-variants vae:off@32 "vae:$exact@32" --json "$OUT/speed-bf16.json" --markdown "$OUT/speed-bf16.md" \
        >> "$log" 2>&1
    echo "== passes $(date -u +%T)" >> "$log"
    timeout "$(left 40)" python3 -m benchmarks.passes --device "${FAST_DEVICE:-cuda}" --dtype bf16 --batch 32 \
        ${FAST_SMOKE:+--smoke} --json "$OUT/gpu-passes-bf16.json" >> "$log" 2>&1
    echo "== torch.compile $(date -u +%T)" >> "$log"
    timeout "$(left 190)" python3 -m benchmarks.speed "${common[@]}" --batch-size 32 --warmup 1 --repeats 3 \
        --variants off cuda_graphs+compile --speed-stages unet_decode --json "$OUT/speed-compile.json" >> "$log" 2>&1
    echo "== graph, $exact $(date -u +%T)" >> "$log"
    timeout "$(left 80)" python3 -m benchmarks.run "${common[@]}" --batch-size 32 --warmup 1 --repeats 3 \
        --no-reference --stages unet_decode blend whole_graph --acceleration "$exact" \
        --json "$OUT/graph-fast-bf16.json" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
profile)
    # where the per-video and blend time goes on the GPU: stage timings plus one cProfile'd call of each
    networks 120
    cuda_tests 100
    echo "== stages + profiles $(date -u +%T)" >> "$log"
    timeout 200 python3 -m benchmarks.run --scale real --frames 64 --size 720p --device cuda --dtype bf16 \
        --batch-size 32 --face-batch-size 16 --warmup 1 --repeats 3 --no-reference \
        --stages detection landmarks parsing face_prepare blend whole_graph video_file --profile face_prepare blend video_file \
        --json "$OUT/profile-bf16.json" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
stream)
    # the video file in to the video file out (benchmarks.run's video_file stage: the CLI's streaming core), exact
    # defaults and the fastest opt-in settings, plus the straightforward pipeline side by side on 16 frames
    common=(--scale real --size 720p --device cuda --dtype bf16 --batch-size 32 --face-batch-size 16)
    networks 120
    cuda_tests 80
    echo "== video_file, exact defaults $(date -u +%T)" >> "$log"
    timeout 140 python3 -m benchmarks.run "${common[@]}" --frames 64 --warmup 1 --repeats 3 --no-reference \
        --stages face_prepare vae_encode unet_decode blend video_file avatar_file --profile video_file \
        --json "$OUT/video-file-exact.json" >> "$log" 2>&1
    echo "== video_file, fast opt-ins $(date -u +%T)" >> "$log"
    timeout 120 python3 -m benchmarks.run "${common[@]}" --frames 64 --warmup 1 --repeats 3 --no-reference \
        --stages face_prepare unet_decode blend video_file avatar_file --decoder taesd --acceleration cuda_graphs \
        --detector-scale 0.5 --profile video_file --json "$OUT/video-file-fast.json" >> "$log" 2>&1
    echo "== side by side, 16 frames $(date -u +%T)" >> "$log"
    timeout 150 python3 -m benchmarks.run "${common[@]}" --frames 16 --warmup 0 --repeats 1 \
        --stages detection landmarks vae_encode audio unet decode blend video_file \
        --json "$OUT/video-file-side-by-side.json" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
latentsync)
    # a short call: CUDA tests, the video file stage again (exact), the LatentSync UNet3D on the GPU (fp16, as
    # upstream runs it on GPUs of compute capability > 7): one step and one 16-frame window of 20 steps
    networks 60
    cuda_tests 60
    echo "== video_file, exact defaults $(date -u +%T)" >> "$log"
    timeout 70 python3 -m benchmarks.run --scale real --size 720p --device cuda --dtype bf16 --batch-size 32 \
        --face-batch-size 16 --frames 64 --warmup 1 --repeats 3 --no-reference --stages video_file \
        --json "$OUT/video-file-exact.json" >> "$log" 2>&1
    for v in latentsync15 latentsync16; do
        echo "== $v $(date -u +%T)" >> "$log"
        timeout 75 python3 -m benchmarks.latentsync --version "$v" --device cuda --dtype fp16 --frames 16 \
            --steps 20 --warmup 2 --repeats 5 --json "$OUT/$v-cuda-fp16.json" >> "$log" 2>&1
    done
    echo "== done $(date -u +%T)" >> "$log"
    ;;
squares)
    # the streaming blend moves only the blend squares to the GPU and only the composited pixels back: the blend
    # alone side by side with the whole-frame way, then the whole file-to-file run (was 41.0 fps on an H100)
    networks 100
    cuda_tests 80
    echo "== blend_stream $(date -u +%T)" >> "$log"
    timeout 60 python3 -m benchmarks.blend_stream --device cuda --sizes 1080p 720p 4k \
        --json "$OUT/blend-stream-cuda.json" >> "$log" 2>&1
    echo "== video_file, exact defaults $(date -u +%T)" >> "$log"
    timeout 140 python3 -m benchmarks.run --scale real --size 720p --device cuda --dtype bf16 --batch-size 32 \
        --face-batch-size 16 --frames 64 --warmup 1 --repeats 3 --no-reference --stages blend video_file \
        avatar_file --profile video_file --json "$OUT/video-file-exact.json" >> "$log" 2>&1
    # issue 13's VRAM target: the same file-to-file run on a 4x longer video must peak at the same VRAM
    echo "== video_file, 4x longer $(date -u +%T)" >> "$log"
    timeout 150 python3 -m benchmarks.run --scale real --size 720p --device cuda --dtype bf16 --batch-size 32 \
        --face-batch-size 16 --frames 256 --warmup 0 --repeats 1 --no-reference --stages video_file \
        --json "$OUT/video-file-exact-256.json" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
ahead)
    # pipeline.render makes the generator's batches on a worker thread one batch ahead of the blend on a GPU
    # (GENERATE_AHEAD "auto"): the same frames, the GPU's next batch beside this chunk's blend and hand-over.
    # Each pair side by side in one process order: ahead (default), then in turn (--generate-ahead off)
    common=(--scale real --size 720p --device cuda --dtype bf16 --batch-size 32 --face-batch-size 16 --frames 64
            --warmup 1 --repeats 3 --no-reference --stages video_file avatar_file)
    fast=(--decoder taesd --acceleration cuda_graphs --detector-scale 0.5)
    networks 100
    for mode in auto off; do
        echo "== exact, generate_ahead $mode $(date -u +%T)" >> "$log"
        timeout 110 python3 -m benchmarks.run "${common[@]}" --generate-ahead "$mode" \
            --json "$OUT/ahead-exact-$mode.json" >> "$log" 2>&1
        echo "== fast opt-ins, generate_ahead $mode $(date -u +%T)" >> "$log"
        timeout 90 python3 -m benchmarks.run "${common[@]}" "${fast[@]}" --generate-ahead "$mode" \
            --json "$OUT/ahead-fast-$mode.json" >> "$log" 2>&1
    done
    echo "== done $(date -u +%T)" >> "$log"
    ;;
graphs)
    # tests/test_cuda.py asserts torch.equal(cuda_graphs, default) on 7 frames at batch 3 (fp32 and bf16); the real
    # networks: 61 source / 122 output frames, so batch 32 ends with 26 frames and batch 8 with 2 ("faces vs
    # default" must read max 0 levels, inf dB for both cuda_graphs rows)
    networks 120
    echo "== CUDA tests, acceleration $(date -u +%T)" >> "$log"
    timeout 120 python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py -k "acceleration or graph" \
        > "$OUT/cuda-tests-graphs.log" 2>&1
    echo "== speed, short last batch $(date -u +%T)" >> "$log"
    timeout 150 python3 -m benchmarks.speed --scale real --frames 61 --size 720p --device cuda --dtype bf16 \
        --face-batch-size 16 --batch-size 32 --warmup 1 --repeats 3 --speed-stages unet_decode \
        --variants off cuda_graphs off@8 cuda_graphs@8 --json "$OUT/speed-graphs-short-batch.json" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
warp)
    echo "== warp golden on CUDA $(date -u +%T)" >> "$log"
    timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_warp_ops.py > "$OUT/cuda-tests-warp.log" 2>&1
    echo "== warp speed $(date -u +%T)" >> "$log"
    timeout 120 python3 -m benchmarks.warp --device cuda --batch 16 --json "$OUT/warp-cuda.json" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
speakers)
    # issue 25: what each speaker adds (faces, VAE encode, UNet + decode, blend) and what they share (one decode,
    # one tracking pass, one encode); every run of every configuration is file to file
    networks 120
    echo "== speakers $(date -u +%T)" >> "$log"
    timeout 200 python3 -m benchmarks.speakers --scale real --frames 64 --size 720p --device cuda --dtype bf16 \
        --batch-size 32 --face-batch-size 16 --warmup 1 --repeats 3 --json "$OUT/gpu-speakers-bf16.json" \
        --markdown "$OUT/gpu-speakers-bf16.md" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
realtime)
    # issue 26: one session's first-frame latency and fps, then 4 / 8 / 16 sessions whose work shares one
    # generate_batch per step (the server's batcher), the exact VAE decoder and TAESD; every session has the same
    # 8 s of speech-like audio, pushed in 20 ms chunks as fast as it is taken
    networks 150
    common=(--scale real --device cuda --dtype bf16 --size 720p --frames 32 --seconds 8)
    echo "== realtime sessions, vae $(date -u +%T)" >> "$log"
    timeout 170 python3 -m benchmarks.realtime "${common[@]}" --sessions 1 4 8 16 --batch-size 32 \
        --json "$OUT/gpu-realtime-bf16.json" >> "$log" 2>&1
    echo "== realtime sessions, vae, cuda_graphs $(date -u +%T)" >> "$log"
    timeout 80 python3 -m benchmarks.realtime "${common[@]}" --sessions 8 16 --batch-size 32 \
        --acceleration cuda_graphs --json "$OUT/gpu-realtime-graphs-bf16.json" >> "$log" 2>&1
    echo "== realtime sessions, taesd $(date -u +%T)" >> "$log"
    timeout 100 python3 -m benchmarks.realtime "${common[@]}" --sessions 1 8 16 --batch-size 32 --decoder taesd \
        --json "$OUT/gpu-realtime-taesd-bf16.json" >> "$log" 2>&1
    echo "== realtime windows vs offline $(date -u +%T)" >> "$log"
    timeout 60 python3 -m benchmarks.realtime --fidelity --real-encoder --fidelity-seconds 12 \
        --json "$OUT/cpu-realtime-fidelity.json" >> "$log" 2>&1
    echo "== done $(date -u +%T)" >> "$log"
    ;;
*)
    echo "unknown step '$step': first, check, bench, all, profile, stream, latentsync, squares, fast, graphs, warp, speakers or realtime" >&2
    exit 2
    ;;
esac

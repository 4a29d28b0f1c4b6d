#!/usr/bin/env bash
# The GPU check in one command, from the repository root of a machine with one CUDA GPU, python3,
# torch and transformers, and no network:  bash bench/gpu_check.sh
#
# 1. installs the wheels of .whl/ (pydantic, math-verify and their pure dependencies, which
#    `python -m trainer train` needs and such a machine lacks) into /tmp/site, offline;
# 2. prints nvidia-smi and the versions of python, torch, CUDA and transformers;
# 3. checks the config of every size and the imports (bench/bench_gpu.py --check-only);
# 4. writes the synthetic data once, then runs bench/bench_gpu.py for tiny, 2b and 7b
#    (random-init Qwen2-VL shapes), each in its own process under its own time limit, so that
#    a hang or an out-of-memory in one size leaves the others their time.
#
# Logs and the figures (bench-<size>.json, one table per size in its log) go to $OUT (default
# /tmp/out). The whole check stays within GPU_CHECK_BUDGET_S seconds (default 330) of bench
# time: a size gets the smaller of its own limit and what is left. Exit status: 0 when every
# size ran, 1 otherwise. SIZES (default "tiny 2b 7b"), SIZE_LIMIT_S (default: each size's own),
# ARCH (default qwen2_vl), STEPS (3), PROMPTS (8), N (8) and RESPONSE_LENGTH (128) change the
# workload; extra arguments go to every bench_gpu.py call (for example --set engine.sharding=fsdp).
# TAG (default empty) is added to the names of the files of a size (bench-7b-deepspeed.json with
# TAG=-deepspeed), so that several engines can be checked in one call.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/out}"
WORK="${GPU_CHECK_WORK:-/tmp/gpu_check}"
SITE=/tmp/site
ARCH="${ARCH:-qwen2_vl}"
STEPS="${STEPS:-3}"
PROMPTS="${PROMPTS:-8}"
N="${N:-8}"
RESPONSE_LENGTH="${RESPONSE_LENGTH:-128}"
TAG="${TAG:-}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-330}"
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
started=$(date +%s)

echo "== wheels"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
export PYTHONPATH="$SITE:$PWD"
ls .whl

echo "== environment"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt" || echo "nvidia-smi failed"
python3 - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import sys

import math_verify
import pydantic
import torch
import transformers

print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}), transformers {transformers.__version__}, "
      f"pydantic {pydantic.__version__}, math-verify from {math_verify.__file__}")
print(f"cuda available {torch.cuda.is_available()}, {torch.cuda.device_count()} device(s)")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}")
EOF

echo "== configs"
python3 bench/bench_gpu.py --check-only --arch "$ARCH" --sizes tiny,2b,7b "$@" 2>&1 | tee "$OUT/check.log"

echo "== synthetic data"
python3 -m trainer synth --out "$WORK/synth" --per-source 40 --image-size 224 > "$OUT/synth.log" 2>&1
tail -n 1 "$OUT/synth.log"

failed=()
run_size() {  # run_size SIZE LIMIT_S [bench_gpu.py arguments...]
    local size=$1 limit=$2
    shift 2
    local left=$((BUDGET_S - ($(date +%s) - started)))
    if ((left < limit)); then limit=$left; fi
    if ((limit < 30)); then
        echo "== $size: skipped, ${left} s of the ${BUDGET_S} s budget left"
        failed+=("$size (skipped)")
        return 0
    fi
    echo "== $size (at most ${limit} s)"
    local rc=0
    # No pipe: a process left behind by a killed run could hold it open and stall the check.
    timeout -k 15 "$limit" python3 bench/bench_gpu.py --sizes "$size" --arch "$ARCH" --steps "$STEPS" \
        --prompts "$PROMPTS" --n "$N" --max-response-length "$RESPONSE_LENGTH" --data "$WORK/synth" \
        --workdir "$WORK/$size$TAG" --out "$OUT/bench-$size$TAG.json" "$@" > "$OUT/bench-$size$TAG.log" 2>&1 || rc=$?
    cat "$OUT/bench-$size$TAG.log"
    if ((rc != 0)); then
        if ((rc == 124 || rc == 137)); then echo "== $size: timed out after ${limit} s"; fi
        echo "== $size: exit status $rc"
        failed+=("$size (exit $rc)")
    fi
}

declare -A LIMIT_S=([tiny]=60 [small]=60 [2b]=100 [7b]=170)
for size in ${SIZES:-tiny 2b 7b}; do
    run_size "$size" "${SIZE_LIMIT_S:-${LIMIT_S[$size]:-100}}" "$@"
done

echo "== done in $(($(date +%s) - started)) s; logs and figures in $OUT"
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi

#!/usr/bin/env bash
# The CUDA checks of a GPU machine, in one go (issue 7): the engine's oracle tests on `cuda`,
# `synth --device cuda generate` end to end (tests/device_cli.rs), then synth against
# PyTorch + transformers `generate` at Llama-3.1-8B shapes with random bf16 weights made on
# the GPU, at 1, 32, 128 and 256 concurrent sequences x 256 new tokens after
# 256-token prompts. Prints one table: output tokens/s, peak GPU memory (nvidia-smi, whole
# process), the ratio synth/transformers, and at batch 1 the ratio to the memory-bandwidth
# roof (every bf16 weight read once per token).
#
#   benches/cuda/run.sh [--batches 1,32,128,256] [--prompt 256] [--new 256] [--bandwidth-tbps 3.35]
#   benches/cuda/run.sh --smoke     # on a CPU: tiny model, the bench plumbing only
#
# The GPU machines of this project have the NVIDIA driver, CUDA 13 and PyTorch but no Rust
# toolchain, so the binaries are built beforehand with scripts/build-cuda.sh into
# .cache/cuda-dist/ and travel as .cache/cuda-dist.tar.xz (carry it; unpacked here). libcublas, libcurand and libnvrtc come from the CUDA 13
# wheels PyTorch brings. Results go to stdout and, where $OUT is set, $OUT/cuda-bench.tsv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dist="$root/.cache/cuda-dist"
batches=1,32,128,256
prompt=256
new=256
bandwidth=3.35 # TB/s, H100 SXM5 HBM3
config="$root/benches/cuda/llama-3.1-8b-instruct.json"
smoke=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --batches) batches="$2"; shift 2 ;;
        --prompt) prompt="$2"; shift 2 ;;
        --new) new="$2"; shift 2 ;;
        --bandwidth-tbps) bandwidth="$2"; shift 2 ;;
        --smoke) smoke=1; batches=1,4; prompt=16; new=8; config="$root/benches/cuda/tiny-llama.json"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2; exit 2 ;;
    esac
done
out="${OUT:-$root/target}"
mkdir -p "$out"
tsv="$out/cuda-bench.tsv"

if [[ $smoke == 1 ]]; then
    device=cpu
    bench=$(cd "$root" && cargo bench --no-run --bench gpu_throughput --message-format=json 2>/dev/null |
        python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "gpu_throughput"][-1])')
else
    device=cuda
    bench="$dist/gpu_throughput"
    if [[ ! -x $bench && -f $dist.tar.xz ]]; then
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="fully_trusted")' "$dist.tar.xz" "$(dirname "$dist")"
    fi
    [[ -x $bench && -x $dist/oracle_safetensors && -x $dist/device_cli ]] || { echo "error: $dist has no CUDA binaries; build them first with scripts/build-cuda.sh" >&2; exit 2; }
    # cudarc loads libcuda from the driver; cuBLAS, cuRAND and NVRTC from PyTorch's wheels.
    libs=$(python3 - <<'EOF'
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for pattern in ("nvidia/*/lib", "nvidia/cu13/lib"):
        for d in glob.glob(os.path.join(sp, pattern)):
            if glob.glob(os.path.join(d, "lib*.so*")):
                dirs.add(d)
print(":".join(sorted(dirs)))
EOF
)
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "== oracle tests on cuda ($dist/oracle_safetensors)"
    SYNTH_TEST_DEVICE=cuda timeout 300 "$dist/oracle_safetensors" --nocapture --test-threads 1 ||
        echo "== oracle tests on cuda FAILED (exit $?); the benchmark runs anyway" >&2
    echo "== synth --device cuda generate, end to end ($dist/device_cli)"
    SYNTH_TEST_DEVICE=cuda SYNTH_BIN="$dist/synth" SYNTH_ASSETS="$dist/assets" timeout 300 "$dist/device_cli" --nocapture ||
        echo "== synth --device cuda generate FAILED (exit $?); the benchmark runs anyway" >&2
fi

# Runs "$@" (at most $limit seconds) while sampling the GPU's used memory; prints the
# command's JSON line with "gpu_peak_mib" added (null on a CPU), or, if it failed, a line
# naming the engine, batch and exit status, so one failure does not lose the other rows.
limit=${RUN_LIMIT_S:-240}
measure() {
    local engine=$1 batch=$2
    shift 2
    local samples poller line status=0
    samples=$(mktemp)
    if [[ $device == cuda ]]; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$samples" &
        poller=$!
    fi
    line=$(timeout "$limit" "$@" | tail -1) || status=$?
    if [[ $device == cuda ]]; then
        kill "$poller" 2>/dev/null || true
        wait "$poller" 2>/dev/null || true
    fi
    local peak
    peak=$(sort -n "$samples" | tail -1)
    rm -f "$samples"
    if [[ $status != 0 || -z $line ]]; then
        echo "   $engine at batch $batch failed (exit $status)" >&2
        line="{\"engine\": \"$engine\", \"batch\": $batch, \"error\": \"exit $status\"}"
    fi
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["gpu_peak_mib"]=int(sys.argv[2]) if sys.argv[2] else None; print(json.dumps(d))' "$line" "${peak:-}"
}

have_torch=1
python3 -c 'import torch, transformers' 2>/dev/null || have_torch=0
results=()
for b in ${batches//,/ }; do
    echo "== batch $b: synth" >&2
    results+=("$(measure synth "$b" "$bench" --device "$device" --config "$config" --batch "$b" --prompt "$prompt" --new "$new")")
    if [[ $have_torch == 1 ]]; then
        echo "== batch $b: transformers" >&2
        results+=("$(measure transformers "$b" python3 "$root/benches/cuda/hf_generate.py" --device "$device" --config "$config" --batch "$b" --prompt "$prompt" --new "$new")")
    else
        echo "== batch $b: transformers not installed here: peer skipped" >&2
    fi
done

printf '%s\n' "${results[@]}" | python3 "$root/benches/cuda/table.py" --bandwidth-tbps "$bandwidth" | tee "$tsv"
# On the CPU (CI) every run must succeed.
if [[ $smoke == 1 ]] && printf '%s\n' "${results[@]}" | grep -q '"error"'; then
    echo "run.sh --smoke: FAIL: a run failed" >&2
    exit 1
fi

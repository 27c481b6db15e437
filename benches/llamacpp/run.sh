#!/usr/bin/env bash
# Peer benchmark: the same rows as `cargo bench --bench throughput`, run by llama.cpp
# through llama-cpp-python. The first run compiles llama.cpp from source (~7 min on 2 cores)
# into a virtual environment cached under .cache/llamacpp-venv; later runs reuse it.
#
#   benches/llamacpp/run.sh [--rows prefill,1,8,32] [--model PATH]
#   benches/llamacpp/run.sh --synth-run --model PATH --seed-jsonl FILE   (synth_run.py)
#
# Env: LLAMACPP_PYTHON_VERSION (default 0.3.36), LLAMACPP_VENV (default .cache/llamacpp-venv),
#      BENCH_THREADS (default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${LLAMACPP_VENV:-$root/.cache/llamacpp-venv}"
version="${LLAMACPP_PYTHON_VERSION:-0.3.36}"
stamp="$venv/.installed-llama-cpp-python-$version"

if [[ ! -f "$stamp" ]]; then
    echo "building llama-cpp-python $version into $venv (compiles llama.cpp, several minutes)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    # CPU-only build. GGML_NATIVE picks this machine's SIMD (AVX2/AVX-512), as synth's
    # release profile does with target-cpu; no BLAS so both sides use their own kernels.
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        nice -n "${BUILD_NICE:-10}" "$venv/bin/pip" install --no-cache-dir --verbose "llama-cpp-python==$version" \
        > "$venv/build.log" 2>&1 || { tail -40 "$venv/build.log" >&2; echo "error: llama-cpp-python build failed, see $venv/build.log" >&2; exit 1; }
    touch "$stamp"
fi

if [[ "${1:-}" == "--synth-run" ]]; then
    shift
    exec "$venv/bin/python" "$root/benches/llamacpp/synth_run.py" "$@"
fi
exec "$venv/bin/python" "$root/benches/llamacpp/bench.py" "$@"

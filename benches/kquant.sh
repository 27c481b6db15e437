#!/usr/bin/env bash
# synth against llama.cpp on the GGUF types users download, side by side in one run: the real
# SmolLM2 requantized to Q4_K_M, Q5_K_M, Q6_K and Q8_0, and a random-weight model of a real 1B
# shape in Q4_K_M (files from scripts/kquant-models.sh, cached under .cache/kquant/). Rows:
# prefill of 256 tokens, then 1 and 32 concurrent sequences generating 128 tokens each; every
# row also reports the process's peak RSS.
#
#   benches/kquant.sh [--rows prefill,1,32] [--threads 2] [--files Q4_K_M,Q5_K_M,Q6_K,Q8_0,1b] [--avx2]
#
# --avx2: both sides as on a CPU without AVX-512: synth with SYNTH_CPU_KERNELS=avx2, llama.cpp
# from a second build with GGML_NATIVE off and AVX-512 off (.cache/llamacpp-venv-avx2).
#
# The first run builds llama-cpp-python (several minutes; see benches/llamacpp/run.sh) and the
# model files.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rows="prefill,1,32"
threads="${BENCH_THREADS:-2}"
files="Q4_K_M,Q5_K_M,Q6_K,Q8_0,1b"
avx2=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --files) files="$2"; shift 2 ;;
        --avx2) avx2=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2; echo >&2; echo "hint: benches/kquant.sh --rows prefill,1,32 --threads 2" >&2; exit 2 ;;
    esac
done

"$root/scripts/kquant-models.sh"
if [[ "$avx2" == 1 ]]; then
    export SYNTH_CPU_KERNELS=avx2
    export LLAMACPP_VENV="$root/.cache/llamacpp-venv-avx2"
    export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && cargo bench --bench throughput --no-run)

for f in ${files//,/ }; do
    if [[ "$f" == 1b ]]; then model="$root/.cache/kquant/random-1b.Q4_K_M.gguf"; else model="$root/.cache/kquant/SmolLM2-135M-Instruct.$f.gguf"; fi
    echo "## $(basename "$model")"
    (cd "$root" && cargo bench --bench throughput -- --engines synth --model "$model" --rows "$rows" --threads "$threads" --tsv "$tmp/$f.synth.tsv")
    "$root/benches/llamacpp/run.sh" --model "$model" --rows "$rows" --threads "$threads" --tsv "$tmp/$f.llamacpp.tsv"
done

echo
echo "# side by side (tokens/s; prefill row = prompt tokens/s, others = generated tokens/s, all sequences)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) | $(nproc) cores | threads $threads | AVX-512 VNNI: $(grep -qw avx512_vnni /proc/cpuinfo && echo yes || echo no) | run: $([[ "$avx2" == 1 ]] && echo "AVX2 only on both sides" || echo "each side's fastest kernels")"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-8s %-18s %10s %10s %8s   %s\n" file row synth llama.cpp s/llama "peak MiB synth/llama.cpp"
for f in ${files//,/ }; do
    awk -F'\t' -v file="$f" '
        FNR == 1 { next }
        { rate[$1, $2] = $3; rss[$1, $2] = $5; if (!seen[$1]++) order[n++] = $1 }
        function label(r) { return r == "prefill" ? "prefill 256 tok" : r " seq x 128 new" }
        function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
        END {
            for (i = 0; i < n; i++) {
                r = order[i]
                printf "%-8s %-18s %10s %10s %8s   %s/%s\n", file, label(r), rate[r, "synth"], rate[r, "llama.cpp"], ratio(rate[r, "synth"], rate[r, "llama.cpp"]), rss[r, "synth"], rss[r, "llama.cpp"]
            }
        }
    ' "$tmp/$f.synth.tsv" "$tmp/$f.llamacpp.tsv"
done

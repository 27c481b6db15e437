#!/usr/bin/env bash
# synth against llama.cpp on the GGUF types users download, side by side in one run: the real
# SmolLM2 requantized to Q4_K_M, Q5_K_M, Q6_K and Q8_0, and a random-weight model of a real 1B
# shape in Q4_K_M (files from scripts/kquant-models.sh, cached under .cache/kquant/). Rows:
# prefill of 256 tokens, then 1 and 32 concurrent sequences generating 128 tokens each; every
# row also reports the process's peak RSS.
#
#   benches/kquant.sh [--rows prefill,1,32] [--threads 2] [--files Q4_K_M,Q5_K_M,Q6_K,Q8_0,1b] [--avx2]
#                     [--repeat 1]
#
# --repeat N: runs each file's two sides N times, one after the other (synth, llama.cpp, synth,
# ...), and reports each side's median, the median of the N run pairs' ratios and the ratios
# themselves: on a shared or virtual machine one run's figure can be 20-30 % off.
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
repeat=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --files) files="$2"; shift 2 ;;
        --avx2) avx2=1; shift ;;
        --repeat) repeat="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2; echo >&2; echo "hint: benches/kquant.sh --rows prefill,1,32 --threads 2" >&2; exit 2 ;;
    esac
done
if ! [[ "$repeat" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: --repeat takes a count of runs (1 or more), not \`$repeat\`" >&2
    exit 2
fi

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
    for run in $(seq "$repeat"); do
        echo "## $(basename "$model") (run $run of $repeat)"
        (cd "$root" && cargo bench --bench throughput -- --engines synth --model "$model" --rows "$rows" --threads "$threads" --tsv "$tmp/$f.$run.synth.tsv")
        "$root/benches/llamacpp/run.sh" --model "$model" --rows "$rows" --threads "$threads" --tsv "$tmp/$f.$run.llamacpp.tsv"
    done
done

echo
echo "# side by side (tokens/s; prefill row = prompt tokens/s, others = generated tokens/s, all sequences)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) | $(nproc) cores | threads $threads | AVX-512 VNNI: $(grep -qw avx512_vnni /proc/cpuinfo && echo yes || echo no) | run: $([[ "$avx2" == 1 ]] && echo "AVX2 only on both sides" || echo "each side's fastest kernels")"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-8s %-18s %10s %10s %8s   %-24s %s\n" file row synth llama.cpp s/llama "peak MiB synth/llama.cpp" "$([[ "$repeat" -gt 1 ]] && echo "ratio of each run pair")"
for f in ${files//,/ }; do
    # Each (row, side): the median of its runs; the ratio: the median of the run pairs' ratios.
    awk -F'\t' -v file="$f" '
        FNR == 1 { n = split(FILENAME, parts, "."); run = parts[n - 2]; runs = run > runs ? run : runs; next }
        {
            rate[$1, $2, run] = $3
            if ($5 > rss[$1, $2]) rss[$1, $2] = $5
            if (!seen[$1]++) order[rows++] = $1
        }
        function label(r) { return r == "prefill" ? "prefill 256 tok" : r " seq x 128 new" }
        function median(v, k,    i, j, t) {
            for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
        }
        END {
            for (i = 0; i < rows; i++) {
                r = order[i]; ns = nl = nr = 0; pairs = ""
                for (x = 1; x <= runs; x++) {
                    s = rate[r, "synth", x]; l = rate[r, "llama.cpp", x]
                    if (s != "") syn[++ns] = s
                    if (l != "") lla[++nl] = l
                    if (s != "" && l != "" && l > 0) { rat[++nr] = s / l; pairs = pairs sprintf(" %.2f", s / l) }
                }
                printf "%-8s %-18s %10s %10s %8s   %-24s%s\n", file, label(r),
                    ns ? sprintf("%.1f", median(syn, ns)) : "-", nl ? sprintf("%.1f", median(lla, nl)) : "-",
                    nr ? sprintf("%.2f", median(rat, nr)) : "-", rss[r, "synth"] "/" rss[r, "llama.cpp"], (runs > 1 ? pairs : "")
            }
        }
    ' $(for run in $(seq "$repeat"); do echo "$tmp/$f.$run.synth.tsv" "$tmp/$f.$run.llamacpp.tsv"; done)
done

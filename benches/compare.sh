#!/usr/bin/env bash
# synth against its peers, side by side: runs `cargo bench --bench throughput` (synth and
# candle-transformers' quantized Llama) and benches/llamacpp/run.sh (llama.cpp), then prints
# one table with the ratios synth/llama.cpp and synth/candle per row.
#
#   benches/compare.sh [--rows prefill,1,8,32] [--threads 2]
#
# The first run builds llama-cpp-python (several minutes); see benches/llamacpp/run.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rows="prefill,1,8,32"
threads="${BENCH_THREADS:-2}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2; echo >&2; echo "hint: benches/compare.sh --rows prefill,1,8,32 --threads 2" >&2; exit 2 ;;
    esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Build first, so the compile does not overlap the llama.cpp measurements.
(cd "$root" && cargo bench --bench throughput --no-run)
(cd "$root" && cargo bench --bench throughput -- --rows "$rows" --threads "$threads" --tsv "$tmp/synth.tsv")
echo
"$root/benches/llamacpp/run.sh" --rows "$rows" --threads "$threads" --tsv "$tmp/llamacpp.tsv"
echo

echo "# side by side (tokens/s; prefill row = prompt tokens/s, others = generated tokens/s, all sequences)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) | $(nproc) cores | threads $threads"
awk -F'\t' '
    FNR == 1 { next }
    { rate[$1, $2] = $3; load[$1, $2] = $4; rss[$1, $2] = $5; if (!seen[$1]++) order[n++] = $1 }
    function label(r) { return r == "prefill" ? "prefill 256 tok" : r " seq x 128 new" }
    function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
    function val(x) { return x == "" ? "-" : x }
    END {
        printf "%-18s %10s %10s %10s %9s %9s   %s\n", "row", "synth", "llama.cpp", "candle", "s/llama", "s/candle", "peak MiB synth/llama.cpp/candle"
        for (i = 0; i < n; i++) {
            r = order[i]
            s = rate[r, "synth"]; l = rate[r, "llama.cpp"]; c = rate[r, "candle"]
            printf "%-18s %10s %10s %10s %9s %9s   %s/%s/%s\n", label(r), val(s), val(l), val(c), ratio(s, l), ratio(s, c), val(rss[r, "synth"]), val(rss[r, "llama.cpp"]), val(rss[r, "candle"])
        }
    }
' "$tmp/synth.tsv" "$tmp/llamacpp.tsv"

#!/usr/bin/env bash
# synth against its peers, side by side: runs `cargo bench --bench throughput` (synth and
# candle-transformers' quantized Llama) and benches/llamacpp/run.sh (llama.cpp), then prints
# one table with the ratios synth/llama.cpp and synth/candle per row.
#
#   benches/compare.sh [--rows prefill,1,8,32] [--threads 2] [--run-rows 64] [--run-only]
#
# Then the `synth run` row: the quickstart recipe made greedy (so both sides do the same work)
# over a seed dataset of --run-rows rows (the 16 quickstart seeds repeated), run by the synth
# binary and by llama.cpp doing the same two stages (benches/llamacpp/synth_run.py); rows/s
# from start (model load included) to the last token. --run-rows 0 skips it; --run-only skips
# the token rows.
#
# The first run builds llama-cpp-python (several minutes); see benches/llamacpp/run.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rows="prefill,1,8,32"
threads="${BENCH_THREADS:-2}"
run_rows=64
run_only=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --run-rows) run_rows="$2"; shift 2 ;;
        --run-only) run_only=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2; echo >&2; echo "hint: benches/compare.sh --rows prefill,1,8,32 --threads 2" >&2; exit 2 ;;
    esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ "$run_only" == 0 ]]; then
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
fi

[[ "$run_rows" -gt 0 ]] || exit 0
echo
echo "# synth run of $run_rows seed rows (quickstart recipe, greedy, 256 new tokens at most per generation)"
(cd "$root" && cargo build --release --locked --quiet)
synth="${CARGO_TARGET_DIR:-$root/target}/release/synth"
model="$root/.cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf"
home="$tmp/home"
mkdir -p "$home/models"
ln -s "$model" "$home/models/"
seed="$tmp/seed.jsonl"
for _ in $(seq $(( (run_rows + 15) / 16 ))); do cat "$root/data/quickstart_seed.jsonl"; done | head -n "$run_rows" > "$seed"
SYNTH_HOME="$home" "$synth" datasets import "$seed" --id dataset_quickstart_seed >/dev/null
python3 - "$root/recipes/quickstart.json" "$tmp/recipe.json" <<'PY'
import json, sys
recipe = json.load(open(sys.argv[1]))
recipe["inferenceConfig"]["inferenceTemperature"] = 0.0
recipe["inferenceConfig"].pop("requestsPerMinute", None)
json.dump(recipe, open(sys.argv[2], "w"), indent=2)
PY
start=$(date +%s.%N)
SYNTH_HOME="$home" RAYON_NUM_THREADS="$threads" "$synth" --device cpu --quiet run "$tmp/recipe.json" --output-id bench >/dev/null
end=$(date +%s.%N)
synth_json=$(python3 - "$home/datasets/bench/manifest.json" "$start" "$end" "$run_rows" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); seconds = float(sys.argv[3]) - float(sys.argv[2]); rows = int(sys.argv[4])
print(json.dumps({"seedRows": rows, "keptRows": m["counts"]["rows"], "promptTokens": m["tokens"]["prompt"],
                  "generatedTokens": m["tokens"]["generated"], "seconds": round(seconds, 3), "rowsPerSecond": round(rows / seconds, 4)}))
PY
)
echo "synth:     $synth_json"
# The rows as synth stored them (chat form), in synth's reading order, for the peer.
for split in train validation test; do
    cat "$home/datasets/dataset_quickstart_seed/$split.jsonl" 2>/dev/null || true
done > "$tmp/seed_chat.jsonl"
llama_json=$("$root/benches/llamacpp/run.sh" --synth-run --model "$model" --seed-jsonl "$tmp/seed_chat.jsonl" --threads "$threads" | tail -n 1)
echo "llama.cpp: $llama_json"
python3 - "$synth_json" "$llama_json" <<'PY'
import json, sys
s, l = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'synth run':<18} {'synth':>10} {'llama.cpp':>10} {'s/llama':>9}")
print(f"{'rows/s':<18} {s['rowsPerSecond']:>10.3f} {l['rowsPerSecond']:>10.3f} {s['rowsPerSecond'] / l['rowsPerSecond']:>9.2f}")
print(f"{'generated tok/s':<18} {s['generatedTokens'] / s['seconds']:>10.1f} {l['generatedTokens'] / l['seconds']:>10.1f} {(s['generatedTokens'] / s['seconds']) / (l['generatedTokens'] / l['seconds']):>9.2f}")
print(f"work: synth {s['generatedTokens']} generated / {s['promptTokens']} prompt tokens; llama.cpp {l['generatedTokens']} / {l['promptTokens']}")
PY

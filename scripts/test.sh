#!/usr/bin/env bash
# Runs synth's whole test suite: fetches the test assets (real SmolLM2 GGUF, real Llama-3.1 and
# Qwen3 tokenizers) if absent, then `cargo test --release` (model tests need optimized candle,
# and release shares its compiled dependencies with the quickstart's build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/fetch-assets.sh >/dev/null
cargo test --release --locked "$@"

#!/usr/bin/env bash
# Runs synth's whole test suite: the shape gate (rustfmt, clippy with warnings as errors, and
# scripts/check-shape.py: no import circles, layers, function length), then fetches the test
# assets (real SmolLM2 GGUF, real Llama-3.1 and Qwen3 tokenizers) if absent, makes SmolLM2's
# requantized GGUF files for tests/kquant_smollm2.rs (scripts/kquant-models.sh: the first time it
# builds llama-cpp-python, ~7 min; set LLAMACPP_VENV to share that build between clones), then
# `cargo test --release` (model tests need optimized candle, and release shares its compiled
# dependencies with the quickstart's build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
echo "== shape: cargo fmt --check, cargo clippy -D warnings, scripts/check-shape.py" >&2
cargo fmt --check
cargo clippy --release --locked --all-targets --quiet -- -D warnings
python3 scripts/check-shape.py
scripts/fetch-assets.sh >/dev/null
mkdir -p .cache
echo "== test models: scripts/kquant-models.sh --smollm2-only (log: .cache/kquant-models.log)" >&2
scripts/kquant-models.sh --smollm2-only >.cache/kquant-models.log 2>&1 || { tail -20 .cache/kquant-models.log >&2; exit 1; }
cargo test --release --locked "$@"

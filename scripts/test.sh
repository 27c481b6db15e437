#!/usr/bin/env bash
# Runs synth's whole test suite: the shape gate (rustfmt, clippy with warnings as errors, and
# scripts/check-shape.py: no import circles, layers, function length), then fetches the test
# assets (real SmolLM2 GGUF, real Llama-3.1 and Qwen3 tokenizers) if absent, then
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
cargo test --release --locked "$@"

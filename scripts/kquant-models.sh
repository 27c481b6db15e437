#!/usr/bin/env bash
# Makes the K-quant GGUF files the kernel tests and benches/kquant.sh use, cached under
# .cache/kquant/ (nothing here goes into git):
#   SmolLM2-135M-Instruct.<TYPE>.gguf  the real SmolLM2 (the bundled Q4_1 file) requantized by
#                                      llama.cpp's own quantizer to Q4_K_M, Q5_K_M, Q6_K, Q8_0,
#                                      Q4_0, Q5_0 and Q5_1 (requantizing needs allow_requantize)
#   random-1b.Q4_K_M.gguf              random weights of a real 1B shape (hidden 2048, 16 layers,
#                                      ffn 8192, 32/8 heads, SmolLM2's tokenizer), written as F16
#                                      by the `gguf` package, then quantized to Q4_K_M
# It uses the llama-cpp-python virtual environment of benches/llamacpp/run.sh (built on first
# use, several minutes) plus the `gguf` package. Idempotent: existing files are kept.
#
#   scripts/kquant-models.sh [--smollm2-only]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LLAMACPP_VENV:-$root/.cache/llamacpp-venv}"
out="$root/.cache/kquant"
gguf_version="0.19.0"
smollm2_only=0
[[ "${1:-}" == "--smollm2-only" ]] && smollm2_only=1

"$root/benches/llamacpp/run.sh" --help > /dev/null
if [[ ! -f "$venv/.installed-gguf-$gguf_version" ]]; then
    "$venv/bin/pip" install --quiet "gguf==$gguf_version"
    touch "$venv/.installed-gguf-$gguf_version"
fi
source_model="$root/.cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf"
[[ -f "$source_model" ]] || "$root/scripts/fetch-assets.sh"
mkdir -p "$out"
args=("$source_model" "$out")
[[ "$smollm2_only" == 1 ]] && args+=(--smollm2-only)
"$venv/bin/python" "$root/scripts/kquant_models.py" "${args[@]}"

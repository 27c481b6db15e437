#!/usr/bin/env bash
# Type-checks synth with `--features cuda` on a machine without a GPU or a system CUDA
# install, and builds candle-kernels' CUDA kernels (PTX + libmoe.a) with a real nvcc.
#
#   scripts/check-cuda.sh [extra cargo check args, e.g. --locked]
#
# nvcc and headers come from NVIDIA's PyPI wheels, installed once into a virtual environment
# under .cache/cuda-toolkit/ (git-ignored; re-installed only when the pinned versions below
# change). Cargo output goes to target/cuda-check/ so the normal target/ build is untouched.
# Nothing is linked: there are no driver libraries (libcuda, libcublas, ...) here, and none
# are needed for `cargo check`.
#
# Environment (all optional):
#   CUDA_COMPUTE_CAP      GPU arch the kernels are built for (default 90 -> sm_90a)
#   CUDARC_CUDA_VERSION   CUDA API version cudarc binds to (default 13000; cudarc 0.19 knows
#                         versions up to 13.4 and would reject nvcc 13.5's own version)
#   CUDA_CHECK_TARGET_DIR cargo target dir (default <repo>/target/cuda-check)
#   CUDA_CHECK_CACHE      toolkit cache dir (default <repo>/.cache/cuda-toolkit)
#   PYTHON                interpreter used to create the venv (default python3)
#   CUDAFORGE_THREADS     parallel nvcc jobs in candle-kernels' build script (default: about
#                         half the cores; the 15 libmoe.a objects take ~45 s each on one core)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${CUDA_CHECK_CACHE:-$root/.cache/cuda-toolkit}
target_dir=${CUDA_CHECK_TARGET_DIR:-$root/target/cuda-check}
python=${PYTHON:-python3}

fail() { echo "check-cuda: FAIL: $*" >&2; exit 1; }

# shellcheck source=scripts/cuda-toolkit.sh
source "$root/scripts/cuda-toolkit.sh"

# --- 3. cargo check ---------------------------------------------------------------------
start=$SECONDS
if ! cargo check --manifest-path "$root/Cargo.toml" --target-dir "$target_dir" \
  --features cuda --all-targets "$@"; then
  fail "cargo check --features cuda --all-targets ($((SECONDS - start))s)"
fi

# The kernels are built by candle-kernels' build script; show that nvcc really produced them
# (cargo hides registry crates' build-script output).
out=$(ls -td "$target_dir"/debug/build/candle-kernels-*/out 2>/dev/null | head -1 || true)
nptx=$(ls "$out"/*.ptx 2>/dev/null | wc -l || true)
[ -n "$out" ] && [ "$nptx" -gt 0 ] && [ -s "$out/libmoe.a" ] ||
  fail "cargo check passed but candle-kernels' PTX / libmoe.a are missing (nvcc did not run?)"
ptx_target=$(grep -m1 -h '^\.target' "$out"/*.ptx | head -1 || true)
echo "check-cuda: candle-kernels: $nptx PTX files ($ptx_target) + libmoe.a in $out" >&2
# what candle-kernels' build script (cudaforge) reported the last time it ran nvcc
sed -n 's/^cargo:warning=/check-cuda: candle-kernels build.rs: /p' "$out/../output" >&2 || true
echo "check-cuda: PASS: cargo check --features cuda --all-targets ($((SECONDS - start))s)"

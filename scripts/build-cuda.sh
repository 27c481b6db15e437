#!/usr/bin/env bash
# Builds synth's CUDA binaries on a machine with no GPU and no CUDA install, for a GPU machine
# that has the NVIDIA driver and CUDA 13 libraries but no Rust toolchain (this project's
# device machines; benches/cuda/run.sh runs them there):
#
#   .cache/cuda-dist/synth               the CLI, --features cuda
#   .cache/cuda-dist/gpu_throughput      benches/gpu_throughput.rs
#   .cache/cuda-dist/oracle_safetensors  tests/oracle_safetensors.rs (SYNTH_TEST_DEVICE=cuda)
#   .cache/cuda-dist/device_cli          tests/device_cli.rs (SYNTH_TEST_DEVICE=cuda), with
#   .cache/cuda-dist/assets/llama3_1/    the Llama-3.1 tokenizer it uses
#
#   scripts/build-cuda.sh [extra cargo build args, e.g. --locked]
#
# nvcc 13.0 comes from PyPI (scripts/cuda-toolkit.sh): the PTX of nvcc 13.5 (ISA 9.5) does not
# load on a CUDA 13.0 driver. cudarc links against libcuda, libcublas,
# libcublasLt, libcurand and libnvrtc, which are not here, so the link is made against stubs:
# shared libraries with the real sonames that define, with empty bodies never run, every
# symbol of theirs the compiled objects reference. At run time the loader finds the real
# libraries by soname (the driver's libcuda.so.1; the others from the CUDA 13 wheels).
# Cargo output: target/cuda-13.0/ (CUDA_BUILD_TARGET_DIR); the binaries are stripped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cuda_release=13.0 # the GPU machines' driver is CUDA 13.0 (580.x); see scripts/cuda-toolkit.sh
cache=${CUDA_BUILD_CACHE:-$root/.cache/cuda-toolkit-13.0}
target_dir=${CUDA_BUILD_TARGET_DIR:-$root/target/cuda-13.0}
dist="$root/.cache/cuda-dist"
python=${PYTHON:-python3}

fail() { echo "build-cuda: FAIL: $*" >&2; exit 1; }

# shellcheck source=scripts/cuda-toolkit.sh
source "$root/scripts/cuda-toolkit.sh"

build=(cargo build --manifest-path "$root/Cargo.toml" --target-dir "$target_dir" --release --features cuda)

# 1. Everything but the final links.
"${build[@]}" --lib "$@" || fail "cargo build --features cuda --lib"

# 2. Stubs: each library's symbols as the rlibs and static libraries reference them.
stubs="$target_dir/cuda-stubs"
rm -rf "$stubs" && mkdir -p "$stubs"
undefined=$(find "$target_dir/release/deps" "$target_dir/release/build" \( -name '*.rlib' -o -name '*.a' \) -print0 |
    xargs -0 nm -u --format=just-symbols 2>/dev/null | sort -u)
stub() { # name soname symbol-regex
    local name=$1 soname=$2 pattern=$3
    { echo "/* stub of $soname for linking only */"; grep -E "$pattern" <<<"$undefined" | sed 's/.*/void &(void) {}/'; } >"$stubs/$name.c"
    gcc -shared -fPIC -o "$stubs/lib$name.so" -Wl,-soname,"$soname" "$stubs/$name.c" || fail "building the $soname stub"
    echo "build-cuda: stub $soname: $(grep -c '^void' "$stubs/$name.c") symbols" >&2
}
stubs_all() {
    stub cuda libcuda.so.1 '^cu[A-Z]'
    stub cublasLt libcublasLt.so.13 '^cublasLt'
    stub cublas libcublas.so.13 '^cublas[A-Z_]'
    stub curand libcurand.so.10 '^curand'
    stub nvrtc libnvrtc.so.13 '^nvrtc'
}
stubs_all
# libcudart is in the toolkit wheels; the linker wants the unversioned name.
ln -sf "$(readlink -f "$CUDA_HOME/lib/libcudart.so.13")" "$stubs/libcudart.so"

# 3. Link the binaries. LIBRARY_PATH is read by the linker, not by cargo's fingerprints, so
#    step 1's work is reused.
#    A symbol first referenced by a binary's own code (inlined from a generic) is not in any
#    rlib yet: the linker names it, it joins its stub, and the link runs once more.
json="$stubs/build.json"
link() {
    LIBRARY_PATH="$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}" "${build[@]}" --bin synth --bench gpu_throughput --test oracle_safetensors --test device_cli \
        --message-format=json-render-diagnostics "$@" >"$json" 2>"$stubs/link.log"
}
if ! link "$@"; then
    more=$(grep -o "undefined reference to \`[A-Za-z0-9_]*'" "$stubs/link.log" | sed "s/.*\`//; s/'//" | sort -u || true)
    [ -n "$more" ] || { tail -30 "$stubs/link.log" >&2; fail "linking the CUDA binaries"; }
    echo "build-cuda: $(wc -l <<<"$more") more symbols from the linker; linking again" >&2
    undefined=$(printf '%s\n%s\n' "$undefined" "$more" | sort -u)
    stubs_all
    link "$@" || { tail -30 "$stubs/link.log" >&2; fail "linking the CUDA binaries"; }
fi
mkdir -p "$dist"
"$python" - "$json" "$dist" <<'EOF'
import json, shutil, sys
found = {}
for line in open(sys.argv[1]):
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        found[msg["target"]["name"]] = msg["executable"]
for name in ("synth", "gpu_throughput", "oracle_safetensors", "device_cli"):
    shutil.copy2(found[name], f"{sys.argv[2]}/{name}")
EOF
strip "$dist"/synth "$dist"/gpu_throughput "$dist"/oracle_safetensors "$dist"/device_cli
"$root/scripts/fetch-assets.sh" >/dev/null
mkdir -p "$dist/assets" && cp -r "$root/.cache/assets/llama3_1" "$dist/assets/"
for f in "$dist"/synth "$dist"/gpu_throughput "$dist"/oracle_safetensors "$dist"/device_cli; do
    needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    echo "build-cuda: $(basename "$f"): $(du -h "$f" | cut -f1), needs: $needed" >&2
done
# What travels to the GPU machine (64 MiB at most there): one xz archive, which
# benches/cuda/run.sh unpacks with Python's tarfile (no xz binary needed there).
tar -C "$(dirname "$dist")" -cf - "$(basename "$dist")" | xz -6 -T2 >"$dist.tar.xz"
echo "build-cuda: PASS: $dist ($(du -sh "$dist" | cut -f1)), $dist.tar.xz ($(du -h "$dist.tar.xz" | cut -f1))"

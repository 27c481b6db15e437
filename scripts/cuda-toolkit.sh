# Sourced by scripts/check-cuda.sh and scripts/build-cuda.sh: installs nvcc and the CUDA
# headers from NVIDIA's PyPI wheels into a virtual environment under $cache (once; again only
# when the pinned versions change) and exports what cudarc's and candle-kernels' build
# scripts read. Expects $cache, $python and a `fail` function.
#
# $cuda_release picks the toolkit: 13.5 (the default; the CI check, as issue 7 asks) or 13.0
# (scripts/build-cuda.sh: binaries for a driver of CUDA 13.0, which loads PTX up to ISA 9.0;
# nvcc 13.5 writes ISA 9.5).
# nvidia-cuda-cccl has no 13.5.37 release; 13.3.5.0.6 is CCCL 3.5.0, the one CUDA 13.5 ships.
# nvidia-nvvm (cicc, libdevice) is a dependency of nvidia-cuda-nvcc; pinned here as well.
case "${cuda_release:-13.5}" in
  13.5) packages=(nvidia-cuda-nvcc==13.5.37 nvidia-nvvm==13.5.37 nvidia-cuda-runtime==13.5.37
          nvidia-cuda-crt==13.5.37 nvidia-cuda-cccl==13.3.5.0.6) ;;
  13.0) packages=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.88
          nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85) ;;
  *) fail "cuda_release=${cuda_release}: expected 13.5 or 13.0" ;;
esac

# --- 1. toolkit -------------------------------------------------------------------------
venv="$cache/venv"
cuda="$cache/cuda" # symlink to the wheels' merged toolkit dir: bin/ include/ lib/ nvvm/
stamp="$cache/installed.txt"
if [ "$(cat "$stamp" 2>/dev/null)" != "${packages[*]}" ] || [ ! -x "$cuda/bin/nvcc" ]; then
  echo "cuda-toolkit: installing CUDA toolkit wheels into $venv ..." >&2
  rm -rf "$venv" "$cuda" "$stamp"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary=:all: "${packages[@]}" || fail "pip install of ${packages[*]} failed"
  # All five wheels install into site-packages/nvidia/cu13, laid out like a CUDA toolkit root;
  # its bin/nvcc.profile already adds include/, include/cccl and nvvm/ relative to itself.
  tk=$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)
  [ -x "$tk/bin/nvcc" ] && [ -x "$tk/nvvm/bin/cicc" ] && [ -f "$tk/include/cuda_runtime.h" ] &&
    [ -d "$tk/include/cccl/cuda" ] || fail "unexpected wheel layout under $tk"
  ln -sfn "${tk#"$cache"/}" "$cuda"
  echo "${packages[*]}" >"$stamp"
fi

# --- 2. environment for cudarc's and candle-kernels' (cudaforge) build scripts ----------
export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda" CUDA_TOOLKIT_ROOT_DIR="$cuda"
export PATH="$cuda/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
unset NVCC # cudaforge prefers $NVCC over PATH; make sure it is ours
nvcc_version=$(nvcc --version | grep -o 'release [0-9.]*, V[0-9.]*') || fail "nvcc does not run"
echo "cuda-toolkit: nvcc $nvcc_version ($cuda/bin/nvcc), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP," \
  "CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION" >&2


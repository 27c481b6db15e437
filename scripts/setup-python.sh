#!/usr/bin/env bash
# Creates .cache/venv-datasets with the Hugging Face `datasets` library (PyPI), which the export
# round-trip test (tests/export_hf.rs) reads synth's `--format hf` output with. Safe to re-run:
# an existing venv that imports `datasets` is kept. Prints the venv's python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.cache/venv-datasets"
# Tests call this at once from several threads: one at a time.
mkdir -p "$root/.cache"
exec 9>"$root/.cache/venv-datasets.lock"
flock 9
if ! "$venv/bin/python" -c "import datasets" >/dev/null 2>&1; then
  echo "creating $venv with the datasets library (pip)..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "datasets>=3,<5" >&2
fi
echo "$venv/bin/python"

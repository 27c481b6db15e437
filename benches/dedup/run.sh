#!/usr/bin/env bash
# synth's dedup next to datasketch's MinHashLSH on the same 100k synthetic requests: runs
# `cargo bench --bench dedup` (which also writes the requests), then benches/dedup/peer.py in a
# venv (.cache/venv-dedup, made once, with datasketch from PyPI), and prints both with ratios.
#
#   benches/dedup/run.sh [--rows 100000] [--threshold 0.7]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rows=100000
threshold=0.7
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --threshold) threshold="$2"; shift 2 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2; echo >&2; echo "hint: benches/dedup/run.sh --rows 100000 --threshold 0.7" >&2; exit 2 ;;
    esac
done

venv="$root/.cache/venv-dedup"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import datasketch" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "datasketch==1.6.5"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && cargo bench --bench dedup --no-run 2>/dev/null || cargo bench --bench dedup --no-run)
(cd "$root" && cargo bench --bench dedup -- --rows "$rows" --threshold "$threshold" --texts "$tmp/texts.jsonl") | tee "$tmp/synth.txt"
echo
"$venv/bin/python" "$root/benches/dedup/peer.py" "$tmp/texts.jsonl" "$threshold" | tee "$tmp/peer.txt"
echo
python3 - "$tmp/synth.txt" "$tmp/peer.txt" <<'PY'
import sys
rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        if line.startswith("TSV\t"):
            _, name, n, seconds, kept, dropped, rss = line.split("\t")
            rows[name] = (float(seconds), int(kept), int(dropped), float(rss))
s, p = rows["synth"], rows["datasketch"]
print(f"{'':12}{'synth':>12}{'datasketch':>12}{'synth/peer':>12}")
print(f"{'seconds':12}{s[0]:>12.2f}{p[0]:>12.2f}{s[0] / p[0]:>12.2f}")
print(f"{'kept':12}{s[1]:>12}{p[1]:>12}")
print(f"{'dropped':12}{s[2]:>12}{p[2]:>12}")
print(f"{'peak MiB':12}{s[3]:>12.0f}{p[3]:>12.0f}{s[3] / p[3]:>12.2f}")
PY

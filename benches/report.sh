#!/usr/bin/env bash
# The data explorer at scale: a synthetic dataset of N rows (default 100000; realistic lengths:
# requests of 8-60 words, answers of 20-400 words, 2,000 seed rows, some fenced code) is
# imported, then `synth datasets report` and `synth datasets stats` are timed, the report's size
# is printed, and it is opened in headless Chromium (`--screenshot`, which returns once the page
# has loaded, its script drawn the first page of rows, and it was painted). The peer is the same
# Chromium opening an empty page, so the difference is the report's own cost; the page also logs
# when its first page of rows was ready (`synth-report-ready-ms`, from navigation start).
#
#   benches/report.sh [ROWS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rows=${1:-100000}
chromium=$(scripts/setup-browser.sh | head -1)
cargo build --release --quiet
synth="$root/target/release/synth"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SYNTH_HOME="$work/home"

python3 - "$rows" "$work/rows.jsonl" <<'PY'
import json, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
vocab = [w for w in """the a of to and in is that for it as with was on be by this are or from at an which but not
have has had can will would should could about into more most some such than then them these they their there
bread water river light stone music garden engine market history planet number letter window market signal
explain describe write list compare summarize translate why how what when where who give show make build
python function error value table chart story poem recipe travel budget health science ocean forest""".split()]
def words(k):
    return " ".join(rng.choice(vocab) for _ in range(k))
with open(path, "w") as out:
    for i in range(n):
        request = words(rng.randint(8, 60)).capitalize() + "?"
        answer = words(rng.randint(20, 400)) + "."
        if i % 7 == 0:
            answer += "\n```python\nprint(%d)\n```" % i
        row = {"messages": [{"role": "user", "content": request}, {"role": "assistant", "content": answer}],
               "metadata": {"seedRow": i % 2000, "samplingSeed": rng.getrandbits(63)}}
        out.write(json.dumps(row) + "\n")
PY

# Wall seconds of a command; its CPU seconds (user + system) go to $work/cpu.
seconds() {
  local TIMEFORMAT='%R %U %S' t
  t=$({ time "$@" >/dev/null; } 2>&1 | tail -1)
  read -r wall user sys <<<"$t"
  echo "$user + $sys" | bc >"$work/cpu"
  printf '%.2f' "$wall"
}

"$synth" --quiet datasets import "$work/rows.jsonl" --id bench >/dev/null
load=$(cut -d' ' -f1-3 /proc/loadavg)
jsonl_bytes=$(stat -c %s "$work/rows.jsonl")
report_s=$(seconds "$synth" --quiet datasets report bench --output "$work/report.html")
report_cpu=$(cat "$work/cpu")
stats_s=$(seconds "$synth" --quiet datasets stats bench)
stats_cpu=$(cat "$work/cpu")
report_bytes=$(stat -c %s "$work/report.html")
echo '<!DOCTYPE html><html><body>empty</body></html>' >"$work/empty.html"

open_page() {
  "$chromium" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --enable-logging=stderr \
    --window-size=1280,1600 --screenshot="$work/screenshot.png" "file://$1" 2>&1
}
open_page "$work/empty.html" >/dev/null 2>&1 # warm the browser's files
empty_s=$(seconds open_page "$work/empty.html")
report_open_s=$(seconds open_page "$work/report.html")
ready_ms=$(open_page "$work/report.html" | grep -o 'synth-report-ready-ms [0-9]*' | grep -o '[0-9]*$')

mib() { echo "scale=1; $1 / 1048576" | bc; }
echo "rows: $rows (JSONL $(mib "$jsonl_bytes") MiB)"
echo "load average before: $load"
echo "synth datasets report: ${report_s}s wall, ${report_cpu}s CPU, report.html $(mib "$report_bytes") MiB ($(printf '%.2f' "$(echo "scale=3; $report_bytes / $jsonl_bytes" | bc)")x the JSONL)"
echo "synth datasets stats: ${stats_s}s wall, ${stats_cpu}s CPU"
echo "headless Chromium open (--screenshot): report ${report_open_s}s, empty page ${empty_s}s (peer), difference $(printf '%.2f' "$(echo "$report_open_s - $empty_s" | bc)")s"
echo "first page of rows ready ${ready_ms} ms after navigation start (in-page clock)"

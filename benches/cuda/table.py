"""Reads the JSON lines of benches/gpu_throughput.rs and benches/cuda/hf_generate.py from stdin
and prints benches/cuda/run.sh's table (tab-separated)."""

import argparse
import json
import sys

p = argparse.ArgumentParser()
p.add_argument("--bandwidth-tbps", type=float, default=3.35)
args = p.parse_args()

rows = [json.loads(line) for line in sys.stdin if line.strip()]
for r in rows:
    if "error" in r:
        print(f"# {r['engine']} at batch {r['batch']}: {r['error']}")
batches = sorted({r["batch"] for r in rows})
ok = [r for r in rows if "error" not in r]
synth = {r["batch"]: r for r in ok if r["engine"] == "synth"}
peer = {r["batch"]: r for r in ok if r["engine"] != "synth"}
if not ok:
    sys.exit("no results")
first = next(iter(synth.values()), ok[0])
# The roof at batch 1: every weight read from GPU memory once per generated token.
roof = args.bandwidth_tbps * 1e12 / first["weight_bytes"]
peer_name = next(iter(peer.values()))["engine"] if peer else "transformers (not run)"
print(f"# {first['device']} {first['dtype']}, {first['params'] / 1e9:.2f}B parameters ({first['weight_bytes'] / 2**30:.1f} GiB), "
      f"{first['prompt']}-token prompts, {first['new']} new tokens per sequence; peer: {peer_name}")
print(f"# roof at batch 1: {args.bandwidth_tbps} TB/s / {first['weight_bytes'] / 1e9:.1f} GB = {roof:.0f} tokens/s")
print("batch\tsynth tok/s\tsynth GPU MiB\tpeer tok/s\tpeer GPU MiB\tsynth/peer\tsynth/roof(batch 1)")
for b in batches:
    s = synth.get(b)
    o = peer.get(b)
    mem = lambda r: "-" if r is None or r.get("gpu_peak_mib") is None else str(r["gpu_peak_mib"])
    cells = [
        str(b),
        f"{s['tok_s']:.1f}" if s else "failed",
        mem(s),
        f"{o['tok_s']:.1f}" if o else "-",
        mem(o),
        f"{s['tok_s'] / o['tok_s']:.2f}x" if s and o else "-",
        f"{s['tok_s'] / roof:.2f}" if s and b == 1 else "",
    ]
    print("\t".join(cells))

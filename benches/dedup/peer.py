"""The peer of `cargo bench --bench dedup`: datasketch's MinHash + MinHashLSH over the same
requests, with the same words, shingles, threshold and decision rule (query, then insert what is
kept; a candidate counts only if the exact Jaccard index of the shingle sets reaches the
threshold, as synth decides). Prints the same figures.

    python benches/dedup/peer.py TEXTS.jsonl THRESHOLD
"""
import json
import re
import resource
import sys
import time

from datasketch import MinHash, MinHashLSH

WORD = re.compile(r"[^\W_](?:[^\W_]|')*", re.UNICODE)


def words(text):
    return [w.lower().rstrip("'") for w in WORD.findall(text)]


def shingles(text):
    ws = words(text)
    if len(ws) < 3:
        return {"\x1f".join(ws).encode()} if ws else set()
    return {"\x1f".join(ws[i : i + 3]).encode() for i in range(len(ws) - 2)}


def main():
    path, threshold = sys.argv[1], float(sys.argv[2])
    texts = [json.loads(line) for line in open(path, encoding="utf-8")]
    started = time.perf_counter()
    sets = [shingles(t) for t in texts]
    signatures = MinHash.bulk([list(s) for s in sets], num_perm=128)
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    exact_keys, kept_sets = set(), {}
    kept = exact = near = 0
    for i, (text, own, sig) in enumerate(zip(texts, sets, signatures)):
        key = " ".join(words(text))
        if key in exact_keys:
            exact += 1
            continue
        if own and any(len(own & kept_sets[c]) / len(own | kept_sets[c]) >= threshold for c in lsh.query(sig)):
            near += 1
            continue
        exact_keys.add(key)
        kept_sets[i] = own
        if own:
            lsh.insert(i, sig)
        kept += 1
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"datasketch MinHashLSH: {len(texts)} rows, threshold {threshold}, {lsh.b} bands x {lsh.r} rows")
    print(f"  seconds       {seconds:.2f}")
    print(f"  rows/s        {len(texts) / seconds:.0f}")
    print(f"  kept          {kept}")
    print(f"  exact drops   {exact}")
    print(f"  near drops    {near}")
    print(f"  peak RSS MiB  {peak:.0f}")
    print(f"TSV\tdatasketch\t{len(texts)}\t{seconds:.3f}\t{kept}\t{exact + near}\t{peak:.0f}")


if __name__ == "__main__":
    main()

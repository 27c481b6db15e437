"""The rows of `cargo bench --bench throughput`, run by llama.cpp through llama-cpp-python's
low-level API. Started by benches/llamacpp/run.sh, which provides the virtual environment.

Rows: prefill of a 256-token prompt (prompt tokens/s), and 1, 8, 32 concurrent sequences
generating 128 tokens each after a 16-token prompt (generated tokens/s, all sequences together,
wall time from the first llama_decode to the last token). Greedy, end-of-text ignored. The
prompts are the same pseudo-random token ids as the Rust bench's.

The concurrent sequences share every llama_decode: one batch holds all prompts (one seq_id
each), then one token per sequence per step, as llama.cpp's own batched example does.

Each row runs in a child process (this script re-run with BENCH_CHILD set) so that its peak RSS
(VmHWM) is its own.
"""

import argparse
import ctypes
import glob
import json
import os
import platform
import subprocess
import sys
import time

PREFILL_TOKENS = 256
PROMPT_TOKENS = 16
NEW_TOKENS = 128
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, ".cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf")
MASK64 = (1 << 64) - 1


def prompt(seed, length, vocab):
    """The Rust bench's prompt ids: a 64-bit LCG, bits 33.. modulo the vocabulary."""
    state = (seed * 6364136223846793005 + 1442695040888963407) & MASK64
    out = []
    for _ in range(length):
        state = (state * 6364136223846793005 + 1442695040888963407) & MASK64
        out.append((state >> 33) % vocab)
    return out


def row_label(row):
    return f"prefill {PREFILL_TOKENS} tok" if row == "prefill" else f"{row} seq x {NEW_TOKENS} new"


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def llama_version():
    import llama_cpp

    version = f"llama-cpp-python {llama_cpp.__version__}"
    libs = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so*"))
    if libs:
        try:
            ggml = ctypes.CDLL(libs[0])
            ggml.ggml_version.restype = ctypes.c_char_p
            ggml.ggml_commit.restype = ctypes.c_char_p
            version += f", ggml {ggml.ggml_version().decode()} (commit {ggml.ggml_commit().decode()})"
        except (OSError, AttributeError):
            pass
    return version


# ---- child: one row ----


def child(row, args):
    import numpy as np
    import llama_cpp as L

    if not args.verbose:
        # Silence llama.cpp's loader chatter; errors still surface through return codes.
        @L.llama_log_callback
        def quiet(level, text, user_data):
            pass

        L.llama_log_set(quiet, ctypes.c_void_p(0))
        child.quiet = quiet  # keep the callback alive

    n_seq = 1 if row == "prefill" else int(row)
    prompt_len = PREFILL_TOKENS if row == "prefill" else PROMPT_TOKENS
    new_tokens = 1 if row == "prefill" else NEW_TOKENS
    per_seq = prompt_len + new_tokens

    started = time.perf_counter()
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    fields = {name for name, _ in L.llama_model_params._fields_}
    # The CPU repack ("extra") buffer types hold the AMX kernels, which crash on first decode on
    # some machines; off keeps the plain CPU kernels, as on every machine.
    if "use_extra_bufts" in fields and not args.extra_bufts:
        mparams.use_extra_bufts = False
    model = L.llama_model_load_from_file(args.model.encode(), mparams)
    if not model:
        sys.exit(f"error: llama.cpp could not load `{args.model}`")
    cparams = L.llama_context_default_params()
    cparams.n_seq_max = n_seq
    # Non-unified, each sequence gets n_ctx / n_seq_max cells: room for each, padded to 256.
    cparams.kv_unified = args.kv_unified
    cparams.n_ctx = -(-per_seq // 256) * 256 * n_seq
    tokens_per_step = max(n_seq * prompt_len, n_seq)
    cparams.n_batch = tokens_per_step
    cparams.n_ubatch = tokens_per_step
    cparams.n_threads = args.threads
    cparams.n_threads_batch = args.threads
    cparams.no_perf = True
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        sys.exit("error: llama.cpp could not create a context")
    load_seconds = time.perf_counter() - started

    vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    memory = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(tokens_per_step, 0, 1)

    def fill(entries):
        """entries: (token, position, seq_id, wants_logits)."""
        for i, (tok, pos, seq, logits) in enumerate(entries):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(entries)

    def decode():
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            sys.exit(f"error: llama_decode returned {rc}")

    def argmax(i):
        return int(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(vocab,)).argmax())

    def generate(prompts, new):
        """All prompts in one decode, then one token per sequence per decode. Returns tokens generated."""
        L.llama_memory_clear(memory, True)
        entries = []
        for s, p in enumerate(prompts):
            entries += [(t, pos, s, pos == len(p) - 1) for pos, t in enumerate(p)]
        fill(entries)
        decode()
        # Logit rows are numbered by the batch entries that asked for them.
        out_index = [i for i, e in enumerate(entries) if e[3]]
        generated = 0
        for step in range(new):
            nexts = [argmax(i) for i in out_index]
            generated += len(nexts)
            if step + 1 == new:
                break
            fill([(t, len(prompts[s]) + step, s, True) for s, t in enumerate(nexts)])
            out_index = list(range(len(nexts)))
            decode()
        return generated

    if row == "prefill":
        best = float("inf")
        for i in range(args.prefill_iters + 1):
            p = prompt(i, PREFILL_TOKENS, vocab)
            t = time.perf_counter()
            generate([p], 1)
            if i > 0:  # iteration 0 is the warm-up
                best = min(best, time.perf_counter() - t)
        tokens, seconds = PREFILL_TOKENS, best
    else:
        generate([prompt(1000 + s, PROMPT_TOKENS, vocab) for s in range(n_seq)], 8)  # warm-up
        prompts = [prompt(s, PROMPT_TOKENS, vocab) for s in range(n_seq)]
        t = time.perf_counter()
        tokens = generate(prompts, NEW_TOKENS)
        seconds = time.perf_counter() - t

    L.llama_batch_free(batch)
    result = {"tokens": tokens, "seconds": seconds, "load_seconds": load_seconds, "peak_rss_kib": peak_rss_kib()}
    print(json.dumps(result), flush=True)


# ---- parent ----


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def parent(args):
    print("# llama.cpp throughput bench (peer of `cargo bench --bench throughput`)")
    print(f"machine: {cpu_model()} | nproc {os.cpu_count()} | threads {args.threads}")
    print(f"commit:  {git_commit()}")
    print(f"model:   {args.model}")
    print(f"peer:    {llama_version()}")
    print(f"load:    {load_average()}")
    print(
        f"kv cache: {'unified' if args.kv_unified else 'one stream per sequence (kv_unified=false)'}; "
        f"use_extra_bufts={'default' if args.extra_bufts else 'False'}; all sequences of a row in each llama_decode"
    )
    print(f"greedy, end-of-text ignored; decode rows: {PROMPT_TOKENS}-token prompts, {NEW_TOKENS} new tokens each\n")

    results = []
    for row in args.rows:
        print(f"running llama.cpp / {row_label(row)} ... ", end="", file=sys.stderr, flush=True)
        env = dict(os.environ, BENCH_CHILD=row)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"\nerror: llama.cpp / {row_label(row)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{m['tokens'] / m['seconds']:.1f} tok/s", file=sys.stderr)
        results.append((row, m))

    print(f"{'row':<20} {'llama.cpp tok/s':>16} {'load s':>9} {'peak MiB':>10}")
    for row, m in results:
        print(f"{row_label(row):<20} {m['tokens'] / m['seconds']:>16.1f} {m['load_seconds']:>9.3f} {m['peak_rss_kib'] / 1024:>10.0f}")
    print(f"\nload after run: {load_average()}")

    if args.tsv:
        with open(args.tsv, "w") as f:
            f.write("row\tengine\ttok_per_s\tload_s\tpeak_rss_mib\n")
            for row, m in results:
                f.write(f"{row}\tllama.cpp\t{m['tokens'] / m['seconds']:.2f}\t{m['load_seconds']:.3f}\t{m['peak_rss_kib'] / 1024:.1f}\n")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=os.environ.get("BENCH_ROWS", "prefill,1,8,32"), help="comma-separated: prefill and/or numbers of concurrent sequences")
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    p.add_argument("--model", default=os.environ.get("BENCH_MODEL", DEFAULT_MODEL))
    p.add_argument("--prefill-iters", type=int, default=3, help="timed prefill repetitions; the best is reported")
    p.add_argument("--kv-unified", action="store_true", help="one KV buffer shared by all sequences (llama.cpp's default)")
    p.add_argument("--extra-bufts", action="store_true", help="keep llama.cpp's extra (repacked/AMX) weight buffers")
    p.add_argument("--tsv", help="also write the results as TSV here")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's own log")
    args = p.parse_args()
    rows = []
    for r in args.rows.split(","):
        r = r.strip()
        if r in ("prefill", "p"):
            rows.append("prefill")
        elif r.isdigit() and int(r) > 0:
            rows.append(r)
        else:
            p.error(f"unknown row `{r}` (rows are `prefill` or a number of concurrent sequences)")
    args.rows = rows
    if not os.path.exists(args.model):
        p.error(f"model `{args.model}` not found; run scripts/fetch-assets.sh or pass --model")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if os.environ.get("BENCH_CHILD"):
        child(os.environ["BENCH_CHILD"], arguments)
    else:
        parent(arguments)

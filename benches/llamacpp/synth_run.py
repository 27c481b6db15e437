"""The work of `synth run` on a seed dataset, done by llama.cpp: the peer of the `synth run`
row of benches/compare.sh. Started by benches/llamacpp/run.sh --synth-run (its venv).

For every seed row, as synth's general synthesis does (src/synthesis/general.rs):
1. render [user: request prompt built from the seed's first user message] with the GGUF's
   chat template and generate a new request;
2. clean the request and render [system?, user: request] and generate the answer.
Both stages are greedy, stop at the model's end-of-generation tokens or after
--max-new-tokens, and run as continuous batches of up to --max-batch sequences sharing every
llama_decode (a finished sequence's slot takes the next prompt), as synth's scheduler does.

With --num-samples N it does the work of `synth run --num-samples N` (src/synthesis/
candidates.rs): every usable seed row gets a round-robin share of N rows and of a budget of
3 N candidates; a seed row's variant v > 0 is prompted with its seed, two other seed requests
and a direction drawn from the variant's seed exactly as synth draws them
(src/synthesis/general.rs); dropped candidates are replaced by the seed row's next variants.
Being a plain llama.cpp program, it does this in rounds: each round's requests, then their
answers (continuous batching within a stage, a barrier between stages and rounds).

Prints one JSON line: seed rows, rows made, generations, prompt and generated tokens, seconds
(from model load to the last token, as synth's wall time), rows/s.
"""

import argparse
import ctypes
import json
import sys
import time

import numpy as np
import llama_cpp as L
from llama_cpp.llama_chat_format import Jinja2ChatFormatter


def request_prompt(seed_request):
    """src/synthesis/general.rs request_prompt, verbatim."""
    return (
        "Here is an example of a request a user sent to an AI assistant:\n\n<example>\n"
        + seed_request.strip()
        + "\n</example>\n\nWrite one new request that a different user might send: on the same topic and in the same style, "
        "but asking for something different. Reply with the new request only, without any preamble, quotes or answer."
    )


DIRECTIONS = [
    "narrower: about one specific detail of the first example's topic",
    "broader: about the wider subject the first example's topic belongs to",
    "harder: one that needs more steps, more knowledge or more careful reasoning to answer",
    "for another audience: written by a child, a beginner or an expert instead",
    "asking for another format: a list, a table, a short story, a step-by-step plan, a letter or code",
    "set in a concrete scenario, with names, numbers and circumstances",
    "mixing the first example's topic with the topic of one of the other examples",
    "from someone who doubts, disagrees or has a problem to solve rather than a question to ask",
]
M64 = (1 << 64) - 1


def mix_seed(a, b):
    """src/generation/batch.rs mix_seed (SplitMix64 finalizer)."""
    z = (a ^ ((b + 0x9E3779B97F4A7C15) & M64) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def candidate_seed(inference_seed, variant, row):
    """src/synthesis/candidates.rs candidate_seed."""
    first = mix_seed(inference_seed, row)
    return first if variant == 0 else mix_seed(first, 0x7661_7269_616E_7400 ^ variant)


def variant_prompt(seed_request, others, direction):
    """src/synthesis/general.rs variant_prompt, verbatim."""
    text = "Here are examples of requests users sent to an AI assistant:\n\n"
    for example in [seed_request] + others:
        text += "<example>\n" + example.strip() + "\n</example>\n\n"
    return text + (
        "Write one new request that a different user might send, in the spirit of the first example but "
        + direction
        + ". It must not be a rewording of any example. Reply with the new request only, without "
        "any preamble, quotes or answer."
    )


def stage1_prompt(users, row, variant, inference_seed):
    """The stage-1 prompt of candidate (row, variant), as General::request makes it."""
    if variant == 0:
        return request_prompt(users[row])
    rng = candidate_seed(inference_seed, variant, row)
    direction = DIRECTIONS[mix_seed(rng, 0xD1) % len(DIRECTIONS)]
    pool = sorted((mix_seed(rng, j), users[j]) for j in range(len(users)) if j != row and users[j] is not None)
    return variant_prompt(users[row], [u for _, u in pool[:2]], direction)


def share(total, ways, k):
    return total // ways + (1 if k < total % ways else 0)


def clean_request(text):
    """src/synthesis/general.rs clean_request."""
    t = text.strip()
    for marker in ["\nResponse:", "\nAnswer:", "\nExample:", "\nNote:"]:
        at = t.find(marker)
        if at >= 0:
            t = t[:at].rstrip()
    for tag in ["<example>", "</example>"]:
        while t.startswith(tag):
            t = t[len(tag):]
        while t.endswith(tag):
            t = t[: -len(tag)]
        t = t.strip()
    for label in ["New request:", "Request:", "new request:"]:
        if t.startswith(label):
            t = t[len(label):].strip()
    for o, c in [('"', '"'), ("\u201c", "\u201d"), ("'", "'")]:
        if len(t) >= 2 and t.startswith(o) and t.endswith(c):
            t = t[1:-1].strip()
    return t


class Engine:
    def __init__(self, model_path, threads, max_batch, n_ctx_per_seq):
        @L.llama_log_callback
        def quiet(level, text, user_data):
            pass

        L.llama_log_set(quiet, ctypes.c_void_p(0))
        self._quiet = quiet
        L.llama_backend_init()
        mparams = L.llama_model_default_params()
        if "use_extra_bufts" in {n for n, _ in L.llama_model_params._fields_}:
            mparams.use_extra_bufts = False  # the AMX kernels crash on these machines
        self.model = L.llama_model_load_from_file(model_path.encode(), mparams)
        if not self.model:
            sys.exit(f"error: llama.cpp could not load `{model_path}`")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cparams = L.llama_context_default_params()
        cparams.n_seq_max = max_batch
        cparams.kv_unified = False
        cparams.n_ctx = n_ctx_per_seq * max_batch
        cparams.n_batch = 2048
        cparams.n_ubatch = 512
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            sys.exit("error: llama.cpp could not create a context")
        self.memory = L.llama_get_memory(self.ctx)
        self.max_batch = max_batch
        self.batch = L.llama_batch_init(2048, 0, 1)

    def metadata(self, key):
        buf = ctypes.create_string_buffer(1 << 20)
        n = L.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode() if n >= 0 else None

    def token_text(self, token):
        return L.llama_vocab_get_text(self.vocab, token).decode()

    def tokenize(self, text):
        data = text.encode()
        out = (L.llama_token * (len(data) + 8))()
        n = L.llama_tokenize(self.vocab, data, len(data), out, len(out), False, True)
        return list(out[:n])

    def detokenize(self, tokens):
        pieces = []
        buf = ctypes.create_string_buffer(256)
        for t in tokens:
            n = L.llama_token_to_piece(self.vocab, t, buf, len(buf), 0, False)
            pieces.append(buf.raw[:n])
        return b"".join(pieces).decode("utf-8", errors="replace")

    def generate(self, prompts, max_new):
        """Continuous batching: returns ([(text, stopped)], generated token count) in prompt order;
        `stopped` is false for a generation cut off at `max_new` tokens."""
        queue = list(range(len(prompts)))[::-1]
        free = list(range(self.max_batch))[::-1]
        active = {}  # seq -> [index, tokens generated, next position, last token]
        outputs = [None] * len(prompts)
        generated_total = 0
        while queue or active:
            entries = []
            for seq, (i, out, pos, last) in active.items():
                entries.append((last, pos, seq, True))
            budget = 512
            while queue and free and len(prompts[queue[-1]]) <= budget:
                i = queue.pop()
                seq = free.pop()
                p = prompts[i]
                budget -= len(p)
                entries += [(t, k, seq, k == len(p) - 1) for k, t in enumerate(p)]
                active[seq] = [i, [], len(p), None]
            if not entries and queue:  # one prompt longer than the budget: feed it alone
                i = queue.pop()
                seq = free.pop()
                p = prompts[i]
                entries = [(t, k, seq, k == len(p) - 1) for k, t in enumerate(p)]
                active[seq] = [i, [], len(p), None]
            b = self.batch
            for k, (tok, pos, seq, logits) in enumerate(entries):
                b.token[k] = tok
                b.pos[k] = pos
                b.n_seq_id[k] = 1
                b.seq_id[k][0] = seq
                b.logits[k] = logits
            b.n_tokens = len(entries)
            if L.llama_decode(self.ctx, b) != 0:
                sys.exit("error: llama_decode failed")
            for k, (tok, pos, seq, logits) in enumerate(entries):
                if not logits:
                    continue
                row = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, k), shape=(self.n_vocab,))
                nxt = int(row.argmax())
                state = active[seq]
                stopped = L.llama_vocab_is_eog(self.vocab, nxt)
                if stopped:
                    done = True
                else:
                    state[1].append(nxt)
                    generated_total += 1
                    done = len(state[1]) >= max_new
                    if state[3] is not None:
                        state[2] += 1
                    state[3] = nxt
                if done:
                    outputs[state[0]] = (self.detokenize(state[1]), stopped)
                    L.llama_memory_seq_rm(self.memory, seq, -1, -1)
                    del active[seq]
                    free.append(seq)
        return outputs, generated_total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--seed-jsonl", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--num-samples", type=int, default=0, help="rows to make (0: one per seed row)")
    p.add_argument("--seed", type=int, default=42, help="the recipe's inferenceSeed (variant prompts)")
    args = p.parse_args()

    seeds = [json.loads(line) for line in open(args.seed_jsonl) if line.strip()]
    started = time.perf_counter()
    engine = Engine(args.model, args.threads, args.max_batch, 1024)
    template = Jinja2ChatFormatter(
        template=engine.metadata("tokenizer.chat_template"),
        eos_token=engine.token_text(L.llama_vocab_eos(engine.vocab)),
        bos_token=engine.token_text(L.llama_vocab_bos(engine.vocab)),
    )

    def render(messages):
        return engine.tokenize(template(messages=messages).prompt)

    def first(seed, role):
        return next((m["content"] for m in seed["messages"] if m["role"] == role and m["content"].strip()), None)

    users = [first(s, "user") for s in seeds]
    usable = [i for i, u in enumerate(users) if u is not None]
    rows = args.num_samples or len(usable)
    budget = 3 * args.num_samples if args.num_samples else len(usable)
    quota = {row: share(rows, len(usable), k) for k, row in enumerate(usable)}
    left = {row: share(budget, len(usable), k) for k, row in enumerate(usable)}
    next_variant = {row: 0 for row in usable}
    made, generations, prompt_tokens, generated = 0, 0, 0, 0
    while True:
        # One round: every seed row short of its quota tries as many new variants as it needs.
        round_ = []
        for row in usable:
            for _ in range(min(quota[row], left[row])):
                round_.append((row, next_variant[row]))
                next_variant[row] += 1
                left[row] -= 1
        if not round_:
            break
        stage1 = [render([{"role": "user", "content": stage1_prompt(users, r, v, args.seed)}]) for r, v in round_]
        requests, gen1 = engine.generate(stage1, args.max_new_tokens)
        answer_rows, answer_inputs = [], []
        for (row, _), (r, stopped) in zip(round_, requests):
            r = clean_request(r)
            if r and stopped:  # synth drops empty and cut-off requests
                system = first(seeds[row], "system")
                messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": r}]
                answer_rows.append(row)
                answer_inputs.append(render(messages))
        answers, gen2 = engine.generate(answer_inputs, args.max_new_tokens)
        for row, (text, stopped) in zip(answer_rows, answers):
            if stopped and text.strip():
                quota[row] -= 1
                made += 1
        generations += len(stage1) + len(answer_inputs)
        prompt_tokens += sum(map(len, stage1)) + sum(map(len, answer_inputs))
        generated += gen1 + gen2
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seedRows": len(seeds),
        "generations": generations,
        "keptRows": made,
        "promptTokens": prompt_tokens,
        "generatedTokens": generated,
        "seconds": round(seconds, 3),
        "rowsPerSecond": round((made if args.num_samples else len(seeds)) / seconds, 4),
    }))


if __name__ == "__main__":
    main()

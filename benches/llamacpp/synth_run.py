"""The work of `synth run` on a seed dataset, done by llama.cpp: the peer of the `synth run`
row of benches/compare.sh. Started by benches/llamacpp/run.sh --synth-run (its venv).

For every seed row, as synth's general synthesis does (src/synthesis/general.rs):
1. render [user: request prompt built from the seed's first user message] with the GGUF's
   chat template and generate a new request;
2. clean the request and render [system?, user: request] and generate the answer.
Both stages are greedy, stop at the model's end-of-generation tokens or after
--max-new-tokens, and run as continuous batches of up to --max-batch sequences sharing every
llama_decode (a finished sequence's slot takes the next prompt), as synth's scheduler does.

Prints one JSON line: seed rows, generations, prompt and generated tokens, seconds (from model
load to the last token, as synth's wall time), rows/s.
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

    stage1 = [render([{"role": "user", "content": request_prompt(first(s, "user"))}]) for s in seeds]
    requests, gen1 = engine.generate(stage1, args.max_new_tokens)
    answer_inputs = []
    for s, (r, stopped) in zip(seeds, requests):
        r = clean_request(r)
        if r and stopped:  # synth drops empty and cut-off requests
            system = first(s, "system")
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": r}]
            answer_inputs.append(render(messages))
    answers, gen2 = engine.generate(answer_inputs, args.max_new_tokens)
    kept = sum(1 for text, stopped in answers if stopped and text.strip())
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seedRows": len(seeds),
        "generations": len(stage1) + len(answer_inputs),
        "keptRows": kept,
        "promptTokens": sum(map(len, stage1)) + sum(map(len, answer_inputs)),
        "generatedTokens": gen1 + gen2,
        "seconds": round(seconds, 3),
        "rowsPerSecond": round(len(seeds) / seconds, 4),
    }))


if __name__ == "__main__":
    main()

"""The peer of benches/gpu_throughput.rs: PyTorch + transformers `generate` on the same
shapes. A model built from the same config.json with random bf16 weights made on the GPU;
`batch` prompts of `prompt` random token ids (no padding: all the same length); greedy;
exactly `new` new tokens each (min_new_tokens = max_new_tokens keeps the stop tokens out). Prints one
JSON line like the synth bench.

    python3 benches/cuda/hf_generate.py --config benches/cuda/llama-3.1-8b-instruct.json --batch 32
"""

import argparse
import json
import time

import torch
import transformers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()

    with open(args.config) as f:
        fields = json.load(f)
    config = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    start = time.perf_counter()
    with device:
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
        except TypeError:  # transformers before 4.56 calls it torch_dtype
            model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    model.eval()
    if device.type == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - start
    params = sum(t.numel() for t in model.parameters())

    def generate(batch, prompt, new):
        ids = torch.randint(0, config.vocab_size, (batch, prompt), device=device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=new,
                min_new_tokens=new,
                pad_token_id=0,
            )
        return out.shape[1] - prompt

    generate(min(args.batch, 4), 16, 4)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    new = generate(args.batch, args.prompt, args.new)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    generated = new * args.batch
    assert new == args.new, f"generated {new} tokens per row, expected {args.new}"
    print(json.dumps({
        "engine": f"transformers {transformers.__version__} / torch {torch.__version__}",
        "device": args.device,
        "dtype": str(dtype).removeprefix("torch."),
        "batch": args.batch,
        "prompt": args.prompt,
        "new": args.new,
        "params": params,
        "weight_bytes": params * (2 if dtype == torch.bfloat16 else 4),
        "load_s": load_s,
        "seconds": seconds,
        "generated": generated,
        "tok_s": generated / seconds,
        "torch_peak_allocated_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }), flush=True)


if __name__ == "__main__":
    main()

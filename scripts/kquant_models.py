"""Writes the K-quant test and benchmark models; run by scripts/kquant-models.sh."""

import ctypes
import os
import sys

import numpy as np

TYPES = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "Q5_0", "Q5_1"]
# hidden, layers, ffn, heads, kv heads: a Llama-3.2-1B-like body.
SHAPE_1B = (2048, 16, 8192, 32, 8)


def quantize(src, dst, ftype_name):
    import llama_cpp as L

    if os.path.exists(dst):
        return
    params = L.llama_model_quantize_default_params()
    params.ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{ftype_name}")
    params.allow_requantize = True
    params.nthread = 2
    tmp = dst + ".tmp"
    rc = L.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"error: llama_model_quantize {src} -> {ftype_name} returned {rc}")
    os.replace(tmp, dst)
    print(f"wrote {dst}", file=sys.stderr)


def copy_tokenizer(reader, writer):
    """Every tokenizer.* key of `reader` (SmolLM2's GGUF) into `writer`."""
    import gguf

    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                value = [field.parts[i][0].item() for i in field.data]
            writer.add_array(field.name, value)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(field.name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        else:
            writer.add_key_value(field.name, field.parts[field.data[0]][0].item(), vtype)


def random_1b(source, dst):
    """An F16 GGUF of the 1B shape with random weights and `source`'s tokenizer."""
    import gguf

    if os.path.exists(dst):
        return
    hidden, layers, ffn, heads, kv_heads = SHAPE_1B
    head_dim = hidden // heads
    reader = gguf.GGUFReader(source)
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    tmp = dst + ".tmp"
    writer = gguf.GGUFWriter(tmp, "llama")
    writer.add_name("random-1b")
    writer.add_context_length(8192)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    copy_tokenizer(reader, writer)
    rng = np.random.default_rng(1)

    def dense(name, rows, cols):
        writer.add_tensor(name, (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16))

    def norm(name):
        writer.add_tensor(name, np.ones(hidden if "q_norm" not in name else head_dim, dtype=np.float32))

    dense("token_embd.weight", vocab, hidden)
    for i in range(layers):
        p = f"blk.{i}"
        norm(f"{p}.attn_norm.weight")
        dense(f"{p}.attn_q.weight", heads * head_dim, hidden)
        dense(f"{p}.attn_k.weight", kv_heads * head_dim, hidden)
        dense(f"{p}.attn_v.weight", kv_heads * head_dim, hidden)
        dense(f"{p}.attn_output.weight", hidden, heads * head_dim)
        norm(f"{p}.ffn_norm.weight")
        dense(f"{p}.ffn_gate.weight", ffn, hidden)
        dense(f"{p}.ffn_up.weight", ffn, hidden)
        dense(f"{p}.ffn_down.weight", hidden, ffn)
    norm("output_norm.weight")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)
    print(f"wrote {dst}", file=sys.stderr)


def main():
    source, out = sys.argv[1], sys.argv[2]
    smollm2_only = "--smollm2-only" in sys.argv[3:]
    for t in TYPES:
        quantize(source, os.path.join(out, f"SmolLM2-135M-Instruct.{t}.gguf"), t)
    if smollm2_only:
        return
    f16 = os.path.join(out, "random-1b.F16.gguf")
    q4 = os.path.join(out, "random-1b.Q4_K_M.gguf")
    if not os.path.exists(q4):
        random_1b(source, f16)
        quantize(f16, q4, "Q4_K_M")
        os.remove(f16)


if __name__ == "__main__":
    main()

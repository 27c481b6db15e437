"""Writes the GGUF seeds of the fuzz corpus (tests/fuzz/corpus/gguf/): small, well-formed files
in the shapes real models use (versions 1-3, string/array/int metadata, F32/F16/Q8_0/Q4_1
tensors), for the mutator in tests/fuzz.rs to start from. Run once; the output is committed."""
import struct, sys, os

def s(text, wide=True):
    b = text.encode()
    return (struct.pack("<Q", len(b)) if wide else struct.pack("<I", len(b))) + b

def gguf(path, version, meta, tensors, alignment=32):
    wide = version > 1
    count = (lambda n: struct.pack("<Q", n)) if wide else (lambda n: struct.pack("<I", n))
    out = b"GGUF" + struct.pack("<I", version) + count(len(tensors)) + count(len(meta))
    for key, vtype, payload in meta:
        out += s(key, wide) + struct.pack("<I", vtype) + payload(wide)
    data, infos = b"", b""
    for name, dims, ggml_type, blob in tensors:
        while len(data) % alignment:
            data += b"\0"
        infos += s(name, wide) + struct.pack("<I", len(dims)) + b"".join(count(d) for d in dims)
        infos += struct.pack("<I", ggml_type) + struct.pack("<Q", len(data))
        data += blob
    out += infos
    while len(out) % alignment:
        out += b"\0"
    open(path, "wb").write(out + data)

u32 = lambda v: (4, lambda w: struct.pack("<I", v))
f32 = lambda v: (6, lambda w: struct.pack("<f", v))
string = lambda v: (8, lambda w: s(v, w))
def str_array(items):
    return (9, lambda w: struct.pack("<I", 8) + (struct.pack("<Q", len(items)) if w else struct.pack("<I", len(items))) + b"".join(s(i, w) for i in items))
def i32_array(items):
    return (9, lambda w: struct.pack("<I", 5) + (struct.pack("<Q", len(items)) if w else struct.pack("<I", len(items))) + b"".join(struct.pack("<i", i) for i in items))
m = lambda key, tv: (key, tv[0], tv[1])

out = sys.argv[1] if len(sys.argv) > 1 else "corpus/gguf"
os.makedirs(out, exist_ok=True)
llama_meta = [
    m("general.architecture", string("llama")),
    m("general.alignment", u32(32)),
    m("llama.block_count", u32(1)),
    m("llama.embedding_length", u32(8)),
    m("llama.rope.freq_base", f32(10000.0)),
    m("tokenizer.ggml.tokens", str_array(["<s>", "</s>", "a", "b", "ab"])),
    m("tokenizer.ggml.merges", str_array(["a b"])),
    m("tokenizer.ggml.token_type", i32_array([3, 3, 1, 1, 1])),
    m("tokenizer.chat_template", string("{% for m in messages %}{{ m.content }}{% endfor %}")),
]
gguf(f"{out}/llama_f32_v3.gguf", 3, llama_meta, [("token_embd.weight", [8, 5], 0, b"\x00\x00\x80\x3f" * 40)])
gguf(f"{out}/mixed_v2.gguf", 2, llama_meta[:4], [
    ("a.weight", [32], 8, b"\x00\x3c" + bytes(range(32))),                 # Q8_0: f16 scale + 32 i8
    ("b.weight", [32, 2], 3, (b"\x00\x3c\x00\x00" + bytes(16)) * 2),       # Q4_1: f16 d, f16 m, 16 nibbles
    ("c.weight", [4], 1, b"\x00\x3c" * 4),                                 # F16
])
gguf(f"{out}/v1_small.gguf", 1, [m("general.name", string("tiny"))], [("x", [2], 0, b"\x00" * 8)])

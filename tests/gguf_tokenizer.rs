//! The real Llama-3.1 and Qwen3 tokenizers written into a GGUF's metadata the way llama.cpp's
//! `convert_hf_to_gguf.py` writes them (byte-level BPE `gpt2`, the `llama-bpe` / `qwen2`
//! pre-tokenizer, control tokens typed 3) must tokenize exactly as their `tokenizer.json`: a
//! user's Q4_K_M file of either model then prompts the model with the same ids.

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use synth::model::{read_gguf, TextCodec};

const TEXTS: &[&str] = &[
    "Hello, world! What is 2+2? 12345678 3.14159",
    "  leading spaces,\ttabs\n\nnewlines\r\n and trailing   ",
    "fn main() {\n    println!(\"{}\", 1_000_000);\n}\n",
    "Ünïcödé: naïve café, Straße, 東京都, 你好世界, こんにちは, 안녕하세요, مرحبا, 🦀🚀👩‍💻",
    "<|im_start|>user\nHi<|im_end|>\n<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nok<|eot_id|>",
    "don't won't I'm you're they'll it's WE'RE I'D",
    "https://example.com/a?b=c&d=e#f — em dash – en dash … ellipsis «quotes»",
];

/// The GGUF tokenizer metadata of a `tokenizer.json`, as llama.cpp's converter writes it.
fn gguf_metadata(dir: &str, pre: &str, bos: Option<&str>, eos: &str, add_bos: bool) -> Vec<(String, Value)> {
    let path = common::assets().join(dir).join("tokenizer.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let added = json["added_tokens"].as_array().unwrap();
    let size = added.iter().map(|t| t["id"].as_u64().unwrap() as usize + 1).max().unwrap().max(vocab.len());
    let mut tokens: Vec<String> = (0..size).map(|i| format!("[PAD{i}]")).collect();
    let mut types = vec![1i32; size];
    for (token, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = token.clone();
    }
    for t in added {
        let id = t["id"].as_u64().unwrap() as usize;
        tokens[id] = t["content"].as_str().unwrap().to_string();
        types[id] = if t["special"] == true { 3 } else { 4 };
    }
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            pair => Value::String(format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap())),
        })
        .collect();
    let id_of = |text: &str| tokens.iter().position(|t| t == text).unwrap() as u32;
    let mut meta = vec![
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String(pre.into())),
        ("tokenizer.ggml.eos_token_id".to_string(), Value::U32(id_of(eos))),
        ("tokenizer.ggml.add_bos_token".to_string(), Value::Bool(add_bos)),
        ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types.into_iter().map(Value::I32).collect())),
    ];
    if let Some(bos) = bos {
        meta.push(("tokenizer.ggml.bos_token_id".to_string(), Value::U32(id_of(bos))));
    }
    meta.push(("tokenizer.ggml.tokens".to_string(), Value::Array(tokens.into_iter().map(Value::String).collect())));
    meta
}

fn check(dir: &str, pre: &str, bos: Option<&str>, eos: &str, add_bos: bool) {
    let meta = gguf_metadata(dir, pre, bos, eos, add_bos);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.gguf");
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &refs, &[]).unwrap();
    let from_gguf = TextCodec::from_gguf(&read_gguf(&path).unwrap()).unwrap();
    let (from_json, _) = common::hf_text(dir);
    for text in TEXTS {
        for special in [true, false] {
            let want = from_json.encode(text, special).unwrap();
            let got = from_gguf.encode(text, special).unwrap();
            assert_eq!(got, want, "{dir}: {text:?} (add_special_tokens {special})");
            assert_eq!(from_gguf.decode(&got, false).unwrap(), from_json.decode(&want, false).unwrap());
        }
    }
    assert_eq!(from_gguf.eos().map(|t| t.text.clone()).as_deref(), Some(eos));
}

#[test]
fn llama_3_1_tokenizer_from_gguf_metadata_matches_tokenizer_json() {
    check("llama3_1", "llama-bpe", Some("<|begin_of_text|>"), "<|eot_id|>", true);
}

#[test]
fn qwen3_tokenizer_from_gguf_metadata_matches_tokenizer_json() {
    check("qwen3", "qwen2", None, "<|im_end|>", false);
}

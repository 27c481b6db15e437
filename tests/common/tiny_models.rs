//! Tiny random-weight checkpoints written by the tests, laid out like the Hugging Face cache:
//! `models--{org}--{name}/blobs/<sha256>`, `snapshots/<rev>/<file>` links into `blobs/`, and
//! `refs/main`. Weights come from a small LCG, so every run writes the same bytes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Llama 3.1 shapes in miniature: grouped-query attention (8 heads, 2 KV heads, head_dim 8)
/// and `llama3` RoPE scaling. `original_max_position_embeddings` 256 puts the four RoPE
/// wavelengths (6, 167, 4450, 118000 tokens) in all three of the scaling's bands: kept
/// (< 64), interpolated (64..256) and slowed by `factor` (> 256).
pub fn llama_config(tie_word_embeddings: bool) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256
        },
        "tie_word_embeddings": tie_word_embeddings,
        "attention_bias": false,
        "mlp_bias": false,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

/// Qwen3 in miniature: `head_dim` 32 while `hidden_size / num_attention_heads` is 16, so any
/// code that derives the head size from the hidden size fails loudly.
pub fn qwen3_config() -> Value {
    json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 64,
        "head_dim": 32,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": null,
        "tie_word_embeddings": true,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "sliding_window": null,
        "use_sliding_window": false,
        "max_window_layers": 4,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

/// A checkpoint written under a hub cache directory.
pub struct TinyModel {
    /// The hub cache root (what `HF_HUB_CACHE` would name).
    pub hub: PathBuf,
    /// `org/name`.
    pub repo: String,
    pub revision: String,
    /// `snapshots/<revision>`.
    pub snapshot: PathBuf,
    /// The names of the files in the snapshot, in the order written.
    pub files: Vec<String>,
}

impl TinyModel {
    pub fn config_path(&self) -> PathBuf {
        self.snapshot.join("config.json")
    }

    pub fn config_json(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap()
    }

    /// Adds a file the way the hub client does: content in `blobs/<sha256>`, a relative link
    /// to it in the snapshot.
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) {
        let repo_dir = self.snapshot.parent().unwrap().parent().unwrap();
        let sha = hex(&Sha256::digest(bytes));
        std::fs::write(repo_dir.join("blobs").join(&sha), bytes).unwrap();
        let link = self.snapshot.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("../../blobs").join(&sha), &link).unwrap();
        self.files.push(name.to_string());
    }
}

/// Writes `config` and random weights for it as `repo` under `hub`, in one `model.safetensors`
/// (`shards == 1`) or in `shards` files with a `model.safetensors.index.json`.
pub fn write(hub: &Path, repo: &str, config: &Value, shards: usize) -> TinyModel {
    let config_text = serde_json::to_string_pretty(config).unwrap();
    let revision = hex(&Sha256::digest(format!("{repo}\n{config_text}\n{shards}").as_bytes()))[..40].to_string();
    let repo_dir = hub.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = repo_dir.join("snapshots").join(&revision);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), &revision).unwrap();
    let mut model = TinyModel { hub: hub.to_path_buf(), repo: repo.to_string(), revision, snapshot, files: Vec::new() };
    model.add_file("config.json", config_text.as_bytes());

    let tensors = weights(config);
    let scratch = tempfile::tempdir().unwrap();
    if shards == 1 {
        model.add_file("model.safetensors", &safetensors_bytes(&tensors, scratch.path()));
        return model;
    }
    let per_shard = tensors.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    let mut total_size = 0;
    for (i, group) in tensors.chunks(per_shard).enumerate() {
        let name = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        for (tensor, value) in group {
            weight_map.insert(tensor.clone(), Value::String(name.clone()));
            total_size += value.elem_count() * 4;
        }
        model.add_file(&name, &safetensors_bytes(group, scratch.path()));
    }
    let index = json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
    model.add_file("model.safetensors.index.json", serde_json::to_string_pretty(&index).unwrap().as_bytes());
    model
}

/// Every tensor the config calls for, in checkpoint order (embeddings, layers, final norm,
/// output), as f32 drawn uniformly around its centre.
///
/// Scales keep activations in a sane range: projections ±0.1, except Llama's query and key
/// projections at ±0.3 so attention scores spread over a few units and attention depends on
/// position rather than averaging uniformly; norm weights 1 ± 0.1 so a swapped or missing
/// norm shows.
pub fn weights(config: &Value) -> Vec<(String, Tensor)> {
    let n = |key: &str| config[key].as_u64().unwrap_or_else(|| panic!("config field `{key}`")) as usize;
    let (hidden, inter, vocab, layers, heads, kv_heads) = (
        n("hidden_size"),
        n("intermediate_size"),
        n("vocab_size"),
        n("num_hidden_layers"),
        n("num_attention_heads"),
        n("num_key_value_heads"),
    );
    let head_dim = config["head_dim"].as_u64().map_or(hidden / heads, |d| d as usize);
    let qwen3 = config["model_type"] == "qwen3";
    let qk_scale = if qwen3 { 0.1 } else { 0.3 };
    let mut rng = Lcg(0x5EED ^ (hidden * 31 + layers * 7 + head_dim) as u64);
    let mut out = Vec::new();
    let mut add = |name: String, shape: &[usize], centre: f32, spread: f32| {
        let count = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| centre + spread * rng.uniform()).collect();
        out.push((name, Tensor::from_vec(values, shape, &Device::Cpu).unwrap()));
    };
    add("model.embed_tokens.weight".into(), &[vocab, hidden], 0.0, 0.1);
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        add(format!("{p}.input_layernorm.weight"), &[hidden], 1.0, 0.1);
        add(format!("{p}.self_attn.q_proj.weight"), &[heads * head_dim, hidden], 0.0, qk_scale);
        add(format!("{p}.self_attn.k_proj.weight"), &[kv_heads * head_dim, hidden], 0.0, qk_scale);
        add(format!("{p}.self_attn.v_proj.weight"), &[kv_heads * head_dim, hidden], 0.0, 0.1);
        add(format!("{p}.self_attn.o_proj.weight"), &[hidden, heads * head_dim], 0.0, 0.1);
        if qwen3 {
            add(format!("{p}.self_attn.q_norm.weight"), &[head_dim], 1.0, 0.1);
            add(format!("{p}.self_attn.k_norm.weight"), &[head_dim], 1.0, 0.1);
        }
        add(format!("{p}.post_attention_layernorm.weight"), &[hidden], 1.0, 0.1);
        add(format!("{p}.mlp.gate_proj.weight"), &[inter, hidden], 0.0, 0.1);
        add(format!("{p}.mlp.up_proj.weight"), &[inter, hidden], 0.0, 0.1);
        add(format!("{p}.mlp.down_proj.weight"), &[hidden, inter], 0.0, 0.1);
    }
    add("model.norm.weight".into(), &[hidden], 1.0, 0.1);
    if config["tie_word_embeddings"] != true {
        add("lm_head.weight".into(), &[vocab, hidden], 0.0, 0.1);
    }
    out
}

fn safetensors_bytes(tensors: &[(String, Tensor)], scratch: &Path) -> Vec<u8> {
    let path = scratch.join("shard.safetensors");
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    std::fs::read(&path).unwrap()
}

/// Knuth's MMIX LCG; the top 24 bits give a uniform f32 in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

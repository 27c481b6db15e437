//! Qwen3 family (dense): the Llama block plus a per-head RMSNorm on queries and keys before
//! RoPE, an explicit `head_dim`, and RoPE over halves. <https://arxiv.org/abs/2505.09388>

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::decoder::{Decoder, Dims, Rope};
use super::weights::{activation_dtype, gguf_decoder, hf_decoder, parse_config, Gguf, HfShape};

/// The fields of a Hugging Face Qwen3 `config.json` the forward needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    #[serde(default)]
    pub attention_bias: bool,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

/// Inverse frequencies computed as candle-transformers' Qwen3 does (f64 power, then f32).
fn inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim).step_by(2).map(|i| 1f32 / theta.powf(i as f64 / head_dim as f64) as f32).collect()
}

pub fn from_safetensors(config_json: &str, vb: VarBuilder, device: &Device) -> Result<Decoder> {
    let cfg: Config = parse_config(config_json)?;
    if cfg.attention_bias {
        bail!("Qwen3 checkpoints with attention biases are not supported");
    }
    if cfg.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        bail!("Qwen3 `rope_scaling` (YaRN) is not supported yet: remove it from config.json to run within the native context");
    }
    let dims = Dims {
        hidden: cfg.hidden_size,
        n_layers: cfg.num_hidden_layers,
        n_heads: cfg.num_attention_heads,
        n_kv_heads: cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
        vocab: cfg.vocab_size,
        context_len: cfg.max_position_embeddings,
    };
    dims.check()?;
    let dtype = activation_dtype(device);
    let rope = Rope::new(&inv_freq(cfg.head_dim, cfg.rope_theta), dims.context_len, false, dtype, device)?;
    let shape = HfShape {
        dims,
        intermediate: cfg.intermediate_size,
        eps: cfg.rms_norm_eps,
        qk_norm: true,
        tied: cfg.tie_word_embeddings,
        rope,
    };
    hf_decoder(&vb, shape, device)
}

/// GGUF Qwen3 (llama.cpp's `qwen3` architecture; Q and K are not permuted, RoPE over halves).
pub fn from_gguf(g: &mut Gguf) -> Result<Decoder> {
    let n_heads = g.usize("qwen3.attention.head_count")?;
    let hidden = g.usize("qwen3.embedding_length")?;
    let head_dim = g.usize("qwen3.attention.key_length").unwrap_or(hidden.checked_div(n_heads).unwrap_or(0));
    let eps = g.f32("qwen3.attention.layer_norm_rms_epsilon")? as f64;
    let theta = g.f32("qwen3.rope.freq_base").unwrap_or(1_000_000.0) as f64;
    let embed_q = g.qtensor("token_embd.weight")?;
    let dims = Dims {
        hidden,
        n_layers: g.usize("qwen3.block_count")?,
        n_heads,
        n_kv_heads: g.usize("qwen3.attention.head_count_kv").unwrap_or(n_heads),
        head_dim,
        vocab: embed_q.shape().dims()[0],
        context_len: g.usize("qwen3.context_length")?,
    };
    dims.check()?;
    let rope = Rope::new(&inv_freq(head_dim, theta), dims.context_len, false, DType::F32, &g.device)?;
    gguf_decoder(g, dims, eps, true, embed_q, rope)
}

//! Qwen3 family (dense): the Llama block plus a per-head RMSNorm on queries and keys before
//! RoPE, an explicit `head_dim`, and RoPE over halves. <https://arxiv.org/abs/2505.09388>

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::decoder::{Attention, Decoder, Dims, Layer, Linear, Mlp, Rope};
use super::{activation_dtype, dense_linear, dense_norm, parse_config, Gguf};

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
    let dtype = activation_dtype(device);
    let rope = Rope::new(&inv_freq(cfg.head_dim, cfg.rope_theta), dims.context_len, false, dtype, device)?;
    let (h, hd) = (dims.hidden, dims.head_dim);
    let (qd, kvd) = (dims.n_heads * hd, dims.n_kv_heads * hd);
    let eps = cfg.rms_norm_eps;

    let m = vb.pp("model");
    let embed = m.pp("embed_tokens").get((dims.vocab, h), "weight")?;
    let mut layers = Vec::with_capacity(dims.n_layers);
    for i in 0..dims.n_layers {
        let l = m.pp(format!("layers.{i}"));
        let a = l.pp("self_attn");
        let p = l.pp("mlp");
        layers.push(Layer {
            attn_norm: dense_norm(&l.pp("input_layernorm"), h, eps)?,
            attn: Attention {
                q: dense_linear(&a.pp("q_proj"), qd, h)?,
                k: dense_linear(&a.pp("k_proj"), kvd, h)?,
                v: dense_linear(&a.pp("v_proj"), kvd, h)?,
                o: dense_linear(&a.pp("o_proj"), h, qd)?,
                q_norm: Some(dense_norm(&a.pp("q_norm"), hd, eps)?),
                k_norm: Some(dense_norm(&a.pp("k_norm"), hd, eps)?),
            },
            mlp_norm: dense_norm(&l.pp("post_attention_layernorm"), h, eps)?,
            mlp: Mlp {
                gate: dense_linear(&p.pp("gate_proj"), cfg.intermediate_size, h)?,
                up: dense_linear(&p.pp("up_proj"), cfg.intermediate_size, h)?,
                down: dense_linear(&p.pp("down_proj"), h, cfg.intermediate_size)?,
            },
        });
    }
    let lm_head = if cfg.tie_word_embeddings {
        Linear::dense(embed.clone())
    } else {
        dense_linear(&vb.pp("lm_head"), dims.vocab, h)?
    };
    Ok(Decoder { norm: dense_norm(&m.pp("norm"), h, eps)?, embed, layers, lm_head, rope, dims, dtype, device: device.clone() })
}

/// GGUF Qwen3 (llama.cpp's `qwen3` architecture; Q and K are not permuted, RoPE over halves).
pub fn from_gguf(g: &mut Gguf) -> Result<Decoder> {
    let n_heads = g.usize("qwen3.attention.head_count")?;
    let hidden = g.usize("qwen3.embedding_length")?;
    let head_dim = g.usize("qwen3.attention.key_length").unwrap_or(hidden / n_heads);
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
    let device = g.device.clone();
    // Quantized matmuls take f32 activations on every device.
    let dtype = DType::F32;
    let rope = Rope::new(&inv_freq(head_dim, theta), dims.context_len, false, dtype, &device)?;
    let mut layers = Vec::with_capacity(dims.n_layers);
    for i in 0..dims.n_layers {
        let p = format!("blk.{i}");
        layers.push(Layer {
            attn_norm: g.norm(&format!("{p}.attn_norm.weight"), eps)?,
            attn: Attention {
                q: g.linear(&format!("{p}.attn_q.weight"))?,
                k: g.linear(&format!("{p}.attn_k.weight"))?,
                v: g.linear(&format!("{p}.attn_v.weight"))?,
                o: g.linear(&format!("{p}.attn_output.weight"))?,
                q_norm: Some(g.norm(&format!("{p}.attn_q_norm.weight"), eps)?),
                k_norm: Some(g.norm(&format!("{p}.attn_k_norm.weight"), eps)?),
            },
            mlp_norm: g.norm(&format!("{p}.ffn_norm.weight"), eps)?,
            mlp: Mlp {
                gate: g.linear(&format!("{p}.ffn_gate.weight"))?,
                up: g.linear(&format!("{p}.ffn_up.weight"))?,
                down: g.linear(&format!("{p}.ffn_down.weight"))?,
            },
        });
    }
    let embed = embed_q.dequantize(&device)?;
    let lm_head = if g.has_tensor("output.weight") {
        g.linear("output.weight")?
    } else {
        Linear::from_qtensor(embed_q)?
    };
    Ok(Decoder { norm: g.norm("output_norm.weight", eps)?, embed, layers, lm_head, rope, dims, dtype, device })
}

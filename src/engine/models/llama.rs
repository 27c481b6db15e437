//! Llama family (Llama 2/3/3.1/3.2, SmolLM2): RMSNorm, SwiGLU MLP, grouped-query attention,
//! RoPE with Llama 3.1's `llama3` frequency scaling, tied or untied output embeddings.
//! Paper: <https://arxiv.org/abs/2302.13971>; scaling: Meta's Llama 3.1 reference code.

use anyhow::{bail, Result};
use candle_core::Device;
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::decoder::{default_inv_freq, Attention, Decoder, Dims, Layer, Linear, Mlp, Rope};
use super::{activation_dtype, dense_linear, dense_norm, parse_config, Gguf};

/// The fields of a Hugging Face Llama `config.json` the forward needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default)]
    pub factor: f32,
    #[serde(default)]
    pub low_freq_factor: f32,
    #[serde(default)]
    pub high_freq_factor: f32,
    #[serde(default)]
    pub original_max_position_embeddings: usize,
}

/// Llama 3.1 scaling: long wavelengths are slowed by `factor`, short ones kept, the band
/// between interpolated smoothly.
pub fn llama3_inv_freq(inv_freq: Vec<f32>, s: &RopeScaling) -> Vec<f32> {
    let old = s.original_max_position_embeddings as f32;
    let low_freq_wavelen = old / s.low_freq_factor;
    let high_freq_wavelen = old / s.high_freq_factor;
    inv_freq
        .into_iter()
        .map(|freq| {
            let wavelen = 2. * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                freq
            } else if wavelen > low_freq_wavelen {
                freq / s.factor
            } else {
                let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1. - smooth) * freq / s.factor + smooth * freq
            }
        })
        .collect()
}

pub fn from_safetensors(config_json: &str, vb: VarBuilder, device: &Device) -> Result<Decoder> {
    let cfg: Config = parse_config(config_json)?;
    if cfg.attention_bias || cfg.mlp_bias {
        bail!("Llama checkpoints with attention or MLP biases are not supported");
    }
    let head_dim = cfg.head_dim.unwrap_or(cfg.hidden_size / cfg.num_attention_heads);
    let dims = Dims {
        hidden: cfg.hidden_size,
        n_layers: cfg.num_hidden_layers,
        n_heads: cfg.num_attention_heads,
        n_kv_heads: cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads),
        head_dim,
        vocab: cfg.vocab_size,
        context_len: cfg.max_position_embeddings,
    };
    let mut inv_freq = default_inv_freq(head_dim, cfg.rope_theta);
    match &cfg.rope_scaling {
        Some(s) if s.rope_type == "llama3" => inv_freq = llama3_inv_freq(inv_freq, s),
        Some(s) if s.rope_type == "default" => {}
        Some(s) => bail!("rope_scaling type `{}` is not supported (supported: `llama3`, `default`)", s.rope_type),
        None => {}
    }
    let dtype = activation_dtype(device);
    let rope = Rope::new(&inv_freq, dims.context_len, false, dtype, device)?;

    let m = vb.pp("model");
    let embed = m.pp("embed_tokens").get((dims.vocab, dims.hidden), "weight")?;
    let (h, kvd, qd) = (dims.hidden, dims.n_kv_heads * head_dim, dims.n_heads * head_dim);
    let mut layers = Vec::with_capacity(dims.n_layers);
    for i in 0..dims.n_layers {
        let l = m.pp(format!("layers.{i}"));
        let a = l.pp("self_attn");
        let p = l.pp("mlp");
        layers.push(Layer {
            attn_norm: dense_norm(&l.pp("input_layernorm"), h, cfg.rms_norm_eps)?,
            attn: Attention {
                q: dense_linear(&a.pp("q_proj"), qd, h)?,
                k: dense_linear(&a.pp("k_proj"), kvd, h)?,
                v: dense_linear(&a.pp("v_proj"), kvd, h)?,
                o: dense_linear(&a.pp("o_proj"), h, qd)?,
                q_norm: None,
                k_norm: None,
            },
            mlp_norm: dense_norm(&l.pp("post_attention_layernorm"), h, cfg.rms_norm_eps)?,
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
    Ok(Decoder {
        norm: dense_norm(&m.pp("norm"), h, cfg.rms_norm_eps)?,
        embed,
        layers,
        lm_head,
        rope,
        dims,
        dtype,
        device: device.clone(),
    })
}

/// GGUF Llama (llama.cpp's `llama` architecture). llama.cpp's converter permutes Q and K so
/// RoPE pairs are interleaved; Llama 3.1 files carry their scaled frequencies as `rope_freqs.weight`.
pub fn from_gguf(g: &mut Gguf) -> Result<Decoder> {
    let n_heads = g.usize("llama.attention.head_count")?;
    let hidden = g.usize("llama.embedding_length")?;
    let head_dim = g.usize("llama.rope.dimension_count").unwrap_or(hidden / n_heads);
    let eps = g.f32("llama.attention.layer_norm_rms_epsilon")? as f64;
    let theta = g.f32("llama.rope.freq_base").unwrap_or(10_000.0);
    let embed_q = g.qtensor("token_embd.weight")?;
    let vocab = embed_q.shape().dims()[0];
    let dims = Dims {
        hidden,
        n_layers: g.usize("llama.block_count")?,
        n_heads,
        n_kv_heads: g.usize("llama.attention.head_count_kv").unwrap_or(n_heads),
        head_dim,
        vocab,
        context_len: g.usize("llama.context_length")?,
    };
    let mut inv_freq = default_inv_freq(head_dim, theta);
    if g.has_tensor("rope_freqs.weight") {
        let factors = g.dense("rope_freqs.weight")?.to_vec1::<f32>()?;
        if factors.len() != inv_freq.len() {
            bail!("`rope_freqs.weight` has {} values, expected {}", factors.len(), inv_freq.len());
        }
        inv_freq.iter_mut().zip(factors).for_each(|(f, s)| *f /= s);
    }
    let device = g.device.clone();
    // Quantized matmuls take f32 activations on every device.
    let dtype = candle_core::DType::F32;
    let rope = Rope::new(&inv_freq, dims.context_len, true, dtype, &device)?;

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
                q_norm: None,
                k_norm: None,
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

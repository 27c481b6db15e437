//! Llama family (Llama 2/3/3.1/3.2, SmolLM2): RMSNorm, SwiGLU MLP, grouped-query attention,
//! RoPE with Llama 3.1's `llama3` frequency scaling, tied or untied output embeddings.
//! Paper: <https://arxiv.org/abs/2302.13971>; scaling: Meta's Llama 3.1 reference code.

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::decoder::{default_inv_freq, Decoder, Dims, Rope};
use super::weights::{activation_dtype, gguf_decoder, hf_decoder, parse_config, Gguf, HfShape};

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
    let head_dim = cfg.head_dim.unwrap_or(cfg.hidden_size.checked_div(cfg.num_attention_heads).unwrap_or(0));
    let dims = Dims {
        hidden: cfg.hidden_size,
        n_layers: cfg.num_hidden_layers,
        n_heads: cfg.num_attention_heads,
        n_kv_heads: cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads),
        head_dim,
        vocab: cfg.vocab_size,
        context_len: cfg.max_position_embeddings,
    };
    dims.check()?;
    let mut inv_freq = default_inv_freq(head_dim, cfg.rope_theta);
    match &cfg.rope_scaling {
        Some(s) if s.rope_type == "llama3" => inv_freq = llama3_inv_freq(inv_freq, s),
        Some(s) if s.rope_type == "default" => {}
        Some(s) => bail!("rope_scaling type `{}` is not supported (supported: `llama3`, `default`)", s.rope_type),
        None => {}
    }
    let dtype = activation_dtype(device);
    let rope = Rope::new(&inv_freq, dims.context_len, false, dtype, device)?;

    let shape = HfShape {
        dims,
        intermediate: cfg.intermediate_size,
        eps: cfg.rms_norm_eps,
        qk_norm: false,
        tied: cfg.tie_word_embeddings,
        rope,
    };
    hf_decoder(&vb, shape, device)
}

/// GGUF Llama (llama.cpp's `llama` architecture). llama.cpp's converter permutes Q and K so
/// RoPE pairs are interleaved; Llama 3.1 files carry their scaled frequencies as `rope_freqs.weight`.
pub fn from_gguf(g: &mut Gguf) -> Result<Decoder> {
    let n_heads = g.usize("llama.attention.head_count")?;
    let hidden = g.usize("llama.embedding_length")?;
    let head_dim = g.usize("llama.rope.dimension_count").unwrap_or(hidden.checked_div(n_heads).unwrap_or(0));
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
    dims.check()?;
    let mut inv_freq = default_inv_freq(head_dim, theta);
    if g.has_tensor("rope_freqs.weight") {
        let factors = g.dense("rope_freqs.weight")?.to_vec1::<f32>()?;
        if factors.len() != inv_freq.len() {
            bail!("`rope_freqs.weight` has {} values, expected {}", factors.len(), inv_freq.len());
        }
        inv_freq.iter_mut().zip(factors).for_each(|(f, s)| *f /= s);
    }
    let rope = Rope::new(&inv_freq, dims.context_len, true, DType::F32, &g.device)?;
    gguf_decoder(g, dims, eps, false, embed_q, rope)
}

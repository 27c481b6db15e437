//! The decoder-only transformer shared by the Llama and Qwen3 families, run as one batch of
//! sequences that each sit at their own position.
//!
//! A step takes a mixed batch: prefill chunks and single decode tokens from many sequences.
//! All their tokens are flattened into one `[tokens, hidden]` matrix, so every projection and
//! MLP runs as one matmul whatever the rows' lengths; RoPE is applied per token from a position
//! table; only attention is per row, against that row's KV-cache slot. Logits are computed only
//! for rows that will be sampled this step.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

use crate::engine::kv_cache::KvCache;
use crate::engine::quant::PackedLinear;

/// A linear layer without bias: quantized (GGUF) or dense (safetensors) behind candle's
/// QMatMul, or GGUF weights repacked for [`PackedLinear`]'s CPU kernels, which give the same
/// bits faster.
#[derive(Debug, Clone)]
pub enum Linear {
    Candle(QMatMul),
    Packed(Arc<PackedLinear>),
}

impl Linear {
    /// The fastest bit-identical matmul for `w`: packed where supported, candle's otherwise.
    pub fn from_qtensor(w: QTensor) -> Result<Self> {
        Ok(match PackedLinear::new(&w)? {
            Some(packed) => Self::Packed(Arc::new(packed)),
            None => Self::Candle(QMatMul::from_qtensor(w)?),
        })
    }

    pub fn dense(w: Tensor) -> Self {
        Self::Candle(QMatMul::Tensor(w))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(m) => m.forward(x),
            Self::Packed(p) => p.forward(x),
        }
    }

    /// `x` through several layers that read it (q, k, v; gate, up): packed layers quantize it
    /// once, in one parallel region.
    pub fn forward_shared<const N: usize>(layers: [&Linear; N], x: &Tensor) -> Result<[Tensor; N]> {
        let packed: Option<Vec<&PackedLinear>> = layers
            .iter()
            .map(|l| match l {
                Self::Packed(p) => Some(p.as_ref()),
                Self::Candle(_) => None,
            })
            .collect();
        let outs = match packed {
            Some(packed) => PackedLinear::forward_shared(&packed, x)?,
            None => layers.iter().map(|l| l.forward(x)).collect::<Result<Vec<_>>>()?,
        };
        Ok(outs.try_into().expect("one output per layer"))
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)
    }
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [gate, up] = Linear::forward_shared([&self.gate, &self.up], x)?;
        self.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// Qwen3 normalizes each head's queries and keys before RoPE.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub attn_norm: RmsNorm,
    pub attn: Attention,
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
}

/// The shape numbers the forward needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    /// The model's trained context length: no sequence may grow past it.
    pub context_len: usize,
}

/// Rotary position tables, `[positions, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
    /// GGUF Llama weights are permuted for interleaved pairs (2i, 2i+1); Hugging Face
    /// checkpoints and Qwen use halves (i, i + d/2).
    pub interleaved: bool,
}

impl Rope {
    /// Builds the tables from inverse frequencies, in f32 as candle-transformers does, so
    /// results match its models to the last bit where the math is the same.
    pub fn new(inv_freq: &[f32], positions: usize, interleaved: bool, dtype: DType, device: &Device) -> Result<Self> {
        let half = inv_freq.len();
        let mut angles = Vec::with_capacity(positions * half);
        for p in 0..positions {
            angles.extend(inv_freq.iter().map(|f| p as f32 * f));
        }
        let angles = Tensor::from_vec(angles, (positions, half), device)?;
        Ok(Self { cos: angles.cos()?.to_dtype(dtype)?, sin: angles.sin()?.to_dtype(dtype)?, interleaved })
    }

    /// `x`: `[1, heads, tokens, head_dim]`; `cos`/`sin`: the rows for each token's position.
    fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)
        }
    }
}

/// Inverse RoPE frequencies `1 / theta^(2i/d)`, as f32 like candle-transformers' Llama.
pub fn default_inv_freq(head_dim: usize, theta: f32) -> Vec<f32> {
    (0..head_dim).step_by(2).map(|i| 1f32 / theta.powf(i as f32 / head_dim as f32)).collect()
}

/// One sequence's part of a step: `tokens` go at positions `start..start + tokens.len()` of
/// cache slot `slot`. `logits`: whether the caller wants the last token's logits.
#[derive(Debug, Clone)]
pub struct SeqStep<'a> {
    pub slot: usize,
    pub start: usize,
    pub tokens: &'a [u32],
    pub logits: bool,
}

#[derive(Debug, Clone)]
pub struct Decoder {
    pub dims: Dims,
    /// Dense `[vocab, hidden]` embedding table.
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    pub rope: Rope,
    /// Activation and KV-cache dtype.
    pub dtype: DType,
    pub device: Device,
}

impl Decoder {
    pub fn new_cache(&self, slots: usize, max_len: usize) -> Result<KvCache> {
        let d = &self.dims;
        KvCache::new(d.n_layers, d.n_kv_heads, d.head_dim, slots, max_len, self.dtype, &self.device)
    }

    /// Runs one step. Returns f32 logits `[rows wanting logits, vocab]`, in batch order.
    pub fn forward(&self, batch: &[SeqStep], cache: &mut KvCache) -> Result<Tensor> {
        // On CPU this runs the step on a worker of candle's thread pool, so the many small
        // parallel ops of a step (rope, softmax, norms) start there instead of each handing its
        // work over from this thread and sleeping until it is done.
        self.device.with_context(|| self.forward_step(batch, cache))
    }

    fn forward_step(&self, batch: &[SeqStep], cache: &mut KvCache) -> Result<Tensor> {
        let d = &self.dims;
        let total: usize = batch.iter().map(|s| s.tokens.len()).sum();
        if total == 0 {
            candle_core::bail!("empty batch");
        }
        let mut ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        for s in batch {
            let end = s.start + s.tokens.len();
            if end > cache.max_len() || end > d.context_len {
                candle_core::bail!("sequence grows to {end} tokens, past the cache ({}) or context ({})", cache.max_len(), d.context_len);
            }
            ids.extend_from_slice(s.tokens);
            positions.extend((s.start..end).map(|p| p as u32));
        }
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let cos = self.rope.cos.index_select(&positions, 0)?;
        let sin = self.rope.sin.index_select(&positions, 0)?;

        let mut x = self.embed.index_select(&ids, 0)?.to_dtype(self.dtype)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let h = self.attention(index, &layer.attn, &h, batch, &cos, &sin, cache)?;
            x = (x + h)?;
            let h = layer.mlp.forward(&layer.mlp_norm.forward(&x)?)?;
            x = (x + h)?;
        }

        let mut last = Vec::new();
        let mut offset = 0u32;
        for s in batch {
            offset += s.tokens.len() as u32;
            if s.logits {
                last.push(offset - 1);
            }
        }
        if last.is_empty() {
            return Tensor::zeros((0, d.vocab), DType::F32, &self.device);
        }
        let n = last.len();
        let last = Tensor::from_vec(last, n, &self.device)?;
        let x = self.norm.forward(&x.index_select(&last, 0)?)?;
        self.lm_head.forward(&x)?.to_dtype(DType::F32)
    }

    /// Self-attention for every row of the batch; `x` is `[tokens, hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn attention(&self, layer: usize, attn: &Attention, x: &Tensor, batch: &[SeqStep], cos: &Tensor, sin: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let d = &self.dims;
        let total = x.dim(0)?;
        let (nh, nkv, hd) = (d.n_heads, d.n_kv_heads, d.head_dim);
        let group = nh / nkv;

        let [q, k, v] = Linear::forward_shared([&attn.q, &attn.k, &attn.v], x)?;
        let mut q = q.reshape((total, nh, hd))?;
        let mut k = k.reshape((total, nkv, hd))?;
        let v = v.reshape((total, nkv, hd))?;
        if let Some(norm) = &attn.q_norm {
            q = norm.forward(&q)?;
        }
        if let Some(norm) = &attn.k_norm {
            k = norm.forward(&k)?;
        }
        // [1, heads, tokens, hd] is the layout candle's rope kernels take; each token gets the
        // cos/sin row of its own position.
        let q = self.rope.apply(&q.unsqueeze(0)?.transpose(1, 2)?.contiguous()?, cos, sin)?.squeeze(0)?;
        let k = self.rope.apply(&k.unsqueeze(0)?.transpose(1, 2)?.contiguous()?, cos, sin)?.squeeze(0)?;
        let v = v.transpose(0, 1)?.contiguous()?;

        let scale = (hd as f64).sqrt();
        let mut outputs = Vec::with_capacity(batch.len());
        let mut offset = 0;
        for s in batch {
            let n = s.tokens.len();
            let len = s.start + n;
            cache.write(layer, s.slot, s.start, &k.narrow(1, offset, n)?.contiguous()?, &v.narrow(1, offset, n)?.contiguous()?)?;
            let (keys, values) = cache.read(layer, s.slot, len)?;
            // Grouped-query attention: query head h reads kv head h / group. The kv heads are
            // repeated to one per query head so each head's product has the same shapes as in
            // candle-transformers' models (m = rows of this chunk): on quantized models the
            // logits are sensitive to float summation order, and identical shapes keep them
            // bit-identical to the oracle.
            let keys = repeat_kv(&keys, group)?;
            let values = repeat_kv(&values, group)?;
            let q_row = q.narrow(1, offset, n)?.contiguous()?;
            let scores = (q_row.matmul(&keys.t()?)? / scale)?;
            let scores = if n > 1 {
                let mask = causal_mask(n, s.start, &self.device)?.to_dtype(scores.dtype())?;
                scores.broadcast_add(&mask)?
            } else {
                scores
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let out = probs.matmul(&values)?.transpose(0, 1)?.reshape((n, nh * hd))?;
            outputs.push(out);
            offset += n;
        }
        let out = if outputs.len() == 1 { outputs.pop().expect("one row") } else { Tensor::cat(&outputs, 0)? };
        attn.o.forward(&out)
    }
}

/// `[kv_heads, len, hd]` → `[kv_heads * group, len, hd]`, head h taking kv head h / group.
fn repeat_kv(x: &Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return x.contiguous();
    }
    let (nkv, len, hd) = x.dims3()?;
    x.unsqueeze(1)?.broadcast_as((nkv, group, len, hd))?.contiguous()?.reshape((nkv * group, len, hd))
}

/// `[n, start + n]` additive mask: query i (at position start + i) sees keys 0..=start + i.
fn causal_mask(n: usize, start: usize, device: &Device) -> Result<Tensor> {
    let len = start + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..len).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (n, len), device)
}


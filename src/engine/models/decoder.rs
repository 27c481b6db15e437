//! The decoder-only transformer shared by the Llama and Qwen3 families, run as one batch of
//! sequences that each sit at their own position.
//!
//! A step takes a mixed batch: prefill chunks and single decode tokens from many sequences.
//! All their tokens are flattened into one `[tokens, hidden]` matrix, so every projection and
//! MLP runs as one matmul whatever the rows' lengths; RoPE is applied per token from a position
//! table; the new keys and values go into the KV cache in one scatter; attention reads each
//! row's own cache slot, row by row or with all single-token rows batched (see
//! [`AttentionPath`]). Logits are computed only for rows that will be sampled this step.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

use crate::engine::attention;
use crate::engine::glue;
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
    /// The fastest matmul for `w`: packed where supported, candle's otherwise; with `exact`,
    /// one that gives candle's bits (see [`PackedLinear::new`]).
    pub fn from_qtensor(w: QTensor, exact: bool) -> Result<Self> {
        Ok(match PackedLinear::new(&w, exact)? {
            Some(packed) => Self::Packed(Arc::new(packed)),
            None => Self::Candle(QMatMul::from_qtensor(w)?),
        })
    }

    pub fn dense(w: Tensor) -> Self {
        Self::Candle(QMatMul::Tensor(w))
    }

    /// A dense weight as loaded: bf16 on the CPU stays bf16 behind [`PackedLinear`]'s f32-sum
    /// kernel (half of f32's memory); anything else goes to candle's matmul as it is.
    pub fn from_dense(w: Tensor) -> Result<Self> {
        if w.dtype() == DType::BF16 && matches!(w.device(), Device::Cpu) {
            return Ok(Self::Packed(Arc::new(PackedLinear::from_bf16(&w)?)));
        }
        Ok(Self::dense(w))
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
        let outs = match Self::all_packed(&layers) {
            Some(packed) => PackedLinear::forward_shared(&packed, x)?,
            None => layers.iter().map(|l| l.forward(x)).collect::<Result<Vec<_>>>()?,
        };
        Ok(outs.try_into().expect("one output per layer"))
    }

    /// The layers' packed matmuls, if every one is packed.
    fn all_packed<'a>(layers: &[&'a Linear]) -> Option<Vec<&'a PackedLinear>> {
        layers
            .iter()
            .map(|l| match l {
                Self::Packed(p) => Some(p.as_ref()),
                Self::Candle(_) => None,
            })
            .collect()
    }

    /// [`Self::forward_shared`] on a plain `[m, k]` f32 buffer on the CPU (the fused step):
    /// each layer's `[m, n]`.
    pub fn forward_rows<const N: usize>(layers: [&Linear; N], x: &[f32], m: usize) -> Result<[Vec<f32>; N]> {
        let outs = match Self::all_packed(&layers) {
            Some(packed) => PackedLinear::forward_rows(&packed, x)?,
            None => {
                let x = Tensor::from_slice(x, (m, x.len() / m.max(1)), &Device::Cpu)?;
                layers
                    .iter()
                    .map(|l| l.forward(&x)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(outs.try_into().expect("one output per layer"))
    }
}

/// The token embedding table: dense, or (GGUF on the CPU) kept in its quantized blocks with
/// each looked-up row dequantized on use, so the table costs its size in the file rather than
/// 4 bytes per element (2.1 GB for Llama 3.1 8B's 128256 × 4096).
#[derive(Debug, Clone)]
pub enum Embedding {
    Dense(Tensor),
    Quantized { data: Arc<Vec<u8>>, dtype: candle_core::quantized::GgmlDType, rows: usize, hidden: usize },
}

impl Embedding {
    /// A GGUF embedding table: kept quantized on the CPU, dequantized whole elsewhere.
    pub fn from_qtensor(w: &QTensor, device: &Device) -> Result<Self> {
        let (rows, hidden) = w.shape().dims2()?;
        if !matches!(device, Device::Cpu) || matches!(w.dtype(), candle_core::quantized::GgmlDType::F32) {
            return Ok(Self::Dense(w.dequantize(device)?));
        }
        Ok(Self::Quantized { data: Arc::new(w.data()?.into_owned()), dtype: w.dtype(), rows, hidden })
    }

    /// The rows of `ids`, `[ids.len(), hidden]`.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let (data, dtype, rows, hidden) = match self {
            Self::Dense(table) => return table.index_select(&Tensor::new(ids, device)?, 0),
            Self::Quantized { data, dtype, rows, hidden } => (data, *dtype, *rows, *hidden),
        };
        let row_bytes = data.len() / rows;
        let mut out = Vec::with_capacity(ids.len() * hidden);
        for &id in ids {
            if id as usize >= rows {
                candle_core::bail!("token id {id} is outside the embedding table ({rows} rows)");
            }
            let bytes = &data[id as usize * row_bytes..][..row_bytes];
            let storage =
                candle_core::quantized::QStorage::from_data(std::borrow::Cow::Borrowed(bytes), device, dtype)?;
            out.extend(QTensor::new(storage, hidden)?.dequantize(device)?.to_vec1::<f32>()?);
        }
        Tensor::from_vec(out, (ids.len(), hidden), device)
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

    /// `f(weight, eps)` with the weight as an f32 CPU slice of `width` values (the fused step).
    fn with_weight<R>(&self, width: usize, f: impl FnOnce(&[f32], f32) -> R) -> Result<R> {
        let (storage, layout) = self.weight.storage_and_layout();
        if self.weight.elem_count() != width {
            candle_core::bail!("an RMS norm weight of {} values for rows of {width}", self.weight.elem_count());
        }
        Ok(f(cpu_f32(&storage, layout, width)?, self.eps as f32))
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

impl Dims {
    /// The shapes a model file may not break: every count positive, query heads in whole groups
    /// per kv head.
    pub fn check(&self) -> Result<()> {
        let counts = [
            ("hidden size", self.hidden),
            ("layers", self.n_layers),
            ("attention heads", self.n_heads),
            ("kv heads", self.n_kv_heads),
            ("head size", self.head_dim),
            ("vocabulary", self.vocab),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            candle_core::bail!("the model's {name} is 0");
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            candle_core::bail!(
                "the model's {} attention heads do not divide into its {} kv heads",
                self.n_heads,
                self.n_kv_heads
            );
        }
        Ok(())
    }
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

/// How a step's attention runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPath {
    /// One row at a time, each head's product shaped like candle-transformers' models: on the
    /// CPU in f32 the logits are the oracle's bits, and the kv heads are read in place.
    PerRow,
    /// Every single-token row of the step (decoding rows, mostly) in two batched matmuls over
    /// the range of cache slots they occupy, so a step costs the same few kernel launches per
    /// layer at 1 or 256 sequences; prompt pieces run per row. The default on CUDA, where
    /// per-row launches would cost more than the attention itself.
    Batched,
    /// Every row's tokens in one pass per token and kv head over the cache, on the CPU
    /// threads at once (see [`crate::engine::attention`]): the CPU path for models whose
    /// matmuls do not give candle's bits anyway. Needs f32 and a head size that is a
    /// multiple of 8.
    Fused,
}

impl AttentionPath {
    /// Batched on CUDA. Metal keeps the per-row path: its matmul takes the strided cache views
    /// of the batched path under other conditions than cuBLAS, and no Mac has run it. On the
    /// CPU, per row when the model's matmuls give candle's bits (`exact`: the output stays the
    /// oracle's), else fused.
    pub fn for_device(device: &Device, exact: bool, head_dim: usize) -> Self {
        match device {
            Device::Cuda(_) => Self::Batched,
            Device::Cpu if !exact && head_dim.is_multiple_of(8) => Self::Fused,
            _ => Self::PerRow,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decoder {
    pub dims: Dims,
    /// The `[vocab, hidden]` embedding table.
    pub embed: Embedding,
    pub layers: Vec<Layer>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    pub rope: Rope,
    /// Activation and KV-cache dtype.
    pub dtype: DType,
    pub device: Device,
    pub attention_path: AttentionPath,
}

/// The single-token rows of a step, attended together over slots `first..first + count`.
struct SingleRows {
    first: usize,
    count: usize,
    /// `[count]` u32: the step token of the row at each slot of the range (any token for a
    /// slot with no row: its result is discarded and its cache write skipped), so one gather
    /// puts a step's queries, keys or values in slot order.
    slot_tokens: Tensor,
    /// `[rows]` u32: each row's slot minus `first`, in batch order.
    slots: Tensor,
    /// Longest cached length among the rows; the attention reads positions `0..len`.
    len: usize,
    /// `[count, 1, 1, len]` additive f32 mask: slot i sees its own cached positions only.
    mask: Tensor,
    /// Where each slot's new key and value go (see `KvCache::write_single`).
    positions: Tensor,
    /// When the step also has prompt pieces: for each step token, its row in the
    /// concatenation [single rows' outputs; pieces' outputs].
    order: Option<Tensor>,
}

impl SingleRows {
    fn plan(batch: &[SeqStep], cache: &KvCache, device: &Device) -> Result<Option<Self>> {
        let entries: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].tokens.len() == 1).collect();
        if entries.is_empty() {
            return Ok(None);
        }
        let first = entries.iter().map(|&i| batch[i].slot).min().expect("a single row");
        let count = entries.iter().map(|&i| batch[i].slot).max().expect("a single row") - first + 1;
        let len = entries.iter().map(|&i| batch[i].start + 1).max().expect("a single row");
        let mut offsets = Vec::with_capacity(batch.len());
        let mut offset = 0u32;
        for s in batch {
            offsets.push(offset);
            offset += s.tokens.len() as u32;
        }
        // Slots in the range with no row this step still get a (discarded) result; they see
        // position 0 so their softmax has something finite to normalize.
        let mut visible = vec![1usize; count];
        let mut positions = vec![None; count];
        let mut slot_tokens = vec![0u32; count];
        for &i in &entries {
            let at = batch[i].slot - first;
            visible[at] = batch[i].start + 1;
            positions[at] = Some(batch[i].start);
            slot_tokens[at] = offsets[i];
        }
        let mask: Vec<f32> =
            visible.iter().flat_map(|&v| (0..len).map(move |p| if p < v { 0.0 } else { f32::NEG_INFINITY })).collect();
        let slots: Vec<u32> = entries.iter().map(|&i| (batch[i].slot - first) as u32).collect();
        let order = if entries.len() == batch.len() {
            None
        } else {
            let (mut next_single, mut next_piece) = (0u32, entries.len() as u32);
            let mut order = Vec::with_capacity(offset as usize);
            for s in batch {
                let next = if s.tokens.len() == 1 { &mut next_single } else { &mut next_piece };
                order.extend(*next..*next + s.tokens.len() as u32);
                *next += s.tokens.len() as u32;
            }
            Some(Tensor::from_vec(order, offset as usize, device)?)
        };
        Ok(Some(Self {
            slot_tokens: Tensor::from_vec(slot_tokens, count, device)?,
            slots: Tensor::from_vec(slots, entries.len(), device)?,
            mask: Tensor::from_vec(mask, (count, 1, 1, len), device)?,
            positions: cache.single_positions(&positions, device)?,
            order,
            first,
            count,
            len,
        }))
    }

    /// `t` (`[heads, step tokens, hd]`) at this step's single rows, in slot order: `[count,
    /// heads, hd]`.
    fn gather(&self, t: &Tensor) -> Result<Tensor> {
        t.index_select(&self.slot_tokens, 1)?.transpose(0, 1)?.contiguous()
    }
}

impl Decoder {
    pub fn new_cache(&self, slots: usize, max_len: usize) -> Result<KvCache> {
        let d = &self.dims;
        KvCache::new(d.n_layers, d.n_kv_heads, d.head_dim, slots, max_len, self.dtype, &self.device)
    }

    pub fn with_attention_path(mut self, path: AttentionPath) -> Self {
        self.attention_path = path;
        self
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
                candle_core::bail!(
                    "sequence grows to {end} tokens, past the cache ({}) or context ({})",
                    cache.max_len(),
                    d.context_len
                );
            }
            ids.extend_from_slice(s.tokens);
            positions.extend((s.start..end).map(|p| p as u32));
        }
        let embedded = self.embed.lookup(&ids, &self.device)?;
        let x = match self.attention_path {
            AttentionPath::Fused => {
                let rows: Vec<(usize, usize)> =
                    batch.iter().flat_map(|s| (s.start..s.start + s.tokens.len()).map(move |p| (s.slot, p))).collect();
                self.layers_fused(&embedded, &rows, cache)?
            }
            AttentionPath::PerRow | AttentionPath::Batched => self.layers(batch, &embedded, positions, cache)?,
        };

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

    /// Every layer through candle's tensors (the per-row and batched paths): the last hidden
    /// states `[tokens, hidden]` of `embedded`, whose token `t` is at `positions[t]`.
    fn layers(&self, batch: &[SeqStep], embedded: &Tensor, positions: Vec<u32>, cache: &mut KvCache) -> Result<Tensor> {
        let total = positions.len();
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let cos = self.rope.cos.index_select(&positions, 0)?;
        let sin = self.rope.sin.index_select(&positions, 0)?;
        let single = match self.attention_path {
            AttentionPath::Batched => SingleRows::plan(batch, cache, &self.device)?,
            AttentionPath::PerRow | AttentionPath::Fused => None,
        };
        // Each prompt piece's causal mask, made once per step for every layer.
        let masks = batch
            .iter()
            .map(|s| (s.tokens.len() > 1).then(|| causal_mask(s.tokens.len(), s.start, &self.device)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let step = StepContext { batch, single: single.as_ref(), masks: &masks, cos: &cos, sin: &sin };

        let mut x = embedded.to_dtype(self.dtype)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let h = self.attention(index, &layer.attn, &h, &step, cache)?;
            x = (x + h)?;
            let h = layer.mlp.forward(&layer.mlp_norm.forward(&x)?)?;
            x = (x + h)?;
        }
        Ok(x)
    }

    /// [`AttentionPath::Fused`]: every layer on plain f32 buffers, the element-wise work in
    /// [`glue`] and the attention in [`attention::attend`], with no tensor op between the
    /// matmuls; `rows[t]`: token t's (slot, position). The last hidden states `[tokens,
    /// hidden]`.
    fn layers_fused(&self, embedded: &Tensor, rows: &[(usize, usize)], cache: &mut KvCache) -> Result<Tensor> {
        let d = &self.dims;
        let (tokens, hd) = (rows.len(), d.head_dim);
        let (q_len, kv_len, hidden) = (tokens * d.n_heads * hd, tokens * d.n_kv_heads * hd, tokens * d.hidden);
        let simd = crate::engine::quant::simd_kernels();
        let positions: Vec<usize> = rows.iter().map(|&(_, p)| p).collect();
        let (cos, sin) = (self.rope.cos.storage_and_layout(), self.rope.sin.storage_and_layout());
        let cos = cpu_f32(&cos.0, cos.1, self.rope.cos.elem_count())?;
        let sin = cpu_f32(&sin.0, sin.1, self.rope.sin.elem_count())?;
        if positions.iter().any(|p| (p + 1) * (hd / 2) > cos.len().min(sin.len())) {
            candle_core::bail!("a position past the RoPE tables ({} values of {} per position)", cos.len(), hd / 2);
        }
        let mut x = sized("embedding", embedded.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?, hidden)?;
        let mut h = vec![0f32; x.len()];
        // The MLP's output, added to `x` with the next layer's norm.
        let mut residual: Option<Vec<f32>> = None;
        for (index, layer) in self.layers.iter().enumerate() {
            let (attn, mlp) = (&layer.attn, &layer.mlp);
            let norm = &layer.attn_norm;
            norm.with_weight(d.hidden, |w, eps| glue::add_rms_norm(&mut x, residual.as_deref(), w, eps, &mut h))?;
            let [q, k, v] = Linear::forward_rows([&attn.q, &attn.k, &attn.v], &h, tokens)?;
            let (mut q, mut k, v) = (sized("query", q, q_len)?, sized("key", k, kv_len)?, sized("value", v, kv_len)?);
            for (x, norm) in [(&mut q, &attn.q_norm), (&mut k, &attn.k_norm)] {
                if let Some(norm) = norm {
                    norm.with_weight(hd, |w, eps| glue::rms_norm_in_place(x, w, eps))?;
                }
                glue::rope(x, hd, &positions, cos, sin, self.rope.interleaved);
            }
            cache.write_rows(index, rows, &k, &v)?;
            let out = {
                let max_len = cache.max_len();
                let shape = attention::Shape { heads: d.n_heads, kv_heads: d.n_kv_heads, head_dim: hd, max_len };
                let (keys, values) = cache.layer(index);
                let (k_storage, k_layout) = keys.storage_and_layout();
                let (v_storage, v_layout) = values.storage_and_layout();
                let n = keys.elem_count();
                let (keys, values) = (cpu_f32(&k_storage, k_layout, n)?, cpu_f32(&v_storage, v_layout, n)?);
                attention::attend(&q, keys, values, rows, shape, simd)
            };
            let [o] = Linear::forward_rows([&attn.o], &out, tokens)?;
            let o = sized("attention output", o, hidden)?;
            let norm = &layer.mlp_norm;
            norm.with_weight(d.hidden, |w, eps| glue::add_rms_norm(&mut x, Some(&o), w, eps, &mut h))?;
            let [mut gate, up] = Linear::forward_rows([&mlp.gate, &mlp.up], &h, tokens)?;
            let up = sized("up projection", up, gate.len())?;
            glue::silu_mul(&mut gate, &up, simd);
            let [down] = Linear::forward_rows([&mlp.down], &gate, tokens)?;
            residual = Some(sized("down projection", down, hidden)?);
        }
        if let Some(r) = residual {
            glue::add(&mut x, &r);
        }
        Tensor::from_vec(x, (tokens, d.hidden), &Device::Cpu)
    }

    /// Self-attention for every row of the batch; `x` is `[tokens, hidden]`.
    fn attention(
        &self,
        layer: usize,
        attn: &Attention,
        x: &Tensor,
        step: &StepContext,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let StepContext { batch, single, cos, sin, .. } = *step;
        let d = &self.dims;
        let total = x.dim(0)?;
        let (nh, nkv, hd) = (d.n_heads, d.n_kv_heads, d.head_dim);

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

        // New keys and values into the cache: single tokens all at once where they are
        // attended together, every other row with its own copy.
        let mut offset = 0;
        for s in batch {
            let n = s.tokens.len();
            if single.is_none() || n > 1 {
                cache.write(layer, s.slot, s.start, &k.narrow(1, offset, n)?, &v.narrow(1, offset, n)?)?;
            }
            offset += n;
        }
        let out = match single {
            None => self.attention_per_row(layer, &q, step, cache, |_| true)?,
            Some(single) => {
                cache.write_single(
                    layer,
                    single.first,
                    single.count,
                    &single.positions,
                    &single.gather(&k)?,
                    &single.gather(&v)?,
                )?;
                self.attention_batched(layer, &q, step, single, cache)?
            }
        };
        attn.o.forward(&out)
    }

    /// Attention of the rows `which` selects, one at a time: `[their tokens, heads * hd]` in
    /// batch order. `q`: the step's queries `[heads, tokens, hd]`, after RoPE.
    fn attention_per_row(
        &self,
        layer: usize,
        q: &Tensor,
        step: &StepContext,
        cache: &KvCache,
        which: impl Fn(usize) -> bool,
    ) -> Result<Tensor> {
        let StepContext { batch, masks, .. } = *step;
        let d = &self.dims;
        let (nh, hd) = (d.n_heads, d.head_dim);
        let group = nh / d.n_kv_heads;
        let scale = (hd as f64).sqrt();
        let mut outputs = Vec::with_capacity(batch.len());
        let mut offset = 0;
        for (i, s) in batch.iter().enumerate() {
            let n = s.tokens.len();
            let len = s.start + n;
            if !which(i) {
                offset += n;
                continue;
            }
            // Grouped-query attention: query head h reads kv head h / group. Each head's product
            // has the same shapes as in candle-transformers' models (m = rows of this chunk): on
            // quantized models the logits are sensitive to float summation order, and identical
            // shapes keep them bit-identical to the oracle. On CPU the kv heads are read in
            // place (see `gqa_matmul`); elsewhere they are repeated to one per query head.
            let in_place = matches!(self.device, Device::Cpu) && self.dtype == DType::F32;
            let q_row = q.narrow(1, offset, n)?.contiguous()?;
            let (keys, values) = cache.slot(layer, s.slot)?;
            let scores = if in_place {
                gqa_matmul(&q_row, &keys, len, group, KvOperand::KeysT)?
            } else {
                q_row.matmul(&repeat_kv(&keys.narrow(1, 0, len)?, group)?.t()?)?
            };
            // Softmax in f32, as candle-transformers' models do for bf16 and f16.
            let scores = (scores / scale)?.to_dtype(DType::F32)?;
            let scores = match &masks[i] {
                Some(mask) => scores.broadcast_add(mask)?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
            let out = if in_place {
                gqa_matmul(&probs, &values, len, group, KvOperand::Values)?
            } else {
                probs.matmul(&repeat_kv(&values.narrow(1, 0, len)?, group)?)?
            };
            outputs.push(out.transpose(0, 1)?.reshape((n, nh * hd))?);
            offset += n;
        }
        match outputs.len() {
            0 => Tensor::zeros((0, nh * hd), q.dtype(), q.device()),
            1 => Ok(outputs.pop().expect("one row")),
            _ => Tensor::cat(&outputs, 0),
        }
    }

    /// [`AttentionPath::Batched`]: the single-token rows together, prompt pieces per row;
    /// `[tokens, heads * hd]` in step order.
    fn attention_batched(
        &self,
        layer: usize,
        q: &Tensor,
        step: &StepContext,
        single: &SingleRows,
        cache: &KvCache,
    ) -> Result<Tensor> {
        let batch = step.batch;
        let d = &self.dims;
        let (nh, nkv, hd) = (d.n_heads, d.n_kv_heads, d.head_dim);
        let group = nh / nkv;
        // Each row's query heads, grouped by the kv head they read, at the row's slot:
        // [count, kv, group, hd] against the slots' keys [count, kv, len, hd], so grouped-query
        // attention needs no repeated keys.
        let q_slots = single.gather(q)?.reshape((single.count, nkv, group, hd))?;
        let (keys, values) = cache.read_slots(layer, single.first, single.count, single.len)?;
        let scores = (q_slots.matmul(&keys.t()?)? / (hd as f64).sqrt())?;
        // Softmax in f32, as candle-transformers' models do for bf16 and f16.
        let scores = scores.to_dtype(DType::F32)?.broadcast_add(&single.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(values.dtype())?;
        let out = probs.matmul(&values)?.reshape((single.count, nh * hd))?.index_select(&single.slots, 0)?;

        let Some(order) = &single.order else { return Ok(out) };
        // Prompt pieces, then every token back in step order.
        let pieces = self.attention_per_row(layer, q, step, cache, |i| batch[i].tokens.len() > 1)?;
        Tensor::cat(&[out, pieces], 0)?.index_select(order, 0)
    }
}

/// What every layer of one step shares: the rows, the batched path's plan, each prompt
/// piece's causal mask, and the RoPE rows of every token's position.
#[derive(Clone, Copy)]
struct StepContext<'a> {
    batch: &'a [SeqStep<'a>],
    single: Option<&'a SingleRows>,
    masks: &'a [Option<Tensor>],
    cos: &'a Tensor,
    sin: &'a Tensor,
}

/// Which cached operand [`gqa_matmul`] multiplies by.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KvOperand {
    /// `scores = q @ keysᵀ`.
    KeysT,
    /// `out = probs @ values`.
    Values,
}

/// `lhs[h] @ kv(h / group)` for every head h, where `kv` is the first `len` positions of a
/// cache slot (`[kv_heads, max_len, hd]`, contiguous); `lhs` is `[heads, m, k]`, contiguous.
///
/// This calls gemm once per head with exactly the arguments candle's CPU matmul passes for
/// `lhs.matmul(repeat_kv(kv))` (same m, n, k, strides, alpha, beta and parallelism), so the
/// result is the same bits, but it reads each kv head where the cache keeps it instead of
/// copying the slot's whole history `group` times per layer and step.
fn gqa_matmul(lhs: &Tensor, kv: &Tensor, len: usize, group: usize, operand: KvOperand) -> Result<Tensor> {
    let lhs = lhs.contiguous()?;
    let (heads, m, k) = lhs.dims3()?;
    let (_, max_len, hd) = kv.dims3()?;
    let n = match operand {
        KvOperand::KeysT => len,
        KvOperand::Values => hd,
    };
    let expected_k = if operand == KvOperand::KeysT { hd } else { len };
    if k != expected_k || !kv.is_contiguous() || len > max_len {
        candle_core::bail!("gqa_matmul: lhs {:?} does not fit {len} cached positions of {:?}", lhs.shape(), kv.shape());
    }
    // (column stride, row stride) of the right operand, as candle derives them from
    // `keys.t()` and `values` of a contiguous `[heads, len, hd]`.
    let (rhs_cs, rhs_rs) = match operand {
        KvOperand::KeysT => (hd as isize, 1),
        KvOperand::Values => (1, hd as isize),
    };
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let mut dst = vec![0f32; heads * m * n];
    {
        let (lhs_storage, lhs_layout) = lhs.storage_and_layout();
        let (kv_storage, kv_layout) = kv.storage_and_layout();
        let (candle_core::Storage::Cpu(l), candle_core::Storage::Cpu(r)) = (&*lhs_storage, &*kv_storage) else {
            candle_core::bail!("gqa_matmul runs on CPU");
        };
        let l = &l.as_slice::<f32>()?[lhs_layout.start_offset()..][..heads * m * k];
        let r = &r.as_slice::<f32>()?[kv_layout.start_offset()..];
        for h in 0..heads {
            let rhs = &r[(h / group) * max_len * hd..][..len * hd];
            // SAFETY: each operand slice holds the m x k, k x n and m x n elements these strides
            // address.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst[h * m * n..].as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    l[h * m * k..].as_ptr(),
                    1,
                    k as isize,
                    rhs.as_ptr(),
                    rhs_cs,
                    rhs_rs,
                    0f32,
                    1f32,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        }
    }
    Tensor::from_vec(dst, (heads, m, n), &Device::Cpu)
}

/// The `len` elements of a contiguous f32 CPU tensor.
fn cpu_f32<'a>(storage: &'a candle_core::Storage, layout: &candle_core::Layout, len: usize) -> Result<&'a [f32]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        candle_core::bail!("the fused step runs on CPU");
    };
    if !layout.is_contiguous() {
        candle_core::bail!("the fused step takes contiguous tensors");
    }
    Ok(&cpu.as_slice::<f32>()?[layout.start_offset()..][..len])
}

/// `v` if it holds `len` values: a model file whose weight shapes disagree with its header
/// fails here, on the fused path, with an error rather than a slice out of bounds.
fn sized(what: &str, v: Vec<f32>, len: usize) -> Result<Vec<f32>> {
    if v.len() != len {
        candle_core::bail!(
            "the model's {what} has {} values in this step, not {len}: its weight shapes disagree with its header",
            v.len()
        );
    }
    Ok(v)
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
    let mask: Vec<f32> =
        (0..n).flat_map(|i| (0..len).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (n, len), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model file's head counts are checked before anything divides by them.
    #[test]
    fn dims_check_rejects_zero_counts_and_uneven_head_groups() {
        let dims =
            Dims { hidden: 576, n_layers: 30, n_heads: 9, n_kv_heads: 3, head_dim: 64, vocab: 10, context_len: 8 };
        assert!(dims.check().is_ok());
        let uneven = Dims { n_heads: 10, ..dims.clone() }.check().unwrap_err().to_string();
        assert!(uneven.contains("10 attention heads do not divide into its 3 kv heads"), "{uneven}");
        let zero = Dims { n_kv_heads: 0, ..dims }.check().unwrap_err().to_string();
        assert!(zero.contains("kv heads is 0"), "{zero}");
    }

    /// The in-place grouped-query products against candle's matmul on repeated kv heads.
    #[test]
    fn gqa_matmul_is_bit_identical_to_repeat_kv_then_matmul() {
        let dev = Device::Cpu;
        let (heads, kv_heads, hd, max_len) = (9, 3, 64, 300);
        let group = heads / kv_heads;
        let keys = Tensor::randn(0f32, 1.0, (kv_heads, max_len, hd), &dev).unwrap();
        let values = Tensor::randn(0f32, 1.0, (kv_heads, max_len, hd), &dev).unwrap();
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        };
        for (m, len) in [(1, 1), (1, 17), (1, 200), (3, 40), (17, 17), (48, 250), (200, 200)] {
            let q = Tensor::randn(0f32, 1.0, (heads, m, hd), &dev).unwrap();
            let want = q.matmul(&repeat_kv(&keys.narrow(1, 0, len).unwrap(), group).unwrap().t().unwrap()).unwrap();
            let got = gqa_matmul(&q, &keys, len, group, KvOperand::KeysT).unwrap();
            assert_eq!(bits(&want), bits(&got), "scores, m={m} len={len}");

            let probs = candle_nn::ops::softmax_last_dim(&want).unwrap();
            let want = probs.matmul(&repeat_kv(&values.narrow(1, 0, len).unwrap(), group).unwrap()).unwrap();
            let got = gqa_matmul(&probs, &values, len, group, KvOperand::Values).unwrap();
            assert_eq!(bits(&want), bits(&got), "values, m={m} len={len}");
        }
    }
}

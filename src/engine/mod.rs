//! The batched generation engine: many independent generations share each forward pass.
//!
//! [`scheduler::Scheduler`] owns the queue, the KV cache slots and the per-request samplers;
//! each step it asks a [`DecoderModel`] for one forward over a mixed batch (prefill chunks and
//! single decode tokens, each row at its own position) and samples one token per finished row.

pub mod attention;
pub mod bf16;
pub mod device_sampler;
pub mod glue;
pub mod kquant;
pub mod kv_cache;
pub mod models;
pub mod quant;
pub mod rate_limit;
pub mod sampler;
pub mod scheduler;

use anyhow::Result;

use kv_cache::KvCache;
pub use models::{Decoder, SeqStep};
pub use sampler::SamplingParams;
pub use scheduler::{Completion, FinishReason, Request, SchedulerConfig};

/// A loaded model plus the KV cache sized for one batch of work: the thing `synth run` and
/// `synth generate` drive.
pub struct Engine {
    pub decoder: Decoder,
    cache: KvCache,
    /// Sample on the model's device instead of copying logits to the host.
    device_sampling: bool,
}

/// How much memory the KV cache may take when the caller does not say.
pub const DEFAULT_KV_CACHE_BYTES: usize = 4 << 30;

impl Engine {
    /// Sizes the cache: slots of `max_len` tokens (capped by the model's context), as many as
    /// `max_batch` allows and `cache_bytes` holds (at least one).
    pub fn new(decoder: Decoder, max_batch: usize, max_len: usize, cache_bytes: usize) -> Result<Self> {
        let d = &decoder.dims;
        let max_len = max_len.min(d.context_len).max(1);
        let per_slot = KvCache::bytes_per_token(d.n_layers, d.n_kv_heads, d.head_dim, decoder.dtype) * max_len;
        let slots = (cache_bytes / per_slot.max(1)).clamp(1, max_batch.max(1));
        let cache = decoder.new_cache(slots, max_len)?;
        let device_sampling = device_sampler::samples_on(&decoder.device);
        Ok(Self { decoder, cache, device_sampling })
    }

    /// Samples on the device (the default off the CPU) or on the host; tests use it to run the
    /// device sampler on the CPU.
    pub fn with_device_sampling(mut self, on: bool) -> Self {
        self.device_sampling = on;
        self
    }

    pub fn slots(&self) -> usize {
        self.cache.slots()
    }
}

impl scheduler::BatchModel for Engine {
    fn max_len(&self) -> usize {
        self.cache.max_len()
    }
    fn slots(&self) -> usize {
        self.cache.slots()
    }
    /// Grows the cache (copying what it holds) when a request needs longer slots than it has,
    /// up to the model's context: a run whose later prompts are longer than its first ones
    /// keeps one engine.
    fn reserve(&mut self, len: usize) -> Result<usize> {
        let len = len.min(self.decoder.dims.context_len).max(1);
        if len > self.cache.max_len() {
            let grown = (self.cache.max_len() + self.cache.max_len() / 4).max(len).min(self.decoder.dims.context_len);
            self.cache.grow(grown)?;
        }
        Ok(self.cache.max_len())
    }
    /// On CUDA and Metal the logits stay on the device and are sampled there; on the CPU the
    /// host sampler reads them in place.
    fn forward(&mut self, batch: &[SeqStep]) -> Result<scheduler::Logits> {
        let logits = self.decoder.forward(batch, &mut self.cache)?;
        Ok(if self.device_sampling {
            scheduler::Logits::Device(logits)
        } else {
            scheduler::Logits::Host(logits.to_vec2::<f32>()?)
        })
    }
}

//! Synthesis pipelines: seed rows in, generation jobs through the engine, new rows out.
//!
//! [`generate`] is the one path from conversations to completions that every command uses:
//! it renders each conversation with the model's chat template, sizes an [`Engine`] for the
//! batch, and runs the scheduler with the rate cap.

pub mod failure_modes;
pub mod general;
pub mod journal;
pub mod run;

use anyhow::Result;

use crate::engine::rate_limit::{Clock, SystemClock, TokenBucket};
use crate::engine::scheduler::{self, Admission, AlwaysAdmit, SchedulerConfig};
use crate::engine::{Engine, FinishReason, Request, SamplingParams, DEFAULT_KV_CACHE_BYTES};
use crate::model::LoadedModel;
use crate::progress::Progress;
use crate::store::Message;

/// What one kind of synthesis asks of the model and makes of its answers, for each seed row:
/// `synth run` does the rest (model, journal, batched stages, retries, splits, manifest).
pub trait Pipeline {
    /// Stage 1: the conversation that asks for a new request, or why this row is skipped.
    fn request(&self, row: usize) -> Result<Vec<Message>, general::DropReason>;
    /// Stage 2: the conversation whose completion answers the new request.
    fn answer(&self, row: usize, request: &str) -> Vec<Message>;
    /// The new dataset row; `provenance` holds the metadata every row carries.
    fn row(&self, row: usize, request: String, answer: String, provenance: serde_json::Map<String, serde_json::Value>) -> crate::store::Row;
    /// Manifest fields of this kind of synthesis, given the rows made.
    fn manifest(&self, _rows: &[crate::store::Row]) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

/// One conversation to complete.
#[derive(Debug, Clone)]
pub struct Job {
    pub messages: Vec<Message>,
    pub params: SamplingParams,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generated {
    pub text: String,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

/// Engine settings a run may tune.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Concurrent sequences (KV-cache slots).
    pub max_batch: usize,
    /// Prompt tokens fed per engine step.
    pub prefill_chunk: usize,
    pub kv_cache_bytes: usize,
    /// Qwen3's thinking mode; `None` leaves the template's default.
    pub enable_thinking: Option<bool>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { max_batch: 32, prefill_chunk: 512, kv_cache_bytes: DEFAULT_KV_CACHE_BYTES, enable_thinking: None }
    }
}

/// `requestsPerMinute` as a bucket plus the clock it reads.
pub struct RateCap {
    pub bucket: TokenBucket,
    pub clock: Box<dyn Clock>,
}

impl RateCap {
    pub fn per_minute(requests_per_minute: f64) -> Self {
        let clock: Box<dyn Clock> = Box::new(SystemClock::default());
        Self { bucket: TokenBucket::new(requests_per_minute, clock.now()), clock }
    }
}

/// Completes every job; results come back in job order whatever order they finished in, and
/// `on_result` sees each as it finishes (the run journal). A job is `None` only when
/// `admission` closed before it started.
pub fn generate(
    model: &LoadedModel,
    jobs: &[Job],
    options: &EngineOptions,
    rate: Option<&mut RateCap>,
    admission: Option<&dyn Admission>,
    progress: &mut Progress,
    mut on_result: impl FnMut(usize, &Generated) -> Result<()>,
) -> Result<Vec<Option<Generated>>> {
    let mut requests = Vec::with_capacity(jobs.len());
    let mut max_len = 1;
    for (id, job) in jobs.iter().enumerate() {
        let prompt = model.text.encode_chat(&job.messages, options.enable_thinking)?;
        max_len = max_len.max(prompt.len() + job.params.max_new_tokens);
        requests.push(Request { id, prompt, params: job.params.clone() });
    }
    let mut results: Vec<Option<Generated>> = vec![None; jobs.len()];
    if requests.is_empty() {
        return Ok(results);
    }
    let mut engine = Engine::new(model.decoder.clone(), options.max_batch, max_len, options.kv_cache_bytes)?;
    let config = SchedulerConfig { prefill_chunk: options.prefill_chunk, stop_tokens: model.text.stop_ids.clone() };
    let limiter = rate.map(|r| (&mut r.bucket, r.clock.as_ref()));
    let admission = admission.unwrap_or(&AlwaysAdmit);
    scheduler::run(&mut engine, &config, requests, limiter, admission, |done| {
        let text = model.text.tokenizer.decode(&done.tokens, true)?;
        progress.row_done(done.tokens.len());
        let generated = Generated { text, finish: done.finish, prompt_tokens: done.prompt_tokens, generated_tokens: done.tokens.len() };
        on_result(done.id, &generated)?;
        results[done.id] = Some(generated);
        Ok(())
    })?;
    Ok(results)
}

/// `inferenceMaxNewTokens` (at JSON path `at` of the recipe) must leave room for a prompt in the
/// model's context.
pub fn check_context(model: &LoadedModel, inference: &crate::recipe::InferenceSettings, recipe_path: &std::path::Path, at: &str) -> Result<()> {
    let context = model.decoder.dims.context_len;
    if inference.max_new_tokens >= context {
        return Err(crate::error::SynthError::invalid(format!(
            "{}: {at}.inferenceMaxNewTokens: `{}` must be less than the context length of `{}` ({context} tokens)",
            recipe_path.display(),
            inference.max_new_tokens,
            model.resolved.spec.name
        ))
        .into());
    }
    Ok(())
}

/// Rounds to three decimals, for the figures manifests and summaries show.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A well-mixed 64-bit value from two inputs (SplitMix64 finalizer), for per-row seeds.
pub fn mix_seed(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::mix_seed;

    #[test]
    fn row_seeds_differ_and_are_stable() {
        let seeds: std::collections::HashSet<u64> = (0..1000).map(|i| mix_seed(42, i)).collect();
        assert_eq!(seeds.len(), 1000);
        assert_eq!(mix_seed(42, 7), mix_seed(42, 7));
        assert_ne!(mix_seed(42, 7), mix_seed(43, 7));
    }
}

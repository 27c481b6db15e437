//! Conversations through the engine: each is rendered with the model's chat template, one
//! [`Engine`] runs them all, and the scheduler runs it under the rate cap. [`generate`] takes a
//! fixed batch; [`drive`] takes any [`Work`], such as a run whose next stages become ready as
//! earlier ones finish.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::engine::rate_limit::{Clock, SystemClock, TokenBucket};
use crate::engine::scheduler::{self, Admission, AlwaysAdmit, Queue, SchedulerConfig, Work};
use crate::engine::{Completion, Engine, FinishReason, Request, SamplingParams, DEFAULT_KV_CACHE_BYTES};
use crate::error::SynthError;
use crate::model::LoadedModel;
use crate::progress::{Notifier, Progress};
use crate::recipe::InferenceSettings;
use crate::store::manifest::rfc3339_from_unix;
use crate::store::Message;

/// One conversation to complete.
#[derive(Debug, Clone)]
pub struct Job {
    pub messages: Vec<Message>,
    pub params: SamplingParams,
}

/// One finished generation, as the journal stores it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generated {
    pub text: String,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

/// Engine settings a command may tune.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Concurrent sequences (KV-cache slots).
    pub max_batch: usize,
    /// Prompt tokens fed per engine step.
    pub prefill_chunk: usize,
    pub kv_cache_bytes: usize,
    /// Qwen3's thinking mode; `None` leaves the template's default.
    pub enable_thinking: Option<bool>,
    /// Engines sharing a `synth run` (`--engines`), each with its share of the batch, the
    /// KV-cache budget and the CPU threads.
    pub engines: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_batch: 32,
            prefill_chunk: 512,
            kv_cache_bytes: DEFAULT_KV_CACHE_BYTES,
            enable_thinking: None,
            engines: 1,
        }
    }
}

impl EngineOptions {
    /// These options with the thinking mode an inference config asks for.
    pub fn thinking(&self, inference: &InferenceSettings) -> EngineOptions {
        EngineOptions { enable_thinking: Some(inference.enable_thinking), ..self.clone() }
    }
}

/// `requestsPerMinute` as a bucket plus the clock it reads.
pub struct RateCap {
    pub bucket: TokenBucket,
    pub clock: Box<dyn Clock>,
    pub per_minute: f64,
}

impl RateCap {
    pub fn per_minute(requests_per_minute: f64) -> Self {
        let clock: Box<dyn Clock> = Box::new(SystemClock::default());
        Self { bucket: TokenBucket::new(requests_per_minute, clock.now()), clock, per_minute: requests_per_minute }
    }

    /// The cap an inference config sets, if any.
    pub fn of(inference: &InferenceSettings) -> Option<RateCap> {
        inference.requests_per_minute.map(RateCap::per_minute)
    }
}

/// The rate cap's clock, saying on stderr when the cap holds every request back for a while,
/// so a long wait is not mistaken for a hang.
struct Announcing<'a> {
    inner: &'a dyn Clock,
    notifier: Notifier,
    per_minute: f64,
}

/// Waits at least this long are announced.
const ANNOUNCE_WAITS_FROM: Duration = Duration::from_secs(5);

impl Clock for Announcing<'_> {
    fn now(&self) -> Duration {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) {
        if duration >= ANNOUNCE_WAITS_FROM {
            let until = SystemTime::now()
                .checked_add(duration)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or_else(|| "much later".to_string(), |d| rfc3339_from_unix(d.as_secs()));
            self.notifier.note(&format!(
                "waiting {:.0}s for the rate cap (requestsPerMinute {}), until {until}",
                duration.as_secs_f64(),
                self.per_minute
            ));
        }
        self.inner.sleep(duration)
    }
}

/// How a batch runs besides its jobs: engine size, rate cap, admission (Ctrl-C) and progress.
pub struct BatchContext<'a> {
    pub engine: &'a EngineOptions,
    pub rate: Option<&'a mut RateCap>,
    pub admission: Option<&'a (dyn Admission + Sync)>,
    pub progress: &'a mut Progress,
}

/// Completes every job; results come back in job order whatever order they finished in, and
/// `on_result` sees each as it finishes (the run journal). A job is `None` only when
/// admission closed before it started.
pub fn generate(
    model: &LoadedModel,
    jobs: &[Job],
    context: BatchContext,
    mut on_result: impl FnMut(usize, &Generated) -> Result<()>,
) -> Result<Vec<Option<Generated>>> {
    let options = context.engine;
    let mut requests = Vec::with_capacity(jobs.len());
    for (id, job) in jobs.iter().enumerate() {
        requests.push(encode(model, job, options, id)?);
    }
    let mut results: Vec<Option<Generated>> = vec![None; jobs.len()];
    if requests.is_empty() {
        return Ok(results);
    }
    let max_len = requests.iter().map(|r| r.prompt.len() + r.params.max_new_tokens).max().unwrap_or(1);
    let progress = context.progress;
    let engine = Drive { engine: options, rate: context.rate, admission: context.admission };
    let notifier = progress.notifier();
    let mut queue = Queue {
        requests: requests.into(),
        on_done: |done: Completion| {
            let generated = decode(model, &done)?;
            progress.row_done(generated.generated_tokens);
            on_result(done.id, &generated)?;
            results[done.id] = Some(generated);
            Ok(())
        },
    };
    drive(model, engine, max_len, notifier, &mut queue)?;
    Ok(results)
}

/// What runs the engine besides its work: its size, the rate cap and admission (Ctrl-C).
pub struct Drive<'a> {
    pub engine: &'a EngineOptions,
    pub rate: Option<&'a mut RateCap>,
    pub admission: Option<&'a (dyn Admission + Sync)>,
}

/// Runs `work` through one engine whose slots start `max_len` tokens long (they grow when a
/// later request needs more). Returns the request taken from `work` but never started.
pub fn drive(
    model: &LoadedModel,
    drive: Drive,
    max_len: usize,
    notifier: Notifier,
    work: &mut dyn Work,
) -> Result<Option<Request>> {
    let options = drive.engine;
    let mut engine = Engine::new(model.decoder.clone(), options.max_batch, max_len, options.kv_cache_bytes)?;
    let config = SchedulerConfig { prefill_chunk: options.prefill_chunk, stop_tokens: model.text.stop_ids.clone() };
    let announcing;
    let limiter = match drive.rate {
        Some(r) => {
            announcing = Announcing { inner: r.clock.as_ref(), notifier, per_minute: r.per_minute };
            Some((&mut r.bucket, &announcing as &dyn Clock))
        }
        None => None,
    };
    let admission: &dyn Admission = match drive.admission {
        Some(a) => a,
        None => &AlwaysAdmit,
    };
    scheduler::run(&mut engine, &config, work, limiter, admission)
}

/// A job as the engine's request `id`: the conversation through the chat template.
pub fn encode(model: &LoadedModel, job: &Job, options: &EngineOptions, id: usize) -> Result<Request> {
    let prompt = model.text.encode_chat(&job.messages, options.enable_thinking)?;
    if prompt.is_empty() {
        return Err(SynthError::invalid(format!(
            "model `{}`: its chat template renders a conversation as an empty prompt",
            model.resolved.spec.name
        ))
        .hint("check the model's chat template (`tokenizer_config.json` or the GGUF's `tokenizer.chat_template`)")
        .into());
    }
    Ok(Request { id, prompt, params: job.params.clone() })
}

/// A finished request as text.
pub fn decode(model: &LoadedModel, done: &Completion) -> Result<Generated> {
    Ok(Generated {
        text: model.text.tokenizer.decode(&done.tokens, true)?,
        finish: done.finish,
        prompt_tokens: done.prompt_tokens,
        generated_tokens: done.tokens.len(),
    })
}

/// `inferenceMaxNewTokens` (at JSON path `at` of the recipe) must leave room for a prompt in the
/// model's context.
pub fn check_context(
    model: &LoadedModel,
    inference: &InferenceSettings,
    recipe_path: &std::path::Path,
    at: &str,
) -> Result<()> {
    let context = model.decoder.dims.context_len;
    if inference.max_new_tokens >= context {
        return Err(SynthError::invalid(format!(
            "{}: {at}.inferenceMaxNewTokens: `{}` must be less than the context length of `{}` ({context} tokens)",
            recipe_path.display(),
            inference.max_new_tokens,
            model.resolved.spec.name
        ))
        .into());
    }
    Ok(())
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

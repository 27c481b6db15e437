//! Several engines on one run: one per device (`--device cuda:all`, `cuda:0,2`), times
//! `--engines N` per device; each in its own thread with its own KV cache and its own share of
//! the CPU threads, all taking requests from one [`Work`] behind a lock.
//! A generation's tokens depend only on its prompt and seed, never on the engine that made it,
//! and the work keeps outcomes in its own fixed order, so the output is the same bytes as one
//! engine's.

use std::sync::Mutex;

use anyhow::Result;

use super::batch::{EngineOptions, RateCap};
use crate::engine::rate_limit::Clock;
use crate::engine::scheduler::{self, Admission, AlwaysAdmit, SchedulerConfig, Work};
use crate::engine::{Completion, Engine, Request};
use crate::model::LoadedModel;

/// The work shared by the engines, and how many of its requests are in some engine.
struct Shared<'w> {
    work: &'w mut (dyn Work + Send),
    running: usize,
    /// An engine failed: the others stop taking work.
    failed: bool,
}

/// One engine's handle on the shared work, and the lane it serves.
struct Share<'s, 'w>(&'s Mutex<Shared<'w>>, usize);

impl<'s, 'w> Share<'s, 'w> {
    fn lock(&self) -> std::sync::MutexGuard<'s, Shared<'w>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Work for Share<'_, '_> {
    fn next_request(&mut self) -> Result<Option<Request>> {
        let mut shared = self.lock();
        if shared.failed {
            return Ok(None);
        }
        let next = shared.work.next_request_in(self.1);
        match &next {
            Ok(Some(_)) => shared.running += 1,
            Ok(None) => {}
            Err(_) => shared.failed = true,
        }
        next
    }

    fn done(&mut self, completion: Completion) -> Result<()> {
        let mut shared = self.lock();
        shared.running -= 1;
        let done = shared.work.done(completion);
        shared.failed |= done.is_err();
        done
    }

    fn complete(&self) -> bool {
        let shared = self.lock();
        shared.failed || shared.work.complete()
    }

    /// Another engine's rows may still make new requests ready: some are running, or wait
    /// for another lane's engine.
    fn more_may_come(&self) -> bool {
        let shared = self.lock();
        !shared.failed && (shared.running > 0 || shared.work.more_may_come())
    }
}

/// Runs `work` on `options.engines` engines per device, `models` holding the run's model
/// loaded on each device (lane 0), plus one engine for `judge`, a separate judge model (lane
/// 1), when there is one. `--max-batch` and the KV-cache budget are per device (each GPU has its
/// own memory), split among that device's engines (and halved with a judge engine); the CPU
/// threads and `requestsPerMinute` are split among the run's engines, and the judge engine,
/// idle until rows are finished, may use every thread.
pub fn drive_engines(
    models: &[LoadedModel],
    judge: Option<&LoadedModel>,
    options: &EngineOptions,
    rate: Option<f64>,
    admission: Option<&(dyn Admission + Sync)>,
    max_len: usize,
    work: &mut (dyn Work + Send),
) -> Result<()> {
    let per_device = options.engines.max(1);
    let n = models.len() * per_device;
    let all_threads = rayon::current_num_threads();
    let kv_bytes = if judge.is_some() { options.kv_cache_bytes / 2 } else { options.kv_cache_bytes };
    let mut engines: Vec<EngineSpec> = (0..n)
        .map(|i| EngineSpec {
            model: &models[i / per_device],
            lane: 0,
            threads: (all_threads / n).max(1),
            batch: options.max_batch.div_ceil(per_device),
            kv_bytes: kv_bytes / per_device,
            rate: rate.map(|per_minute| per_minute / n as f64),
        })
        .collect();
    if let Some(judge) = judge {
        let (batch, threads) = (options.max_batch, all_threads);
        engines.push(EngineSpec { model: judge, lane: 1, threads, batch, kv_bytes, rate: None });
    }
    let shared = Mutex::new(Shared { work, running: 0, failed: false });
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = engines
            .iter()
            .map(|spec| {
                let shared = &shared;
                scope.spawn(move || spec.run(options, admission, max_len, shared))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("an engine thread panicked"))))
            .collect()
    });
    results.into_iter().collect()
}

/// One engine of [`drive_engines`].
struct EngineSpec<'m> {
    model: &'m LoadedModel,
    lane: usize,
    threads: usize,
    batch: usize,
    kv_bytes: usize,
    /// Requests per minute for this engine.
    rate: Option<f64>,
}

impl EngineSpec<'_> {
    /// Runs this engine in a thread pool of its own until the shared work is done (or failed).
    fn run(
        &self,
        options: &EngineOptions,
        admission: Option<&(dyn Admission + Sync)>,
        max_len: usize,
        shared: &Mutex<Shared<'_>>,
    ) -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(self.threads).build()?;
        pool.install(|| {
            let config =
                SchedulerConfig { prefill_chunk: options.prefill_chunk, stop_tokens: self.model.text.stop_ids.clone() };
            let mut engine = Engine::new(self.model.decoder.clone(), self.batch, max_len, self.kv_bytes)?;
            let mut cap = self.rate.map(RateCap::per_minute);
            let limiter = cap.as_mut().map(|c| (&mut c.bucket, c.clock.as_ref() as &dyn Clock));
            let admission: &dyn Admission = match admission {
                Some(a) => a,
                None => &AlwaysAdmit,
            };
            let ran =
                scheduler::run(&mut engine, &config, &mut Share(shared, self.lane), limiter, admission).map(|_| ());
            if ran.is_err() {
                Share(shared, self.lane).lock().failed = true;
            }
            ran
        })
    }
}

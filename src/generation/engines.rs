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

/// One engine's handle on the shared work.
struct Share<'s, 'w>(&'s Mutex<Shared<'w>>);

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
        let next = shared.work.next_request();
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

    /// Another engine's rows may still make new requests ready.
    fn more_may_come(&self) -> bool {
        let shared = self.lock();
        !shared.failed && shared.running > 0
    }
}

/// Runs `work` on `options.engines` engines per device, `models` holding the model loaded on
/// each device. `--max-batch` and the KV-cache budget are per device (each GPU has its own
/// memory), split among that device's engines; the CPU threads and `requestsPerMinute` are
/// split among all the engines.
pub fn drive_engines(
    models: &[LoadedModel],
    options: &EngineOptions,
    rate: Option<f64>,
    admission: Option<&(dyn Admission + Sync)>,
    max_len: usize,
    work: &mut (dyn Work + Send),
) -> Result<()> {
    let per_device = options.engines.max(1);
    let n = models.len() * per_device;
    let threads = (rayon::current_num_threads() / n).max(1);
    let shared = Mutex::new(Shared { work, running: 0, failed: false });
    let config = SchedulerConfig { prefill_chunk: options.prefill_chunk, stop_tokens: models[0].text.stop_ids.clone() };
    let one = |i: usize| -> Result<()> {
        let model = &models[i / per_device];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        pool.install(|| {
            let batch = options.max_batch.div_ceil(per_device);
            let mut engine = Engine::new(model.decoder.clone(), batch, max_len, options.kv_cache_bytes / per_device)?;
            let mut cap = rate.map(|per_minute| RateCap::per_minute(per_minute / n as f64));
            let limiter = cap.as_mut().map(|c| (&mut c.bucket, c.clock.as_ref() as &dyn Clock));
            let admission: &dyn Admission = match admission {
                Some(a) => a,
                None => &AlwaysAdmit,
            };
            let ran = scheduler::run(&mut engine, &config, &mut Share(&shared), limiter, admission).map(|_| ());
            if ran.is_err() {
                Share(&shared).lock().failed = true;
            }
            ran
        })
    };
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|i| scope.spawn(move || one(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("an engine thread panicked"))))
            .collect()
    });
    results.into_iter().collect()
}

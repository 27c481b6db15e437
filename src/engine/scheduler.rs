//! Continuous batching. Requests wait in a queue; up to `max_batch` run at once, each in its
//! own KV-cache slot. Every step runs all decoding rows plus up to `prefill_chunk` prompt
//! tokens, so a long prompt is fed in pieces instead of stalling everyone's decoding. A row
//! that finishes frees its slot, and the next request takes it in the same step. A row's
//! pieces are the same whatever else runs, so its output is too.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Result;

use candle_core::Tensor;

use super::device_sampler;
use super::models::SeqStep;
use super::rate_limit::{Clock, TokenBucket};
use super::sampler::{RowDraw, Sampler, SamplingParams};

#[derive(Debug, Clone)]
pub struct Request {
    /// The caller's key for the request; completions carry it back.
    pub id: usize,
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token was sampled (it is not part of `tokens`).
    Stop,
    /// `max_new_tokens` were generated, or the context filled up.
    Length,
    /// The prompt alone does not fit the context; nothing was generated.
    PromptTooLong,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub id: usize,
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
}

/// One step's logits: one row per batch entry with `logits: true`, in batch order.
pub enum Logits {
    /// On the host: the CPU sampler reads them.
    Host(Vec<Vec<f32>>),
    /// `[rows, vocab]` on the model's device: sampled there, only token ids come back.
    Device(Tensor),
}

/// What the scheduler needs from a model: one forward over a mixed batch.
pub trait BatchModel {
    /// Longest sequence (prompt + generated) a slot holds.
    fn max_len(&self) -> usize;
    /// Concurrent sequences the model's cache holds.
    fn slots(&self) -> usize;
    /// Makes every slot hold at least `len` tokens where the model's context allows (keeping
    /// what the slots hold); the slot length after.
    fn reserve(&mut self, len: usize) -> Result<usize> {
        let _ = len;
        Ok(self.max_len())
    }
    fn forward(&mut self, batch: &[SeqStep]) -> Result<Logits>;
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Prompt tokens fed per step, across all prefilling rows.
    pub prefill_chunk: usize,
    pub stop_tokens: Vec<u32>,
}

/// Lets the caller stop admitting new requests (first Ctrl-C): rows in flight still finish.
pub trait Admission {
    fn admitting(&self) -> bool;
}

impl Admission for std::sync::atomic::AtomicBool {
    fn admitting(&self) -> bool {
        !self.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Admits everything.
pub struct AlwaysAdmit;

impl Admission for AlwaysAdmit {
    fn admitting(&self) -> bool {
        true
    }
}

struct Active {
    request: Request,
    slot: usize,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    generated: Vec<u32>,
    sampler: Sampler,
}

impl Active {
    fn len(&self) -> usize {
        self.prefilled + self.generated.len()
    }

    fn decoding(&self) -> bool {
        self.prefilled == self.request.prompt.len()
    }
}

/// One active row's part in a step: `len` tokens from position `start` (one, when decoding).
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Index into the active rows.
    row: usize,
    start: usize,
    len: usize,
    /// The row samples a token after this step: it is decoding, or this piece ends its prompt.
    samples: bool,
}

/// The rate cap and the clock it reads.
pub type Limiter<'a> = Option<(&'a mut TokenBucket, &'a dyn Clock)>;

/// Where a run's requests come from and where its completions go. A request may become ready
/// only when an earlier one finishes (a row's next stage), so the engine stays full without a
/// barrier between stages; the work may also end the run early.
pub trait Work {
    /// The next request to start, if one is ready now.
    fn next_request(&mut self) -> Result<Option<Request>>;
    /// The next request for an engine of lane `lane`, when engines run different models (lane
    /// 0: the run's model, others: helpers such as a judge model). Work with one lane has only
    /// lane 0.
    fn next_request_in(&mut self, lane: usize) -> Result<Option<Request>> {
        match lane {
            0 => self.next_request(),
            _ => Ok(None),
        }
    }
    /// A request finished (in finishing order).
    fn done(&mut self, completion: Completion) -> Result<()>;
    /// Nothing more is wanted: rows still running are abandoned.
    fn complete(&self) -> bool {
        false
    }
    /// With nothing ready now: requests running elsewhere (another engine) may make more ready,
    /// so an idle engine waits instead of ending.
    fn more_may_come(&self) -> bool {
        false
    }
}

/// How long an engine with nothing to run waits before asking its work again.
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// A fixed list of requests as [`Work`]; completions go to a callback.
pub struct Queue<F> {
    pub requests: VecDeque<Request>,
    pub on_done: F,
}

impl<F: FnMut(Completion) -> Result<()>> Work for Queue<F> {
    fn next_request(&mut self) -> Result<Option<Request>> {
        Ok(self.requests.pop_front())
    }
    fn done(&mut self, completion: Completion) -> Result<()> {
        (self.on_done)(completion)
    }
}

/// The request taken from the work but not started yet, the free KV-cache slots and the rows
/// in flight.
struct Batch {
    waiting: Option<Request>,
    free_slots: Vec<usize>,
    active: Vec<Active>,
    max_len: usize,
}

/// Runs `requests` to completion, calling `on_done` as each finishes (in finishing order).
/// Returns the requests never started because admission was closed.
pub fn run_to_completion<M: BatchModel>(
    model: &mut M,
    config: &SchedulerConfig,
    requests: Vec<Request>,
    limiter: Limiter,
    admission: &dyn Admission,
    on_done: impl FnMut(Completion) -> Result<()>,
) -> Result<Vec<Request>> {
    let mut queue = Queue { requests: requests.into(), on_done };
    let waiting = run(model, config, &mut queue, limiter, admission)?;
    Ok(waiting.into_iter().chain(queue.requests).collect())
}

/// Runs `work` until it has nothing ready and nothing is running, it is complete, or admission
/// closes and the rows in flight finish. Returns the request taken from `work` but never
/// started, if any.
pub fn run<M: BatchModel>(
    model: &mut M,
    config: &SchedulerConfig,
    work: &mut dyn Work,
    mut limiter: Limiter,
    admission: &dyn Admission,
) -> Result<Option<Request>> {
    let mut batch =
        Batch { waiting: None, free_slots: (0..model.slots()).rev().collect(), active: Vec::new(), max_len: 0 };
    loop {
        if work.complete() {
            return Ok(None);
        }
        batch.admit(model, work, &mut limiter, admission)?;
        if batch.active.is_empty() {
            if batch.waiting.is_none() && admission.admitting() && work.more_may_come() {
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
            if batch.waiting.is_none() || !admission.admitting() {
                return Ok(batch.waiting);
            }
            wait_for_rate_cap(&mut limiter);
            continue;
        }
        let plan = batch.plan(config.prefill_chunk.max(1));
        let tokens = batch.forward_and_sample(model, &plan)?;
        batch.advance(&plan, tokens, &config.stop_tokens, work)?;
    }
}

/// Only the rate cap holds the queue back: sleep until the next start is allowed.
fn wait_for_rate_cap(limiter: &mut Limiter) {
    if let Some((bucket, clock)) = limiter.as_mut() {
        let wait = bucket.wait_time(clock.now());
        clock.sleep(wait.max(Duration::from_millis(1)));
    }
}

impl Batch {
    /// Admits ready requests into free slots, as the rate cap and `admission` allow, first
    /// making the model's slots long enough for each. A request that cannot run (empty or too
    /// long a prompt, no new tokens) is finished at once.
    fn admit<M: BatchModel>(
        &mut self,
        model: &mut M,
        work: &mut dyn Work,
        limiter: &mut Limiter,
        admission: &dyn Admission,
    ) -> Result<()> {
        while !self.free_slots.is_empty() && admission.admitting() {
            if self.waiting.is_none() {
                self.waiting = work.next_request()?;
            }
            let Some(request) = &self.waiting else { break };
            self.max_len = model.reserve(request.prompt.len() + request.params.max_new_tokens)?;
            let unrunnable = if request.prompt.is_empty() || request.prompt.len() >= self.max_len {
                Some(FinishReason::PromptTooLong)
            } else {
                (request.params.max_new_tokens == 0).then_some(FinishReason::Length)
            };
            if let Some((bucket, clock)) = limiter.as_mut() {
                if !bucket.try_take(clock.now()) {
                    break;
                }
            }
            let Some(request) = self.waiting.take() else { break };
            if let Some(finish) = unrunnable {
                work.done(Completion {
                    id: request.id,
                    tokens: Vec::new(),
                    finish,
                    prompt_tokens: request.prompt.len(),
                })?;
                continue;
            }
            let Some(slot) = self.free_slots.pop() else { break };
            let sampler = Sampler::new(request.params.clone());
            self.active.push(Active { request, slot, prefilled: 0, generated: Vec::new(), sampler });
        }
        Ok(())
    }

    /// The step: every decoding row, then prompt pieces in admission order within `chunk`
    /// prompt tokens.
    ///
    /// A prompt is always cut at multiples of `chunk` from its own start, never by what is left
    /// of the budget: the cut changes the floating-point sums, so a row's logits (and sampled
    /// tokens) would otherwise depend on what it shares a step with, and a resumed run would
    /// not repeat an uninterrupted one. A row whose next piece does not fit waits.
    fn plan(&self, chunk: usize) -> Vec<Piece> {
        let mut plan: Vec<Piece> = Vec::new();
        for (row, a) in self.active.iter().enumerate() {
            if a.decoding() {
                plan.push(Piece { row, start: a.len() - 1, len: 1, samples: true });
            }
        }
        let mut budget = chunk;
        for (row, a) in self.active.iter().enumerate() {
            let len = (a.request.prompt.len() - a.prefilled).min(chunk);
            if len > 0 && len <= budget {
                budget -= len;
                plan.push(Piece { row, start: a.prefilled, len, samples: a.prefilled + len == a.request.prompt.len() });
            }
        }
        plan
    }

    /// Runs the step and samples one token for each piece that samples, in plan order.
    fn forward_and_sample<M: BatchModel>(&mut self, model: &mut M, plan: &[Piece]) -> Result<Vec<u32>> {
        let steps: Vec<SeqStep> = plan
            .iter()
            .map(|p| {
                let a = &self.active[p.row];
                let tokens = if a.decoding() {
                    std::slice::from_ref(a.generated.last().expect("a decoding row has generated a token"))
                } else {
                    &a.request.prompt[p.start..p.start + p.len]
                };
                SeqStep { slot: a.slot, start: p.start, tokens, logits: p.samples }
            })
            .collect();
        let logits = model.forward(&steps)?;
        drop(steps);
        let sampling: Vec<usize> = plan.iter().filter(|p| p.samples).map(|p| p.row).collect();
        Ok(match logits {
            Logits::Host(rows) => {
                anyhow::ensure!(
                    rows.len() == sampling.len(),
                    "the model returned {} logit rows for {} sampling rows",
                    rows.len(),
                    sampling.len()
                );
                sampling.iter().zip(&rows).map(|(&i, row)| self.active[i].sampler.sample(row)).collect()
            }
            Logits::Device(tensor) => {
                let draws: Vec<RowDraw> = sampling.iter().map(|&i| self.active[i].sampler.row_draw()).collect();
                device_sampler::sample(&tensor, &draws)?
            }
        })
    }

    /// Records the step: prompt progress, sampled tokens, and rows that finished (their slots
    /// are freed for the next step).
    fn advance(&mut self, plan: &[Piece], tokens: Vec<u32>, stop_tokens: &[u32], work: &mut dyn Work) -> Result<()> {
        let mut tokens = tokens.into_iter();
        let mut finished = Vec::new();
        for p in plan {
            let a = &mut self.active[p.row];
            if !a.decoding() {
                a.prefilled += p.len;
            }
            if !p.samples {
                continue;
            }
            let token = tokens.next().ok_or_else(|| anyhow::anyhow!("the sampler returned too few tokens"))?;
            let finish = if stop_tokens.contains(&token) {
                Some(FinishReason::Stop)
            } else {
                a.generated.push(token);
                let full = a.len() >= self.max_len;
                (a.generated.len() >= a.request.params.max_new_tokens || full).then_some(FinishReason::Length)
            };
            if let Some(finish) = finish {
                finished.push((p.row, finish));
            }
        }
        // Remove finished rows from the back so indices stay valid.
        finished.sort_unstable_by_key(|&(i, _)| std::cmp::Reverse(i));
        for (i, finish) in finished {
            let a = self.active.swap_remove(i);
            self.free_slots.push(a.slot);
            work.done(Completion {
                id: a.request.id,
                prompt_tokens: a.request.prompt.len(),
                tokens: a.generated,
                finish,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rate_limit::tests::FakeClock;

    /// A fake model whose next token is a pure function of the sequence so far, so the
    /// scheduler's bookkeeping can be checked exactly. It records each step's shape.
    struct Echo {
        slots: usize,
        max_len: usize,
        contents: Vec<Vec<u32>>,
        steps: Vec<Vec<(usize, usize, usize)>>,
    }

    const VOCAB: usize = 16;

    impl BatchModel for Echo {
        fn max_len(&self) -> usize {
            self.max_len
        }
        fn slots(&self) -> usize {
            self.slots
        }
        fn forward(&mut self, batch: &[SeqStep]) -> Result<Logits> {
            self.steps.push(batch.iter().map(|s| (s.slot, s.start, s.tokens.len())).collect());
            let mut out = Vec::new();
            for s in batch {
                let seq = &mut self.contents[s.slot];
                assert_eq!(seq.len().min(s.start), s.start, "positions must continue the slot");
                seq.truncate(s.start);
                seq.extend_from_slice(s.tokens);
                if s.logits {
                    let next = (seq.iter().sum::<u32>() + seq.len() as u32) % VOCAB as u32;
                    let mut row = vec![0.0; VOCAB];
                    row[next as usize] = 1.0;
                    out.push(row);
                }
            }
            Ok(Logits::Host(out))
        }
    }

    fn echo(slots: usize, max_len: usize) -> Echo {
        Echo { slots, max_len, contents: vec![Vec::new(); slots], steps: Vec::new() }
    }

    fn greedy(max_new_tokens: usize) -> SamplingParams {
        SamplingParams { temperature: 0.0, top_p: 1.0, top_k: 0, max_new_tokens, seed: 0 }
    }

    fn requests(n: usize) -> Vec<Request> {
        (0..n)
            .map(|i| Request {
                id: i,
                prompt: (0..(3 + 5 * i) as u32).map(|t| t % 7 + 1).collect(),
                params: greedy(4 + i % 3),
            })
            .collect()
    }

    fn run_all(model: &mut Echo, chunk: usize, reqs: Vec<Request>) -> Vec<Completion> {
        let config = SchedulerConfig { prefill_chunk: chunk, stop_tokens: vec![0] };
        let mut done = Vec::new();
        run_to_completion(model, &config, reqs, None, &AlwaysAdmit, |c| {
            done.push(c);
            Ok(())
        })
        .unwrap();
        done.sort_by_key(|c| c.id);
        done
    }

    #[test]
    fn output_does_not_depend_on_batch_size_or_chunking() {
        let alone = run_all(&mut echo(1, 64), 1000, requests(9));
        for (slots, chunk) in [(4, 1000), (32, 1000), (3, 4), (2, 1)] {
            let batched = run_all(&mut echo(slots, 64), chunk, requests(9));
            for (a, b) in alone.iter().zip(&batched) {
                assert_eq!((a.id, &a.tokens, a.finish), (b.id, &b.tokens, b.finish), "slots {slots} chunk {chunk}");
            }
        }
    }

    #[test]
    fn finished_slot_is_refilled_in_the_next_step_and_chunks_respect_the_budget() {
        let mut model = echo(2, 64);
        let done = run_all(&mut model, 6, requests(5));
        assert_eq!(done.len(), 5);
        for step in &model.steps {
            let prompt_tokens: usize = step.iter().filter(|s| s.2 > 1).map(|s| s.2).sum();
            assert!(prompt_tokens <= 6, "{step:?}");
            assert!(step.len() <= 2);
        }
        // Both slots stay busy while work remains: no step with one row while the queue has
        // requests waiting, except the tail.
        let busy = model.steps.iter().filter(|s| s.len() == 2).count();
        assert!(busy * 2 > model.steps.len(), "{:?}", model.steps);
    }

    #[test]
    fn prompts_are_cut_at_the_same_places_whatever_shares_the_step() {
        for slots in [1, 2, 5] {
            let mut model = echo(slots, 64);
            run_all(&mut model, 4, requests(6));
            for step in &model.steps {
                for &(_, start, n) in step.iter().filter(|s| s.2 > 1) {
                    assert_eq!(start % 4, 0, "slots {slots}: a piece starts mid-chunk: {step:?}");
                    assert!(n <= 4);
                }
            }
        }
    }

    #[test]
    fn stop_token_and_context_limit_end_rows() {
        // Echo's next token is 0 (the stop token) when sum + len is a multiple of 16.
        let reqs = vec![Request { id: 0, prompt: vec![15], params: greedy(50) }];
        let done = run_all(&mut echo(1, 64), 100, reqs);
        assert_eq!(done[0].finish, FinishReason::Stop);
        assert!(!done[0].tokens.contains(&0));

        let reqs = vec![Request { id: 0, prompt: vec![1, 2, 3], params: greedy(50) }];
        let done = run_all(&mut echo(1, 6), 100, reqs);
        assert!(matches!(done[0].finish, FinishReason::Length | FinishReason::Stop));
        assert!(done[0].tokens.len() <= 3);

        let reqs = vec![Request { id: 0, prompt: vec![1; 6], params: greedy(5) }];
        assert_eq!(run_all(&mut echo(1, 6), 100, reqs)[0].finish, FinishReason::PromptTooLong);
    }

    #[test]
    fn rate_cap_spaces_out_request_starts() {
        let clock = FakeClock::default();
        let mut bucket = TokenBucket::new(60.0, clock.now());
        let config = SchedulerConfig { prefill_chunk: 100, stop_tokens: vec![] };
        let mut model = echo(8, 64);
        run_to_completion(&mut model, &config, requests(4), Some((&mut bucket, &clock)), &AlwaysAdmit, |_| Ok(()))
            .unwrap();
        // With 60/min and no other delay, starts happen at t = 0, 1, 2, 3 s: the fake clock
        // advanced by the waits alone.
        assert!(clock.now() >= Duration::from_secs(3) && clock.now() < Duration::from_secs(4), "{:?}", clock.now());
        assert_eq!(model.steps[0].len(), 1, "only one request may start at t=0");
    }

    #[test]
    fn closed_admission_returns_unstarted_requests() {
        let stop = std::sync::atomic::AtomicBool::new(true);
        let config = SchedulerConfig { prefill_chunk: 100, stop_tokens: vec![] };
        let left = run_to_completion(&mut echo(2, 64), &config, requests(3), None, &stop, |_| Ok(())).unwrap();
        assert_eq!(left.len(), 3);
    }
}

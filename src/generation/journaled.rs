//! The journaled, retrying generator under `synth run`: every generation is appended to the
//! run's journal as it finishes, replayed from it when an earlier attempt of the run already
//! did it, and retried with a derived seed when the caller's check rejects it.

use std::sync::atomic::AtomicBool;

use anyhow::Result;

use super::batch::{generate, mix_seed, BatchContext, EngineOptions, Generated, Job, RateCap};
use super::journal::{Journal, Key};
use crate::engine::scheduler::Admission;
use crate::error::SynthError;
use crate::model::LoadedModel;
use crate::progress::{Progress, ProgressMode};

/// Why a check rejected a generation, and whether a new sampling seed could help.
pub trait Rejection: Copy {
    fn worth_retrying(&self) -> bool;
}

/// Everything but the model and the journal that a [`JournaledGenerator`] needs.
pub struct GeneratorSettings<'a> {
    pub engine: EngineOptions,
    pub rate: Option<RateCap>,
    /// Set (by Ctrl-C) to stop admitting new generations; the stage then ends as interrupted.
    pub stop: Option<&'a AtomicBool>,
    pub progress: ProgressMode,
    /// Extra attempts for a rejected generation.
    pub retries: u32,
}

/// Tokens and retries over a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct GenerationCounts {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Generations that were a retry of a rejected one.
    pub retried: usize,
    /// Accepted generations that were a retry.
    pub recovered: usize,
}

pub struct JournaledGenerator<'a> {
    model: &'a LoadedModel,
    settings: GeneratorSettings<'a>,
    journal: Journal,
    counts: GenerationCounts,
}

/// A stage's outcome for one caller key (e.g. a seed row): the accepted text, or why not.
pub type Outcome<R> = (usize, Result<String, R>);

impl<'a> JournaledGenerator<'a> {
    pub fn new(model: &'a LoadedModel, journal: Journal, settings: GeneratorSettings<'a>) -> Self {
        Self { model, settings, journal, counts: GenerationCounts::default() }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn retries(&self) -> u32 {
        self.settings.retries
    }

    /// The journal (to remove once the output is published) and the run's counts.
    pub fn finish(self) -> (Journal, GenerationCounts) {
        (self.journal, self.counts)
    }

    /// Generates `jobs` (key, job) for `stage`; for each key, in key order, the accepted text
    /// or why it was rejected. Attempt `a > 0` of a key samples with a seed mixed from its
    /// first seed and `a`, so retries are as reproducible as first tries.
    pub fn generate_stage<R: Rejection>(
        &mut self,
        stage: u8,
        label: &str,
        jobs: Vec<(usize, Job)>,
        check: impl Fn(&Generated) -> Result<String, R>,
    ) -> Result<Vec<Outcome<R>>> {
        let mut outcome = Vec::with_capacity(jobs.len());
        let mut pending = jobs;
        for attempt in 0..=self.settings.retries {
            let firsts = std::mem::take(&mut pending);
            let results = self.attempt(stage, label, attempt, &firsts)?;
            for ((key, first), generated) in firsts.into_iter().zip(results) {
                self.count(&generated, attempt);
                match check(&generated) {
                    Ok(text) => {
                        self.counts.recovered += usize::from(attempt > 0);
                        outcome.push((key, Ok(text)));
                    }
                    Err(reason) if attempt < self.settings.retries && reason.worth_retrying() => pending.push((key, first)),
                    Err(reason) => outcome.push((key, Err(reason))),
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        outcome.sort_by_key(|(key, _)| *key);
        Ok(outcome)
    }

    /// One attempt at every job: replayed from the journal where it holds the generation,
    /// generated (and journaled) otherwise.
    fn attempt(&mut self, stage: u8, label: &str, attempt: u32, firsts: &[(usize, Job)]) -> Result<Vec<Generated>> {
        let jobs: Vec<(usize, Job)> = firsts.iter().map(|(key, first)| (*key, with_attempt_seed(first, attempt))).collect();
        let key = |row| Key { stage, row, attempt };
        let mut results: Vec<Option<Generated>> = jobs.iter().map(|(row, _)| self.journal.get(key(*row)).cloned()).collect();
        let todo: Vec<usize> = (0..jobs.len()).filter(|&i| results[i].is_none()).collect();
        if todo.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        let todo_jobs: Vec<Job> = todo.iter().map(|&i| jobs[i].1.clone()).collect();
        let label = if attempt == 0 { label.to_string() } else { format!("{label} retry {attempt}") };
        let mut progress = Progress::new(&label, todo_jobs.len(), self.settings.progress);
        let journal = &mut self.journal;
        let context = BatchContext {
            engine: &self.settings.engine,
            rate: self.settings.rate.as_mut(),
            admission: self.settings.stop.map(|s| s as &dyn Admission),
            progress: &mut progress,
        };
        let fresh = generate(self.model, &todo_jobs, context, |i, g| journal.record(key(jobs[todo[i]].0), g));
        progress.finish();
        let fresh = fresh.map_err(|e| self.stopped_by(e))?;
        self.journal.sync()?;
        for (&i, generated) in todo.iter().zip(fresh) {
            results[i] = generated;
        }
        if results.iter().any(Option::is_none) {
            return Err(self.interrupted());
        }
        Ok(results.into_iter().flatten().collect())
    }

    fn count(&mut self, generated: &Generated, attempt: u32) {
        self.counts.prompt_tokens += generated.prompt_tokens;
        self.counts.generated_tokens += generated.generated_tokens;
        self.counts.retried += usize::from(attempt > 0);
    }

    fn interrupted(&self) -> anyhow::Error {
        SynthError::interrupted(format!("interrupted: {} finished generations are kept in `{}`", self.journal.generations(), self.journal.path().display()))
            .hint("run the same command again to resume where this run stopped (`--restart` starts over)")
            .into()
    }

    /// An engine error ends the run, but what finished stays in the journal.
    fn stopped_by(&self, err: anyhow::Error) -> anyhow::Error {
        let kept = format!("the run stopped; {} finished generations are kept in `{}` and a rerun resumes from them", self.journal.generations(), self.journal.path().display());
        err.context(kept)
    }
}

/// The job of attempt `attempt`: the first attempt's, with a derived seed after the first.
fn with_attempt_seed(first: &Job, attempt: u32) -> Job {
    let mut job = first.clone();
    if attempt > 0 {
        job.params.seed = mix_seed(first.params.seed, attempt as u64);
    }
    job
}

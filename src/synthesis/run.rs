//! `synth run`: a recipe becomes a published, split dataset.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::failure_modes::FailureModes;
use super::general::{self, DropReason};
use super::journal::{self, Journal, Key};
use super::{check_context, generate, mix_seed, round3, EngineOptions, Generated, Job, Pipeline, RateCap};
use crate::device::{self, DeviceChoice};
use crate::error::SynthError;
use crate::model::{LoadedModel, Registry};
use crate::output;
use crate::engine::scheduler::Admission;
use crate::progress::{Progress, ProgressMode};
use crate::recipe::{Recipe, SynthesisType};
use crate::store::{Row, Store, KIND_FAILURE_MODES, KIND_SYNTHESIZED};

pub struct RunOptions {
    pub device: DeviceChoice,
    pub output_id: Option<String>,
    /// Use only the first N seed rows.
    pub limit: Option<usize>,
    pub model_path: Option<PathBuf>,
    pub overwrite: bool,
    /// Discard the journal of an interrupted run instead of resuming it.
    pub restart: bool,
    /// Extra attempts for a degenerate generation (only when sampling, temperature > 0).
    pub retries: u32,
    /// Set (by Ctrl-C) to stop admitting new generations; the run then ends as interrupted.
    pub stop: Option<Arc<AtomicBool>>,
    pub progress: ProgressMode,
    pub engine: EngineOptions,
}

#[derive(Debug)]
pub struct RunReport {
    pub id: String,
    pub path: PathBuf,
    /// Rows in train, validation, test.
    pub splits: [usize; 3],
    pub seed_rows: usize,
    pub dropped: usize,
    pub generated_tokens: usize,
    pub wall_seconds: f64,
}

impl RunReport {
    pub fn tokens_per_second(&self) -> f64 {
        self.generated_tokens as f64 / self.wall_seconds.max(1e-9)
    }
}

pub fn run(recipe_path: &Path, store: &Store, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let recipe = Recipe::from_path(recipe_path)?;
    let SynthesisType::General = recipe.synthesis.kind;
    let dataset_id = &recipe.synthesis.dataset_id;

    let mut seeds = store.load_rows(dataset_id).with_context(|| format!("loading seed dataset `{dataset_id}`"))?;
    if let Some(limit) = options.limit {
        seeds.truncate(limit);
    }
    if seeds.is_empty() {
        return Err(SynthError::invalid(format!("seed dataset `{dataset_id}` has no rows")).hint("import rows with `synth datasets import FILE --id ID`").into());
    }
    // A seed made by `synth eval` (failure modes) gets examples aimed at each mode.
    let seed_manifest = store.manifest(dataset_id)?;
    let seed_kind = seed_manifest.kind.clone();
    let pipeline: Box<dyn Pipeline + '_> = if seed_kind == KIND_FAILURE_MODES {
        Box::new(FailureModes::new(dataset_id, &seed_manifest, &seeds)?)
    } else {
        Box::new(general::General { seeds: &seeds })
    };

    // Settle a chosen output id before hours of generation, not after.
    let output_id = match &options.output_id {
        Some(id) => {
            store.dataset_dir(id)?;
            if store.exists(id)? && !options.overwrite {
                return Err(SynthError::invalid(format!("dataset `{id}` already exists"))
                    .hint("choose another `--output-id`, or pass `--overwrite` to replace it")
                    .into());
            }
            Some(id.clone())
        }
        None => None,
    };

    let device = device::open(options.device)?;
    let registry = Registry::load(Some(store.root()))?;
    let model = LoadedModel::load(&registry, &recipe.model.model_name, options.model_path.as_deref(), store.root(), &device)?;
    let inference = &recipe.inference;
    check_context(&model, inference, recipe_path, "inferenceConfig")?;

    let model_files = model_manifest(&model)?;
    let fingerprint = journal::fingerprint(&recipe.source, &seeds, &model_files["files"], device::name(&device))?;
    let output_id = match output_id {
        Some(id) => id,
        None => {
            let prefix = format!("{dataset_id}_synth");
            match Journal::find_resumable(store, &prefix, &fingerprint)? {
                Some(id) => id,
                None => Journal::next_free_id(store, &prefix)?,
            }
        }
    };
    let journal = Journal::open(store, &output_id, &fingerprint, options.restart)?;
    if journal.replayed() > 0 && options.progress != ProgressMode::Quiet {
        eprintln!("resuming `{output_id}`: {} generations done by an earlier run are kept", journal.replayed());
    }

    let params = |row: usize, stage: u64| inference.sampling(mix_seed(mix_seed(inference.seed, row as u64), stage));
    let mut stages = Stages {
        model: &model,
        engine: EngineOptions { enable_thinking: Some(inference.enable_thinking), ..options.engine.clone() },
        rate: inference.requests_per_minute.map(RateCap::per_minute),
        journal,
        stop: options.stop.as_deref(),
        progress: options.progress,
        retries: if inference.temperature > 0.0 { options.retries } else { 0 },
        counts: Counts::default(),
    };

    // Stage 1: new requests.
    let mut drops: Vec<DropReason> = Vec::new();
    let mut request_jobs = Vec::new();
    for i in 0..seeds.len() {
        match pipeline.request(i) {
            Ok(messages) => request_jobs.push((i, Job { messages, params: params(i, 1) })),
            Err(reason) => drops.push(reason),
        }
    }
    let mut answer_jobs = Vec::new();
    let mut requests = Vec::new();
    for (i, outcome) in stages.run(1, "requests", request_jobs, |g| general::check(g, DropReason::EmptyRequest, DropReason::RequestCutOff))? {
        match outcome {
            Ok(request) => {
                answer_jobs.push((i, Job { messages: pipeline.answer(i, &request), params: params(i, 2) }));
                requests.push(request);
            }
            Err(reason) => drops.push(reason),
        }
    }

    // Stage 2: answers to the requests that survived.
    let mut rows: Vec<Row> = Vec::new();
    let answers = stages.run(2, "answers", answer_jobs, |g| general::check(g, DropReason::EmptyAnswer, DropReason::AnswerCutOff))?;
    for (request, (i, outcome)) in requests.into_iter().zip(answers) {
        match outcome {
            Ok(answer) => {
                let provenance = json!({"model": model.resolved.spec.name, "seedDataset": dataset_id, "seedRow": i, "samplingSeed": mix_seed(inference.seed, i as u64)});
                let Value::Object(provenance) = provenance else { unreachable!("an object literal") };
                rows.push(pipeline.row(i, request, answer, provenance));
            }
            Err(reason) => drops.push(reason),
        }
    }
    let Stages { journal, counts, retries, .. } = stages;
    if rows.is_empty() {
        return Err(SynthError::failed(format!(
            "every generation was degenerate ({}), so there is no dataset to publish",
            Value::Object(general::drop_counts(&drops))
        ))
        .hint("raise `inferenceMaxNewTokens`, or check the model with `synth generate`")
        .into());
    }
    let (prompt_tokens, generated_tokens) = (counts.prompt_tokens, counts.generated_tokens);

    let wall_seconds = started.elapsed().as_secs_f64();
    let mut extra = Map::new();
    extra.insert("synthVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    extra.insert("recipeFile".into(), json!(recipe_path.display().to_string()));
    extra.insert("recipe".into(), recipe.source.clone());
    extra.insert("seedDataset".into(), json!({"id": dataset_id, "kind": seed_kind, "rowsUsed": seeds.len()}));
    extra.extend(pipeline.manifest(&rows));
    extra.insert("model".into(), model_files);
    extra.insert("device".into(), json!(device::name(&device)));
    extra.insert("inferenceSeed".into(), json!(inference.seed));
    extra.insert(
        "counts".into(),
        json!({
            "seedRows": seeds.len(),
            "rows": rows.len(),
            "dropped": drops.len(),
            "droppedBy": Value::Object(general::drop_counts(&drops)),
            "degeneratePolicy": "empty or cut-off requests and answers are retried with a new sampling seed, then dropped",
            "retriesPerGeneration": retries,
            "retried": counts.retried,
            "recoveredByRetry": counts.recovered,
        }),
    );
    extra.insert("resumedGenerations".into(), json!(journal.replayed()));
    extra.insert("tokens".into(), json!({"prompt": prompt_tokens, "generated": generated_tokens}));
    extra.insert("wallSeconds".into(), json!(round3(wall_seconds)));
    extra.insert("tokensPerSecond".into(), json!(round3(generated_tokens as f64 / wall_seconds.max(1e-9))));

    let distribution = recipe.synthesis.distribution;
    let (path, splits) = output::publish(store, &output_id, rows, distribution, inference.seed, KIND_SYNTHESIZED, extra, options.overwrite)?;
    journal.remove();
    Ok(RunReport { id: output_id, path, splits, seed_rows: seeds.len(), dropped: drops.len(), generated_tokens, wall_seconds })
}

/// The model as the manifest records it: names and every file with its sha256.
pub(crate) fn model_manifest(model: &LoadedModel) -> Result<Value> {
    let spec = &model.resolved.spec;
    let mut files = Vec::new();
    for (name, path) in &model.resolved.files {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        files.push(json!({"name": name, "path": path.display().to_string(), "bytes": bytes, "sha256": output::file_sha256(path)?}));
    }
    Ok(json!({"name": spec.name, "hfRepo": spec.hf_repo, "revision": spec.revision, "source": model.resolved.source.path().display().to_string(), "files": files}))
}

#[derive(Debug, Default)]
struct Counts {
    prompt_tokens: usize,
    generated_tokens: usize,
    /// Generations that were a retry of a degenerate one.
    retried: usize,
    /// Rows kept thanks to a retry.
    recovered: usize,
}

/// Runs the stages of a run: every generation is journaled as it finishes, replayed from the
/// journal when an earlier run already did it, and retried when degenerate.
struct Stages<'a> {
    model: &'a LoadedModel,
    engine: EngineOptions,
    rate: Option<RateCap>,
    journal: Journal,
    stop: Option<&'a AtomicBool>,
    progress: ProgressMode,
    retries: u32,
    counts: Counts,
}

impl Stages<'_> {
    /// Generates `jobs` (seed row, job) for `stage`; for each row, in row order, the accepted
    /// text or why it was dropped. Attempt `a > 0` of a row samples with a seed mixed from its
    /// first seed and `a`, so retries are as reproducible as first tries.
    fn run(
        &mut self,
        stage: u8,
        label: &str,
        jobs: Vec<(usize, Job)>,
        check: impl Fn(&Generated) -> Result<String, DropReason>,
    ) -> Result<Vec<(usize, Result<String, DropReason>)>> {
        let mut outcome = Vec::with_capacity(jobs.len());
        let mut pending = jobs;
        for attempt in 0..=self.retries {
            let firsts = std::mem::take(&mut pending);
            let jobs: Vec<(usize, Job)> = firsts
                .iter()
                .map(|(row, first)| {
                    let mut job = first.clone();
                    if attempt > 0 {
                        job.params.seed = mix_seed(first.params.seed, attempt as u64);
                    }
                    (*row, job)
                })
                .collect();
            let key = |row| Key { stage, row, attempt };
            let mut results: Vec<Option<Generated>> = jobs.iter().map(|(row, _)| self.journal.get(key(*row)).cloned()).collect();
            let todo: Vec<usize> = (0..jobs.len()).filter(|&i| results[i].is_none()).collect();
            if !todo.is_empty() {
                let todo_jobs: Vec<Job> = todo.iter().map(|&i| jobs[i].1.clone()).collect();
                let label = if attempt == 0 { label.to_string() } else { format!("{label} retry {attempt}") };
                let mut progress = Progress::new(&label, todo_jobs.len(), self.progress);
                let journal = &mut self.journal;
                let admission = self.stop.map(|s| s as &dyn Admission);
                let fresh = generate(self.model, &todo_jobs, &self.engine, self.rate.as_mut(), admission, &mut progress, |i, g| {
                    journal.record(key(jobs[todo[i]].0), g)
                });
                progress.finish();
                let fresh = fresh.map_err(|e| self.stopped_by(e))?;
                self.journal.sync()?;
                for (&i, generated) in todo.iter().zip(fresh) {
                    results[i] = generated;
                }
                if results.iter().any(Option::is_none) {
                    return Err(self.interrupted());
                }
            }
            for ((row, first), generated) in firsts.into_iter().zip(results.into_iter().flatten()) {
                self.counts.prompt_tokens += generated.prompt_tokens;
                self.counts.generated_tokens += generated.generated_tokens;
                self.counts.retried += usize::from(attempt > 0);
                match check(&generated) {
                    Ok(text) => {
                        self.counts.recovered += usize::from(attempt > 0);
                        outcome.push((row, Ok(text)));
                    }
                    Err(reason) if attempt < self.retries && reason != DropReason::PromptTooLong => pending.push((row, first)),
                    Err(reason) => outcome.push((row, Err(reason))),
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        outcome.sort_by_key(|(row, _)| *row);
        Ok(outcome)
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

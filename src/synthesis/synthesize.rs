//! `synth run`: a recipe becomes a published, split dataset.
//!
//! load the recipe and seed rows → settle the output id → load the model → open the journal →
//! stage 1 (new requests) → stage 2 (answers) → rows → manifest → publish.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;

use super::candidates::{make_rows, Made, Origin, Volume, CANDIDATES_PER_SAMPLE};
use super::diversity;
use super::general::General;
use super::pipeline::{drop_counts, Pipeline};
use super::shard::Shard;
use super::targeted::FailureModes;
use crate::curation::{self, CurationFlags, Curator, JudgeSettings};
use crate::device::{self, DeviceChoice};
use crate::error::SynthError;
use crate::generation::journal::{self, Journal};
use crate::generation::{
    check_context, EngineOptions, GenerationCounts, GeneratorSettings, JournaledGenerator, RateCap,
};
use crate::model::{LoadedModel, Registry};
use crate::output::Destination;
use crate::progress::ProgressMode;
use crate::recipe::{InferenceSettings, Recipe, SynthesisType};
use crate::store::artifacts::{
    round3, ModelRecord, RunCounts, RunTokens, SeedDatasetRecord, ShardRecord, SynthesisManifest,
};
use crate::store::{Manifest, Row, Store, KIND_FAILURE_MODES, KIND_SHARD, KIND_SYNTHESIZED};

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
    /// Rows to publish (`--num-samples`; wins over the recipe's `numSamples`).
    pub num_samples: Option<usize>,
    /// The most candidates a run with `numSamples` tries (default `3 × numSamples`).
    pub max_candidates: Option<usize>,
    /// Later variants see other seeds and a rewrite direction (`--diversity on`, the default).
    pub diversity: bool,
    /// `--shard I/N`: make shard dataset `<output id>.shard-I-of-N` for `synth datasets merge`.
    pub shard: Option<Shard>,
    /// `--filter`, `--dedup-threshold`, `--exclude` (over the recipe's `curation`).
    pub curation: CurationFlags,
}

#[derive(Debug)]
pub struct RunReport {
    pub id: String,
    pub path: PathBuf,
    /// Rows in train, validation, test.
    pub splits: [usize; 3],
    pub seed_rows: usize,
    pub dropped: usize,
    /// Rows asked for, with the candidates tried and drops by reason, when the run had `numSamples`.
    pub volume: Option<(usize, usize, std::collections::BTreeMap<String, usize>)>,
    pub generated_tokens: usize,
    pub wall_seconds: f64,
}

impl RunReport {
    pub fn tokens_per_second(&self) -> f64 {
        self.generated_tokens as f64 / self.wall_seconds.max(1e-9)
    }
}

/// The seed dataset a run reads.
struct Seeds {
    id: String,
    rows: Vec<Row>,
    manifest: Manifest,
}

pub fn synthesize(recipe_path: &Path, store: &Store, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let recipe = Recipe::from_path(recipe_path)?;
    let SynthesisType::General = recipe.synthesis.kind;
    let seeds = load_seeds(store, &recipe.synthesis.dataset_id, options.limit)?;
    let pipeline = choose_pipeline(&seeds, options.diversity)?;
    let volume = volume(&recipe, options);
    let chosen_id = settle_output_id(store, options, &seeds.id)?;
    let curation = curation::settle(&recipe.synthesis.curation, &options.curation, &seeds.manifest);
    let mut curator = Curator::new(&curation, &seeds.rows, &curation::load_excluded(store, &curation.exclude)?);

    let devices = device::open_all(options.device)?;
    let registry = Registry::load(Some(store.root()))?;
    let models = load_on_each(&registry, &recipe.model.model_name, options, store, &devices)?;
    let (model, device) = (&models[0], &devices[0]);
    check_context(model, &recipe.inference, recipe_path, "inferenceConfig")?;
    let model_record = model.record()?;

    let fingerprint = journal::fingerprint(
        &recipe.source,
        &seeds.rows,
        &serde_json::to_value(&model_record.files)?,
        device::name(device),
        &format!("diversity {}; curation {curation:?}", if options.diversity { "on" } else { "off" }),
    )?;
    let output_id = match chosen_id {
        Some(id) => id,
        None => resumable_or_next_id(store, &seeds.id, &fingerprint)?,
    };
    if options.shard.is_some() && !options.overwrite && store.exists(&output_id)? {
        return published_shard(store, &output_id, &fingerprint, seeds.rows.len(), options.progress);
    }
    let journal = Journal::open(store, &output_id, &fingerprint, options.restart)?;
    if journal.replayed() > 0 && options.progress != ProgressMode::Quiet {
        eprintln!("resuming `{output_id}`: {} generations done by an earlier run are kept", journal.replayed());
    }
    let run_model = (recipe.model.model_name.as_str(), options.model_path.as_deref());
    let judge = load_judge(&registry, curator.judge(), run_model, store, device)?;
    let mut generator = JournaledGenerator::new(&models, journal, generator_settings(&recipe.inference, options))
        .with_judge(judge.as_ref());
    let origin = Origin { model: &model_record.name, seed_dataset: &seeds.id, seed_rows: seeds.rows.len() };
    let made = make_rows(&mut generator, pipeline.as_ref(), &mut curator, &recipe.inference, &origin, volume)?;
    let retries = generator.retries();
    let (journal, counts) = generator.finish();
    check_made(&made, volume)?;

    let wall_seconds = started.elapsed().as_secs_f64();
    let run = RunFacts {
        recipe_path,
        recipe: &recipe,
        seeds: &seeds,
        model: model_record,
        device: device::name(device),
        counts,
        retries,
        resumed: journal.replayed(),
        wall_seconds,
        volume,
        diversity: options.diversity,
        fingerprint,
    };
    let mut details = manifest_details(run, pipeline.as_ref(), &made);
    details.curation = Some(curator.record(&details.model.name));
    let (dropped, seed_rows, generated_tokens) = (made.drops.len(), seeds.rows.len(), counts.fresh_generated_tokens);
    let report_volume = volume.num_samples.map(|_| (made.asked, made.candidates, drop_counts(&made.drops)));
    let (path, splits) = publish(store, &output_id, options, &recipe, made, details)?;
    journal.remove();
    Ok(RunReport {
        id: output_id,
        path,
        splits,
        seed_rows,
        dropped,
        volume: report_volume,
        generated_tokens,
        wall_seconds,
    })
}

/// A run (not a shard, which may hold no usable seed row) that made no row has nothing to publish.
fn check_made(made: &Made, volume: Volume) -> Result<()> {
    if made.rows.is_empty() && volume.shard.is_none() {
        return Err(SynthError::failed(format!(
            "every generation was degenerate ({}), so there is no dataset to publish",
            serde_json::to_value(drop_counts(&made.drops))?
        ))
        .hint("raise `inferenceMaxNewTokens`, or check the model with `synth generate`")
        .into());
    }
    Ok(())
}

/// A whole run's rows are split (see [`Destination::publish_run`]); a shard's are kept in candidate
/// order, all in `train`, for `synth datasets merge`. The dropped candidates go beside them.
fn publish(
    store: &Store,
    id: &str,
    options: &RunOptions,
    recipe: &Recipe,
    made: Made,
    details: SynthesisManifest,
) -> Result<(PathBuf, [usize; 3])> {
    let kind = if options.shard.is_some() { KIND_SHARD } else { KIND_SYNTHESIZED };
    let destination = Destination { store, id, kind, overwrite: options.overwrite };
    if options.shard.is_none() {
        return destination.publish_run(made.rows, &made.dropped, recipe, details);
    }
    let count = made.rows.len();
    let splits = [("train", made.rows), ("validation", Vec::new()), ("test", Vec::new())];
    let path = destination.publish_with_dropped(&splits, &made.dropped, details)?;
    Ok((path, [count, 0, 0]))
}

fn load_seeds(store: &Store, dataset_id: &str, limit: Option<usize>) -> Result<Seeds> {
    let mut rows = store.load_rows(dataset_id).with_context(|| format!("loading seed dataset `{dataset_id}`"))?;
    if let Some(limit) = limit {
        rows.truncate(limit);
    }
    if rows.is_empty() {
        return Err(SynthError::invalid(format!("seed dataset `{dataset_id}` has no rows"))
            .hint("import rows with `synth datasets import FILE --id ID`")
            .into());
    }
    Ok(Seeds { id: dataset_id.to_string(), rows, manifest: store.manifest(dataset_id)? })
}

/// A seed made by `synth eval` (failure modes) gets examples aimed at each mode.
/// The recipe's model loaded on each device the run uses (one engine, or `--engines`, each).
fn load_on_each(
    registry: &Registry,
    model_name: &str,
    options: &RunOptions,
    store: &Store,
    devices: &[Device],
) -> Result<Vec<LoadedModel>> {
    devices
        .iter()
        .map(|device| LoadedModel::load(registry, model_name, options.model_path.as_deref(), store.root(), device))
        .collect()
}

/// The judge gate's model when it names one other than the recipe's `modelName` (loaded once,
/// on the first device); `None` when the run's own loaded model judges: the same name, or
/// (without `--model-path`) another name of the same registry entry.
fn load_judge(
    registry: &Registry,
    judge: Option<&JudgeSettings>,
    (run_model, model_path): (&str, Option<&Path>),
    store: &Store,
    device: &Device,
) -> Result<Option<LoadedModel>> {
    let Some(name) = judge.and_then(|j| j.model.as_deref()) else { return Ok(None) };
    let same_entry = |a: &str, b: &str| registry.find(a).zip(registry.find(b)).is_some_and(|(a, b)| a.name == b.name);
    if name.eq_ignore_ascii_case(run_model) || (model_path.is_none() && same_entry(name, run_model)) {
        return Ok(None);
    }
    let judge = LoadedModel::load(registry, name, None, store.root(), device)
        .with_context(|| format!("loading the judge model `{name}`"))?;
    Ok(Some(judge))
}

fn choose_pipeline(seeds: &Seeds, diversity: bool) -> Result<Box<dyn Pipeline + '_>> {
    Ok(if seeds.manifest.kind == KIND_FAILURE_MODES {
        Box::new(FailureModes::new(&seeds.id, &seeds.manifest, &seeds.rows)?)
    } else {
        Box::new(General { seeds: &seeds.rows, diversity })
    })
}

/// `--num-samples` wins over the recipe's `numSamples`; the budget defaults to a multiple of it.
fn volume(recipe: &Recipe, options: &RunOptions) -> Volume {
    let num_samples = options.num_samples.or(recipe.synthesis.num_samples);
    let max_candidates =
        options.max_candidates.unwrap_or(num_samples.unwrap_or(0).saturating_mul(CANDIDATES_PER_SAMPLE));
    Volume { num_samples, max_candidates, shard: options.shard }
}

/// Settles a chosen output id before hours of generation, not after. It may not name a
/// dataset the run reads.
fn settle_output_id(store: &Store, options: &RunOptions, seed_id: &str) -> Result<Option<String>> {
    let id = match (&options.output_id, options.shard) {
        (None, None) => return Ok(None),
        (None, Some(shard)) => {
            return Err(SynthError::invalid(format!("`--shard {}/{}` needs `--output-id`", shard.index, shard.count))
                .hint("name the merged dataset, e.g. `--output-id big`; shard I is stored as `big.shard-I-of-N`")
                .into())
        }
        (Some(base), shard) => {
            store.dataset_dir(base)?;
            shard.map_or_else(|| base.clone(), |s| s.dataset_id(base))
        }
    };
    let id = &id;
    store.dataset_dir(id)?;
    if id == seed_id {
        return Err(SynthError::invalid(format!(
            "`--output-id {id}` names the run's own seed dataset, which the run reads"
        ))
        .hint("choose another `--output-id`; a run never replaces its input")
        .into());
    }
    // A shard that exists may be the same work done already (a requeued Slurm task): that is
    // settled once the run's fingerprint is known, in `published_shard`.
    if store.exists(id)? && !options.overwrite && options.shard.is_none() {
        return Err(SynthError::invalid(format!("dataset `{id}` already exists"))
            .hint("choose another `--output-id`, or pass `--overwrite` to replace it")
            .into());
    }
    Ok(Some(id.clone()))
}

/// A shard whose dataset is already published: done, when the same work made it (a Slurm task
/// requeued after it finished runs again), else refused, as any existing `--output-id` is.
fn published_shard(
    store: &Store,
    id: &str,
    fingerprint: &str,
    seed_rows: usize,
    progress: ProgressMode,
) -> Result<RunReport> {
    let manifest = store.manifest(id)?;
    let details: Option<SynthesisManifest> = manifest.details().ok();
    let same = details.and_then(|d| d.shard).is_some_and(|shard| shard.fingerprint == fingerprint);
    if !same {
        return Err(SynthError::invalid(format!(
            "dataset `{id}` already exists, made by another run (its recipe, seed rows, model files or options differ)"
        ))
        .hint("choose another `--output-id`, or pass `--overwrite` to replace the shard")
        .into());
    }
    if progress != ProgressMode::Quiet {
        eprintln!("shard `{id}` is already published by this same run; nothing to do");
    }
    let rows = |name: &str| manifest.splits.iter().find(|s| s.name == name).map_or(0, |s| s.rows);
    Ok(RunReport {
        id: id.to_string(),
        path: store.dataset_dir(id)?,
        splits: [rows("train"), rows("validation"), rows("test")],
        seed_rows,
        dropped: 0,
        volume: None,
        generated_tokens: 0,
        wall_seconds: 0.0,
    })
}

/// Without `--output-id`: an interrupted run of the same work, or the next free id.
fn resumable_or_next_id(store: &Store, seed_id: &str, fingerprint: &str) -> Result<String> {
    let prefix = format!("{seed_id}_synth");
    match Journal::find_resumable(store, &prefix, fingerprint)? {
        Some(id) => Ok(id),
        None => Journal::next_free_id(store, &prefix),
    }
}

fn generator_settings<'a>(inference: &InferenceSettings, options: &'a RunOptions) -> GeneratorSettings<'a> {
    GeneratorSettings {
        engine: options.engine.thinking(inference),
        rate: RateCap::of(inference),
        stop: options.stop.as_deref(),
        progress: options.progress,
        retries: if inference.temperature > 0.0 { options.retries } else { 0 },
    }
}

/// What the manifest records of a run besides its rows.
struct RunFacts<'a> {
    recipe_path: &'a Path,
    recipe: &'a Recipe,
    seeds: &'a Seeds,
    model: ModelRecord,
    device: &'a str,
    counts: GenerationCounts,
    retries: u32,
    resumed: usize,
    wall_seconds: f64,
    volume: Volume,
    diversity: bool,
    fingerprint: String,
}

fn manifest_details(run: RunFacts, pipeline: &dyn Pipeline, made: &Made) -> SynthesisManifest {
    let counts = RunCounts {
        seed_rows: run.seeds.rows.len(),
        rows: made.rows.len(),
        dropped: made.drops.len(),
        dropped_by: drop_counts(&made.drops),
        degenerate_policy: "empty or cut-off requests and answers are retried with a new sampling seed, then dropped"
            .into(),
        retries_per_generation: run.retries,
        retried: run.counts.retried,
        recovered_by_retry: run.counts.recovered,
        num_samples: run.volume.num_samples,
        max_candidates: run.volume.num_samples.map(|_| run.volume.max_candidates),
        candidates: run.volume.num_samples.map(|_| made.candidates),
    };
    let mechanism = if run.diversity { "on" } else { "off" };
    let diversity = run.volume.num_samples.map(|_| diversity::measure(&made.requests, mechanism));
    let (generated, fresh) = (run.counts.generated_tokens, run.counts.fresh_generated_tokens);
    SynthesisManifest {
        synth_version: env!("CARGO_PKG_VERSION").into(),
        recipe_file: run.recipe_path.display().to_string(),
        recipe: run.recipe.source.clone(),
        seed_dataset: SeedDatasetRecord {
            id: run.seeds.id.clone(),
            kind: run.seeds.manifest.kind.clone(),
            rows_used: run.seeds.rows.len(),
        },
        targeted: pipeline.targeted(&made.rows),
        model: run.model,
        device: run.device.to_string(),
        inference_seed: run.recipe.inference.seed,
        counts,
        diversity,
        resumed_generations: run.resumed,
        tokens: RunTokens { prompt: run.counts.prompt_tokens, generated, generated_this_run: fresh },
        wall_seconds: round3(run.wall_seconds),
        tokens_per_second: round3(fresh as f64 / run.wall_seconds.max(1e-9)),
        curation: None,
        split_groups: None,
        shard: run.volume.shard.map(|s| ShardRecord { index: s.index, count: s.count, fingerprint: run.fingerprint }),
        dropped_file: None,
    }
}

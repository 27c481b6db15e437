//! `synth run`: a recipe becomes a published, split dataset.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::general::{self, DropReason};
use super::{generate, mix_seed, EngineOptions, RateCap};
use crate::device::{self, DeviceChoice};
use crate::engine::SamplingParams;
use crate::error::SynthError;
use crate::model::{LoadedModel, Registry};
use crate::output;
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
    if let Ok(seed) = store.manifest(&recipe.synthesis.dataset_id) {
        if seed.kind == KIND_FAILURE_MODES {
            return super::failure_modes::run(recipe, recipe_path, store, options, seed, started);
        }
    }
    let SynthesisType::General = recipe.synthesis.kind;
    let dataset_id = &recipe.synthesis.dataset_id;

    let mut seeds = store.load_rows(dataset_id).with_context(|| format!("loading seed dataset `{dataset_id}`"))?;
    if let Some(limit) = options.limit {
        seeds.truncate(limit);
    }
    if seeds.is_empty() {
        return Err(SynthError::invalid(format!("seed dataset `{dataset_id}` has no rows")).hint("import rows with `synth datasets import FILE --id ID`").into());
    }

    // Settle the output id before hours of generation, not after.
    let output_id = match &options.output_id {
        Some(id) => {
            store.dataset_dir(id)?;
            if store.exists(id)? && !options.overwrite {
                return Err(SynthError::invalid(format!("dataset `{id}` already exists"))
                    .hint("choose another `--output-id`, or pass `--overwrite` to replace it")
                    .into());
            }
            id.clone()
        }
        None => store.next_free_id(&format!("{dataset_id}_synth"))?,
    };

    let device = device::open(options.device)?;
    let registry = Registry::load(Some(store.root()))?;
    let model = LoadedModel::load(&registry, &recipe.model.model_name, options.model_path.as_deref(), store.root(), &device)?;
    let context = model.decoder.dims.context_len;
    let inference = &recipe.inference;
    if inference.max_new_tokens >= context {
        return Err(SynthError::invalid(format!(
            "{}: inferenceConfig.inferenceMaxNewTokens: `{}` must be less than the context length of `{}` ({context} tokens)",
            recipe_path.display(),
            inference.max_new_tokens,
            model.resolved.spec.name
        ))
        .into());
    }

    let params = |row: usize, stage: u64| SamplingParams {
        temperature: inference.temperature,
        top_p: inference.top_p,
        top_k: inference.top_k,
        max_new_tokens: inference.max_new_tokens,
        seed: mix_seed(mix_seed(inference.seed, row as u64), stage),
    };
    let engine = EngineOptions { enable_thinking: Some(inference.enable_thinking), ..options.engine.clone() };
    let mut rate = inference.requests_per_minute.map(RateCap::per_minute);

    // Stage 1: new requests.
    let request_jobs = general::request_jobs(&seeds, |i| params(i, 1));
    let runnable: Vec<(usize, super::Job)> = request_jobs.into_iter().enumerate().filter_map(|(i, j)| j.map(|j| (i, j))).collect();
    let mut drops: Vec<DropReason> = Vec::new();
    drops.extend(std::iter::repeat_n(DropReason::SeedWithoutUserMessage, seeds.len() - runnable.len()));
    let jobs: Vec<super::Job> = runnable.iter().map(|(_, j)| j.clone()).collect();
    let mut progress = Progress::new("requests", jobs.len(), options.progress);
    let requests = generate(&model, &jobs, &engine, rate.as_mut(), None, &mut progress)?;
    progress.finish();
    let mut generated_tokens: usize = requests.iter().flatten().map(|g| g.generated_tokens).sum();
    let mut prompt_tokens: usize = requests.iter().flatten().map(|g| g.prompt_tokens).sum();

    // Stage 2: answers to the requests that survived.
    let mut answer_inputs: Vec<(usize, String)> = Vec::new();
    for ((seed_index, _), result) in runnable.iter().zip(requests) {
        let result = result.context("a request generation did not finish")?;
        match general::check(&result, DropReason::EmptyRequest, DropReason::RequestCutOff) {
            Ok(text) => answer_inputs.push((*seed_index, text)),
            Err(reason) => drops.push(reason),
        }
    }
    let jobs: Vec<super::Job> = answer_inputs.iter().map(|(i, request)| general::answer_job(&seeds[*i], request, params(*i, 2))).collect();
    let mut progress = Progress::new("answers", jobs.len(), options.progress);
    let answers = generate(&model, &jobs, &engine, rate.as_mut(), None, &mut progress)?;
    progress.finish();
    generated_tokens += answers.iter().flatten().map(|g| g.generated_tokens).sum::<usize>();
    prompt_tokens += answers.iter().flatten().map(|g| g.prompt_tokens).sum::<usize>();

    let provenance: Map<String, Value> = [("model".to_string(), json!(model.resolved.spec.name)), ("seedDataset".to_string(), json!(dataset_id))].into_iter().collect();
    let mut rows: Vec<Row> = Vec::new();
    for ((seed_index, request), answer) in answer_inputs.into_iter().zip(answers) {
        let answer = answer.context("an answer generation did not finish")?;
        match general::check(&answer, DropReason::EmptyAnswer, DropReason::AnswerCutOff) {
            Ok(text) => rows.push(general::new_row(&seeds[seed_index], seed_index, request, text, &provenance, mix_seed(inference.seed, seed_index as u64))),
            Err(reason) => drops.push(reason),
        }
    }
    if rows.is_empty() {
        return Err(SynthError::failed(format!(
            "every generation was degenerate ({}), so there is no dataset to publish",
            Value::Object(general::drop_counts(&drops))
        ))
        .hint("raise `inferenceMaxNewTokens`, or check the model with `synth generate`")
        .into());
    }

    let wall_seconds = started.elapsed().as_secs_f64();
    let mut extra = Map::new();
    extra.insert("synthVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    extra.insert("recipeFile".into(), json!(recipe_path.display().to_string()));
    extra.insert("recipe".into(), recipe.source.clone());
    extra.insert("seedDataset".into(), json!({"id": dataset_id, "rowsUsed": seeds.len()}));
    extra.insert("model".into(), model_manifest(&model)?);
    extra.insert("device".into(), json!(device::name(&device)));
    extra.insert("inferenceSeed".into(), json!(inference.seed));
    extra.insert(
        "counts".into(),
        json!({
            "seedRows": seeds.len(),
            "rows": rows.len(),
            "dropped": drops.len(),
            "droppedBy": Value::Object(general::drop_counts(&drops)),
            "degeneratePolicy": "dropped: empty or cut-off requests and answers are not kept",
        }),
    );
    extra.insert("tokens".into(), json!({"prompt": prompt_tokens, "generated": generated_tokens}));
    extra.insert("wallSeconds".into(), json!(round3(wall_seconds)));
    extra.insert("tokensPerSecond".into(), json!(round3(generated_tokens as f64 / wall_seconds.max(1e-9))));

    let distribution = recipe.synthesis.distribution;
    let (path, splits) = output::publish(store, &output_id, rows, distribution, inference.seed, KIND_SYNTHESIZED, extra, options.overwrite)?;
    Ok(RunReport { id: output_id, path, splits, seed_rows: seeds.len(), dropped: drops.len(), generated_tokens, wall_seconds })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
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

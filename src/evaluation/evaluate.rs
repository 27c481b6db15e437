//! `synth eval`: an evaluation recipe becomes a stored run, and optionally a failure-mode dataset.
//!
//! load the recipe and examples → load the model and judges → answer → grade (every evaluator,
//! judges batched) → group the failures into modes → summarize → write the run → publish the
//! failure-mode dataset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use serde_json::Value;

use super::evaluators::{self, Outcome, Verdict};
use super::failure_modes::{self, FailureMode};
use super::judge;
use super::recipe::{render_template, EvalRecipe, EvaluatorKind, Judge};
use super::runs::{failure_modes_dataset_id, settle_run_id, write_run};
use crate::device::{self, DeviceChoice};
use crate::engine::FinishReason;
use crate::error::SynthError;
use crate::generation::{check_context, generate, mix_seed, BatchContext, EngineOptions, Generated, Job, RateCap};
use crate::model::{LoadedModel, Registry};
use crate::output::Destination;
use crate::progress::{Progress, ProgressMode};
use crate::store::artifacts::{
    round3, EvalDatasetRecord, EvalFailureMode, EvalResult, EvalSummary, EvalTokens, EvaluationRecord,
    EvaluatorSummary, FailureModeRecord, FailureModeRow, FailureModesManifest, TokenCounts,
};
use crate::store::manifest::now_rfc3339;
use crate::store::{Message, Row, Store, KIND_FAILURE_MODES};

pub struct EvalOptions {
    pub device: DeviceChoice,
    pub run_id: Option<String>,
    /// Evaluate only the first N dataset rows.
    pub limit: Option<usize>,
    /// Files for the evaluated model (the judge uses them too when it names the same model).
    pub model_path: Option<PathBuf>,
    pub progress: ProgressMode,
    pub engine: EngineOptions,
}

#[derive(Debug)]
pub struct EvalReport {
    pub run_id: String,
    pub path: PathBuf,
    pub rows: usize,
    pub failed_rows: usize,
    pub evaluators: Vec<EvaluatorCounts>,
    pub failure_modes_dataset: Option<String>,
    pub failure_modes: usize,
    pub wall_seconds: f64,
}

/// One evaluator's verdicts over a run.
#[derive(Debug, Clone, Default)]
pub struct EvaluatorCounts {
    pub name: String,
    pub type_name: String,
    pub pass: usize,
    pub fail: usize,
    pub unparseable: usize,
    pub skipped: usize,
}

impl EvaluatorCounts {
    /// Passes among the rows the evaluator applied to (unparseable judge replies count as not
    /// passed); `None` when it applied to none.
    pub fn pass_rate(&self) -> Option<f64> {
        let scored = self.pass + self.fail + self.unparseable;
        (scored > 0).then(|| self.pass as f64 / scored as f64)
    }

    fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Unparseable => self.unparseable += 1,
            Verdict::Skipped => self.skipped += 1,
        }
    }
}

/// A dataset row as an evaluation example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The conversation the model completes.
    pub prompt: Vec<Message>,
    pub reference: String,
}

impl Example {
    /// The last user message: what `{prompt}` means in a judge template.
    pub fn prompt_text(&self) -> &str {
        self.prompt.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.as_str())
    }
}

/// The reference of a row is its `metadata.reference` (a string) when there is one, and the
/// whole conversation is the prompt; otherwise the last assistant message is the reference
/// and the messages before it are the prompt. The prompt needs a user message.
pub fn example(row: &Row) -> std::result::Result<Example, String> {
    let from_metadata = row.metadata.as_ref().and_then(|m| m.get("reference"));
    let (prompt, reference) = match from_metadata {
        Some(Value::String(reference)) => (row.messages.clone(), reference.clone()),
        Some(_) => return Err("`metadata.reference` must be a string".into()),
        None => {
            let Some(last) = row.messages.iter().rposition(|m| m.role == "assistant") else {
                return Err("has no assistant message to use as the reference".into());
            };
            (row.messages[..last].to_vec(), row.messages[last].content.clone())
        }
    };
    if !prompt.iter().any(|m| m.role == "user") {
        return Err("has no user message before its reference".into());
    }
    Ok(Example { prompt, reference })
}

/// One row's result.
struct RowResult {
    example: Example,
    output: Generated,
    /// By evaluator, in recipe order.
    outcomes: Vec<Outcome>,
    /// The raw judge replies, by evaluator index.
    judge_replies: BTreeMap<usize, String>,
}

impl RowResult {
    /// The first evaluator (in recipe order) that failed the row.
    fn first_failure(&self) -> Option<usize> {
        self.outcomes.iter().position(|o| o.verdict == Verdict::Fail)
    }
}

/// The evaluated dataset's rows, as examples.
struct Examples {
    examples: Vec<Example>,
    rows_in_dataset: usize,
}

/// The evaluated model and the judge models it does not double as.
struct Models {
    evaluated: LoadedModel,
    /// Judge models other than the evaluated one, by registry name.
    judges: Vec<(String, LoadedModel)>,
    /// The judge model's registry name, by evaluator index.
    judge_of: BTreeMap<usize, String>,
}

impl Models {
    fn judge(&self, index: usize) -> &LoadedModel {
        let name = self.judge_of.get(&index);
        self.judges.iter().find(|(n, _)| Some(n) == name).map_or(&self.evaluated, |(_, m)| m)
    }
}

/// Failed rows (row index, first failing evaluator) and their modes.
struct Failures {
    failed: Vec<(usize, usize)>,
    modes: Vec<FailureMode>,
}

pub fn evaluate(recipe_path: &Path, store: &Store, options: &EvalOptions) -> Result<EvalReport> {
    let started = Instant::now();
    let recipe = EvalRecipe::from_path(recipe_path)?;
    let examples = load_examples(store, &recipe.dataset_id, options.limit)?;
    let run_id = settle_run_id(store, options.run_id.as_deref(), recipe.generate_failure_modes)?;
    let device = device::open(options.device)?;
    let models = load_models(store, &recipe, recipe_path, options, &device)?;

    let mut results = answer(&models.evaluated, &recipe, examples.examples, options)?;
    let judge_tokens = grade(&mut results, &recipe, &models, options)?;
    let counts = count_verdicts(&recipe, &results);
    let failures = find_failures(&recipe, &results);
    let dataset =
        (recipe.generate_failure_modes && !failures.failed.is_empty()).then(|| failure_modes_dataset_id(&run_id));

    let wall_seconds = started.elapsed().as_secs_f64();
    let run = RunFacts {
        run_id: &run_id,
        recipe_path,
        recipe: &recipe,
        models: &models,
        device: device::name(&device),
        rows_in_dataset: examples.rows_in_dataset,
        wall_seconds,
    };
    let summary = summarize(&run, &results, &counts, judge_tokens, &failures, dataset.clone())?;
    let path = write_run(store, &run_id, &result_records(&recipe, &results), &summary)?;
    if let Some(id) = &dataset {
        publish_failure_modes(store, id, &run_id, &recipe, &results, &failures)?;
    }
    Ok(EvalReport {
        run_id,
        path,
        rows: results.len(),
        failed_rows: failures.failed.len(),
        evaluators: counts,
        failure_modes_dataset: dataset,
        failure_modes: failures.modes.len(),
        wall_seconds,
    })
}

fn load_examples(store: &Store, dataset_id: &str, limit: Option<usize>) -> Result<Examples> {
    let mut rows = store.load_rows(dataset_id).with_context(|| format!("loading evaluation dataset `{dataset_id}`"))?;
    let rows_in_dataset = rows.len();
    if let Some(limit) = limit {
        rows.truncate(limit);
    }
    if rows.is_empty() {
        return Err(SynthError::invalid(format!("evaluation dataset `{dataset_id}` has no rows"))
            .hint("import rows with a prompt and a reference: `synth datasets import FILE --id ID`")
            .into());
    }
    let mut examples = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        examples.push(example(row).map_err(|problem| {
            SynthError::invalid(format!("dataset `{dataset_id}`, row {i}: {problem}")).hint(
                "each row needs a prompt and a reference answer: `{\"prompt\", \"response\"}`, messages ending in an assistant message, or a string `metadata.reference`",
            )
        })?);
    }
    Ok(Examples { examples, rows_in_dataset })
}

/// Judge models load before any generation, so a missing one fails fast; a judge naming the
/// evaluated model shares it.
fn load_models(
    store: &Store,
    recipe: &EvalRecipe,
    recipe_path: &Path,
    options: &EvalOptions,
    device: &Device,
) -> Result<Models> {
    let registry = Registry::load(Some(store.root()))?;
    let evaluated =
        LoadedModel::load(&registry, &recipe.model.model_name, options.model_path.as_deref(), store.root(), device)?;
    check_context(&evaluated, &recipe.inference, recipe_path, "recipeConfig.evaluationConfig.inferenceConfig")?;
    let mut models = Models { evaluated, judges: Vec::new(), judge_of: BTreeMap::new() };
    for (index, evaluator) in recipe.evaluators.iter().enumerate() {
        let EvaluatorKind::LlmJudge(spec) = &evaluator.kind else { continue };
        let name = registry.get(&spec.model.model_name)?.name.clone();
        if name != models.evaluated.resolved.spec.name && !models.judges.iter().any(|(n, _)| *n == name) {
            let loaded = LoadedModel::load(&registry, &name, None, store.root(), device)
                .with_context(|| format!("loading the judge model of evaluator `{}`", evaluator.name))?;
            models.judges.push((name.clone(), loaded));
        }
        models.judge_of.insert(index, name);
        let at = format!("recipeConfig.evaluationConfig.evaluators[{index}].inferenceConfig");
        check_context(models.judge(index), &spec.inference, recipe_path, &at)?;
    }
    Ok(models)
}

/// The evaluated model's answer to every example; row `i` samples with `mix_seed(seed, i)`.
fn answer(
    model: &LoadedModel,
    recipe: &EvalRecipe,
    examples: Vec<Example>,
    options: &EvalOptions,
) -> Result<Vec<RowResult>> {
    let jobs: Vec<Job> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| Job {
            messages: e.prompt.clone(),
            params: recipe.inference.sampling(mix_seed(recipe.inference.seed, i as u64)),
        })
        .collect();
    let outputs = run_batch(
        model,
        &jobs,
        "answers",
        &options.engine.thinking(&recipe.inference),
        RateCap::of(&recipe.inference),
        options.progress,
    )?;
    let mut results = Vec::with_capacity(examples.len());
    for (example, output) in examples.into_iter().zip(outputs) {
        let output = output.context("a generation did not finish")?;
        results.push(RowResult { example, output, outcomes: Vec::new(), judge_replies: BTreeMap::new() });
    }
    Ok(results)
}

fn run_batch(
    model: &LoadedModel,
    jobs: &[Job],
    label: &str,
    engine: &EngineOptions,
    mut rate: Option<RateCap>,
    mode: ProgressMode,
) -> Result<Vec<Option<Generated>>> {
    let mut progress = Progress::new(label, jobs.len(), mode);
    let context = BatchContext { engine, rate: rate.as_mut(), admission: None, progress: &mut progress };
    let outputs = generate(model, jobs, context, |_, _| Ok(()))?;
    progress.finish();
    Ok(outputs)
}

/// Every evaluator, in recipe order; judges run batched over all rows. Returns the judges'
/// prompt and generated tokens.
fn grade(
    results: &mut [RowResult],
    recipe: &EvalRecipe,
    models: &Models,
    options: &EvalOptions,
) -> Result<TokenCounts> {
    let mut judge_tokens = TokenCounts::default();
    for (index, evaluator) in recipe.evaluators.iter().enumerate() {
        match &evaluator.kind {
            EvaluatorKind::LlmJudge(spec) => {
                let replies = ask_judge(results, index, spec, &evaluator.name, models.judge(index), options)?;
                for (r, reply) in results.iter_mut().zip(replies) {
                    judge_tokens.prompt += reply.prompt_tokens;
                    judge_tokens.generated += reply.generated_tokens;
                    r.outcomes.push(judge_outcome(&reply));
                    r.judge_replies.insert(index, reply.text);
                }
            }
            kind => {
                for r in results.iter_mut() {
                    let outcome = evaluators::evaluate(kind, r.output.text.trim(), &r.example.reference)
                        .context("a deterministic evaluator")?;
                    r.outcomes.push(outcome);
                }
            }
        }
    }
    Ok(judge_tokens)
}

/// Judge `index`'s reply for every row; row `i` samples with `mix_seed(mix_seed(seed, i), 1 + index)`.
fn ask_judge(
    results: &[RowResult],
    index: usize,
    spec: &Judge,
    name: &str,
    model: &LoadedModel,
    options: &EvalOptions,
) -> Result<Vec<Generated>> {
    let jobs: Vec<Job> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let prompt =
                render_template(&spec.template, r.example.prompt_text(), &r.example.reference, r.output.text.trim());
            let seed = mix_seed(mix_seed(spec.inference.seed, i as u64), 1 + index as u64);
            Job { messages: vec![Message::new("user", prompt)], params: spec.inference.sampling(seed) }
        })
        .collect();
    let replies = run_batch(
        model,
        &jobs,
        &format!("judge {name}"),
        &options.engine.thinking(&spec.inference),
        RateCap::of(&spec.inference),
        options.progress,
    )?;
    replies.into_iter().map(|r| r.context("a judge generation did not finish")).collect()
}

/// A judge reply's verdict; a prompt that did not fit is unparseable, never guessed.
fn judge_outcome(reply: &Generated) -> Outcome {
    if reply.finish == FinishReason::PromptTooLong {
        return Outcome {
            verdict: Verdict::Unparseable,
            rationale: "the judge prompt does not fit the judge model's context".into(),
            reason: None,
        };
    }
    let parsed = judge::parse(&reply.text);
    Outcome { verdict: parsed.verdict, rationale: parsed.rationale, reason: None }
}

fn count_verdicts(recipe: &EvalRecipe, results: &[RowResult]) -> Vec<EvaluatorCounts> {
    let mut counts: Vec<EvaluatorCounts> = recipe
        .evaluators
        .iter()
        .map(|e| EvaluatorCounts {
            name: e.name.clone(),
            type_name: e.kind.type_name().to_string(),
            ..Default::default()
        })
        .collect();
    for r in results {
        for (c, o) in counts.iter_mut().zip(&r.outcomes) {
            c.add(o.verdict);
        }
    }
    counts
}

/// Each failed row under the first evaluator that failed it, grouped into modes when the
/// recipe asks for them.
fn find_failures(recipe: &EvalRecipe, results: &[RowResult]) -> Failures {
    let failed: Vec<(usize, usize)> =
        results.iter().enumerate().filter_map(|(row, r)| r.first_failure().map(|e| (row, e))).collect();
    if !recipe.generate_failure_modes {
        return Failures { failed, modes: Vec::new() };
    }
    let described: Vec<failure_modes::Failure> = failed
        .iter()
        .map(|&(row, e)| {
            let r = &results[row];
            failure_modes::Failure {
                evaluator: &recipe.evaluators[e].name,
                is_judge: matches!(recipe.evaluators[e].kind, EvaluatorKind::LlmJudge(_)),
                reason: r.outcomes[e].reason,
                rationale: &r.outcomes[e].rationale,
                output: &r.output.text,
                finish: r.output.finish,
            }
        })
        .collect();
    let modes = failure_modes::group(&described);
    Failures { failed, modes }
}

/// What the summary records of a run besides its rows.
struct RunFacts<'a> {
    run_id: &'a str,
    recipe_path: &'a Path,
    recipe: &'a EvalRecipe,
    models: &'a Models,
    device: &'a str,
    rows_in_dataset: usize,
    wall_seconds: f64,
}

fn summarize(
    run: &RunFacts,
    results: &[RowResult],
    counts: &[EvaluatorCounts],
    judge_tokens: TokenCounts,
    failures: &Failures,
    dataset: Option<String>,
) -> Result<EvalSummary> {
    let mut finish_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        *finish_reasons.entry(finish_name(r.output.finish).to_string()).or_default() += 1;
    }
    let failed_rows = failures.failed.len();
    Ok(EvalSummary {
        run_id: run.run_id.to_string(),
        created_at: now_rfc3339(),
        synth_version: env!("CARGO_PKG_VERSION").into(),
        recipe_file: run.recipe_path.display().to_string(),
        recipe: run.recipe.source.clone(),
        dataset: EvalDatasetRecord {
            id: run.recipe.dataset_id.clone(),
            rows_used: results.len(),
            rows_in_dataset: run.rows_in_dataset,
        },
        model: run.models.evaluated.record()?,
        judges: run
            .models
            .judge_of
            .iter()
            .map(|(i, name)| (run.recipe.evaluators[*i].name.clone(), name.clone()))
            .collect(),
        judge_models: run.models.judges.iter().map(|(_, m)| m.record()).collect::<Result<_>>()?,
        device: run.device.to_string(),
        inference_seed: run.recipe.inference.seed,
        rows: results.len(),
        passed_rows: results.len() - failed_rows,
        failed_rows,
        evaluators: counts
            .iter()
            .map(|c| EvaluatorSummary {
                name: c.name.clone(),
                type_name: c.type_name.clone(),
                pass: c.pass,
                fail: c.fail,
                unparseable: c.unparseable,
                skipped: c.skipped,
                pass_rate: c.pass_rate().map(round3),
            })
            .collect(),
        finish_reasons,
        tokens: EvalTokens {
            prompt: results.iter().map(|r| r.output.prompt_tokens).sum(),
            generated: results.iter().map(|r| r.output.generated_tokens).sum(),
            judge_prompt: judge_tokens.prompt,
            judge_generated: judge_tokens.generated,
        },
        wall_seconds: round3(run.wall_seconds),
        failure_modes_dataset: dataset,
        failure_modes: failures
            .modes
            .iter()
            .map(|m| EvalFailureMode { label: m.label.clone(), count: m.count(), description: m.description.clone() })
            .collect(),
    })
}

fn result_records(recipe: &EvalRecipe, results: &[RowResult]) -> Vec<EvalResult> {
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let evaluations = recipe
                .evaluators
                .iter()
                .zip(&r.outcomes)
                .enumerate()
                .map(|(e, (evaluator, o))| {
                    let record = EvaluationRecord {
                        verdict: o.verdict.as_str().to_string(),
                        rationale: o.rationale.clone(),
                        reason: o.reason.map(str::to_string),
                        judge_reply: r.judge_replies.get(&e).cloned(),
                    };
                    (evaluator.name.clone(), record)
                })
                .collect();
            EvalResult {
                row: i,
                prompt: r.example.prompt.clone(),
                reference: r.example.reference.clone(),
                output: r.output.text.clone(),
                finish_reason: r.output.finish,
                tokens: TokenCounts { prompt: r.output.prompt_tokens, generated: r.output.generated_tokens },
                passed: r.first_failure().is_none(),
                evaluations,
            }
        })
        .collect()
}

fn finish_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::PromptTooLong => "prompt_too_long",
    }
}

/// One chat row per failed example (prompt, then the reference as the assistant's answer),
/// all in `train`, labelled with its failure mode.
fn publish_failure_modes(
    store: &Store,
    id: &str,
    run_id: &str,
    recipe: &EvalRecipe,
    results: &[RowResult],
    failures: &Failures,
) -> Result<PathBuf> {
    let mut label_of: Vec<&str> = vec![""; failures.failed.len()];
    for mode in &failures.modes {
        for &m in &mode.members {
            label_of[m] = &mode.label;
        }
    }
    let mut rows = Vec::with_capacity(failures.failed.len());
    for (i, &(row, e)) in failures.failed.iter().enumerate() {
        let r = &results[row];
        let mut messages = r.example.prompt.clone();
        messages.push(Message::new("assistant", r.example.reference.clone()));
        let metadata = FailureModeRow {
            failure_mode: Some(label_of[i].to_string()),
            evaluator: Some(recipe.evaluators[e].name.clone()),
            rationale: Some(r.outcomes[e].rationale.clone()),
            model_output: Some(r.output.text.clone()),
            reference: Some(r.example.reference.clone()),
            eval_run: Some(run_id.to_string()),
            row: Some(row),
        };
        let Value::Object(metadata) = serde_json::to_value(metadata)? else {
            unreachable!("a struct serializes to an object")
        };
        rows.push(Row { messages, metadata: Some(metadata) });
    }
    let details = FailureModesManifest {
        eval_run: run_id.to_string(),
        eval_dataset: recipe.dataset_id.clone(),
        model: recipe.model.model_name.clone(),
        failure_modes: failures
            .modes
            .iter()
            .map(|m| FailureModeRecord {
                label: m.label.clone(),
                count: m.count(),
                evaluator: m.evaluator.clone(),
                description: m.description.clone(),
            })
            .collect(),
    };
    Destination { store, id, kind: KIND_FAILURE_MODES, overwrite: false }.publish_splits(&[("train", rows)], &details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_last_assistant_message_or_metadata() {
        let row = Row {
            messages: vec![Message::new("system", "s"), Message::new("user", "2+2?"), Message::new("assistant", "4")],
            metadata: None,
        };
        let e = example(&row).unwrap();
        assert_eq!(e.reference, "4");
        assert_eq!(e.prompt.len(), 2);
        assert_eq!(e.prompt_text(), "2+2?");

        let mut meta = serde_json::Map::new();
        meta.insert("reference".into(), serde_json::json!("Paris"));
        let row = Row { messages: vec![Message::new("user", "Capital of France?")], metadata: Some(meta) };
        assert_eq!(example(&row).unwrap(), Example { prompt: row.messages.clone(), reference: "Paris".into() });

        let no_reference = Row { messages: vec![Message::new("user", "hi")], metadata: None };
        assert!(example(&no_reference).unwrap_err().contains("no assistant message"));
        let no_user =
            Row { messages: vec![Message::new("system", "s"), Message::new("assistant", "a")], metadata: None };
        assert!(example(&no_user).unwrap_err().contains("no user message"));
    }

    #[test]
    fn pass_rate_counts_unparseable_as_not_passed() {
        let c = EvaluatorCounts { pass: 3, fail: 1, unparseable: 4, skipped: 10, ..Default::default() };
        assert_eq!(c.pass_rate(), Some(0.375));
        assert_eq!(EvaluatorCounts { skipped: 2, ..Default::default() }.pass_rate(), None);
    }
}

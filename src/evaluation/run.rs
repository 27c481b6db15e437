//! `synth eval`: an evaluation recipe becomes a stored run, and optionally a failure-mode dataset.
//!
//! ```text
//! <home>/evals/<run_id>/results.jsonl   one line per dataset row: prompt, reference, output, verdicts
//! <home>/evals/<run_id>/summary.json    per-evaluator counts and pass rates, tokens, wall time, models
//! <home>/evals/.tmp-<run_id>-<pid>/     a run being written, renamed into place when complete
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::evaluators::{self, Outcome, Verdict};
use super::failure_modes::{self, FailureMode};
use super::judge;
use super::recipe::{render_template, EvalRecipe, EvaluatorKind};
use crate::device::{self, DeviceChoice};
use crate::engine::FinishReason;
use crate::error::SynthError;
use crate::model::{LoadedModel, Registry};
use crate::progress::{Progress, ProgressMode};
use crate::store::id::validate_dataset_id;
use crate::store::manifest::now_rfc3339;
use crate::store::{Manifest, Message, Row, Store, KIND_FAILURE_MODES};
use crate::synthesis::run::model_manifest;
use crate::synthesis::{check_context, generate, mix_seed, round3, EngineOptions, Generated, Job, RateCap};

pub const EVALS_DIR: &str = "evals";
pub const RESULTS_FILE: &str = "results.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
/// Default run ids are `eval_run_1`, `eval_run_2`, ...
pub const RUN_ID_PREFIX: &str = "eval_run";
/// The failure-mode dataset of run `<id>` is `dataset_failure_modes_<id>`.
pub const FAILURE_MODES_PREFIX: &str = "dataset_failure_modes_";

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
    fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.verdict == Verdict::Fail)
    }
}

pub fn evals_dir(store: &Store) -> PathBuf {
    store.root().join(EVALS_DIR)
}

/// Where run `id` lives; fails on an invalid id before anything touches the disk.
pub fn run_dir(store: &Store, id: &str) -> Result<PathBuf> {
    validate_dataset_id(id).map_err(|rule| {
        SynthError::invalid(format!("invalid eval run id `{}`: {}", id.escape_debug(), rule.replace("dataset id", "run id")))
            .hint("use letters, digits, `_`, `-` and `.`, e.g. `eval_run_7`")
    })?;
    Ok(evals_dir(store).join(id))
}

pub fn failure_modes_dataset_id(run_id: &str) -> String {
    format!("{FAILURE_MODES_PREFIX}{run_id}")
}

fn settle_run_id(store: &Store, wanted: Option<&str>, with_dataset: bool) -> Result<String> {
    let taken = |id: &str| -> Result<bool> {
        let run = run_dir(store, id)?.symlink_metadata().is_ok();
        let dataset = with_dataset && store.exists(&failure_modes_dataset_id(id))?;
        Ok(run || dataset)
    };
    match wanted {
        Some(id) => {
            let dir = run_dir(store, id)?;
            if dir.symlink_metadata().is_ok() {
                return Err(SynthError::invalid(format!("eval run `{id}` already exists in `{}`", evals_dir(store).display()))
                    .hint("choose another `--run-id`, or leave it out for the next free `eval_run_<n>`; runs are never overwritten")
                    .into());
            }
            if with_dataset {
                let dataset = failure_modes_dataset_id(id);
                store.dataset_dir(&dataset).context("the failure-mode dataset id would be invalid")?;
                if store.exists(&dataset)? {
                    return Err(SynthError::invalid(format!("dataset `{dataset}` already exists, so run `{id}` cannot publish its failure modes"))
                        .hint("choose another `--run-id`")
                        .into());
                }
            }
            Ok(id.to_string())
        }
        None => crate::store::first_free(RUN_ID_PREFIX, taken),
    }
}

pub fn run(recipe_path: &Path, store: &Store, options: &EvalOptions) -> Result<EvalReport> {
    let started = Instant::now();
    let recipe = EvalRecipe::from_path(recipe_path)?;
    let dataset_id = &recipe.dataset_id;

    let mut rows = store.load_rows(dataset_id).with_context(|| format!("loading evaluation dataset `{dataset_id}`"))?;
    let rows_in_dataset = rows.len();
    if let Some(limit) = options.limit {
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

    let run_id = settle_run_id(store, options.run_id.as_deref(), recipe.generate_failure_modes)?;

    let device = device::open(options.device)?;
    let registry = Registry::load(Some(store.root()))?;
    let model = LoadedModel::load(&registry, &recipe.model.model_name, options.model_path.as_deref(), store.root(), &device)?;
    check_context(&model, &recipe.inference, recipe_path, "recipeConfig.evaluationConfig.inferenceConfig")?;
    // Judge models load before any generation, so a missing one fails fast; a judge naming the
    // evaluated model shares it.
    let mut judge_models: Vec<(String, LoadedModel)> = Vec::new();
    let mut judge_of: BTreeMap<usize, String> = BTreeMap::new();
    for (index, evaluator) in recipe.evaluators.iter().enumerate() {
        let EvaluatorKind::LlmJudge(spec) = &evaluator.kind else { continue };
        let name = registry.get(&spec.model.model_name)?.name.clone();
        if name != model.resolved.spec.name && !judge_models.iter().any(|(n, _)| *n == name) {
            let loaded = LoadedModel::load(&registry, &name, None, store.root(), &device)
                .with_context(|| format!("loading the judge model of evaluator `{}`", evaluator.name))?;
            judge_models.push((name.clone(), loaded));
        }
        let judge_model = judge_models.iter().find(|(n, _)| *n == name).map_or(&model, |(_, m)| m);
        let at = format!("recipeConfig.evaluationConfig.evaluators[{index}].inferenceConfig");
        check_context(judge_model, &spec.inference, recipe_path, &at)?;
        judge_of.insert(index, name);
    }

    // The model's answers.
    let jobs: Vec<Job> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| Job { messages: e.prompt.clone(), params: recipe.inference.sampling(mix_seed(recipe.inference.seed, i as u64)) })
        .collect();
    let engine = EngineOptions { enable_thinking: Some(recipe.inference.enable_thinking), ..options.engine.clone() };
    let mut rate = recipe.inference.requests_per_minute.map(RateCap::per_minute);
    let mut progress = Progress::new("answers", jobs.len(), options.progress);
    let outputs = generate(&model, &jobs, &engine, rate.as_mut(), None, &mut progress, |_, _| Ok(()))?;
    progress.finish();
    let mut results: Vec<RowResult> = Vec::with_capacity(examples.len());
    for (example, output) in examples.into_iter().zip(outputs) {
        let output = output.context("a generation did not finish")?;
        results.push(RowResult { example, output, outcomes: Vec::new(), judge_replies: BTreeMap::new() });
    }

    // Every evaluator, in recipe order; judges run batched over all rows.
    let mut judge_tokens = (0usize, 0usize);
    for (index, evaluator) in recipe.evaluators.iter().enumerate() {
        let EvaluatorKind::LlmJudge(spec) = &evaluator.kind else {
            for r in &mut results {
                let outcome = evaluators::evaluate(&evaluator.kind, r.output.text.trim(), &r.example.reference).context("a deterministic evaluator")?;
                r.outcomes.push(outcome);
            }
            continue;
        };
        let name = judge_of.get(&index).context("every judge's model was resolved")?;
        let judge_model = judge_models.iter().find(|(n, _)| n == name).map_or(&model, |(_, m)| m);
        let jobs: Vec<Job> = results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let prompt = render_template(&spec.template, r.example.prompt_text(), &r.example.reference, r.output.text.trim());
                let seed = mix_seed(mix_seed(spec.inference.seed, i as u64), 1 + index as u64);
                Job { messages: vec![Message::new("user", prompt)], params: spec.inference.sampling(seed) }
            })
            .collect();
        let engine = EngineOptions { enable_thinking: Some(spec.inference.enable_thinking), ..options.engine.clone() };
        let mut rate = spec.inference.requests_per_minute.map(RateCap::per_minute);
        let mut progress = Progress::new(&format!("judge {}", evaluator.name), jobs.len(), options.progress);
        let replies = generate(judge_model, &jobs, &engine, rate.as_mut(), None, &mut progress, |_, _| Ok(()))?;
        progress.finish();
        for (r, reply) in results.iter_mut().zip(replies) {
            let reply = reply.context("a judge generation did not finish")?;
            judge_tokens.0 += reply.prompt_tokens;
            judge_tokens.1 += reply.generated_tokens;
            let outcome = if reply.finish == FinishReason::PromptTooLong {
                Outcome { verdict: Verdict::Unparseable, rationale: "the judge prompt does not fit the judge model's context".into(), reason: None }
            } else {
                let parsed = judge::parse(&reply.text);
                Outcome { verdict: parsed.verdict, rationale: parsed.rationale, reason: None }
            };
            r.outcomes.push(outcome);
            r.judge_replies.insert(index, reply.text);
        }
    }

    let mut counts: Vec<EvaluatorCounts> = recipe
        .evaluators
        .iter()
        .map(|e| EvaluatorCounts { name: e.name.clone(), type_name: e.kind.type_name().to_string(), ..Default::default() })
        .collect();
    for r in &results {
        for (c, o) in counts.iter_mut().zip(&r.outcomes) {
            c.add(o.verdict);
        }
    }
    let failed_rows = results.iter().filter(|r| r.failed()).count();

    // Failure modes: each failed row under the first evaluator that failed it.
    let failed: Vec<(usize, usize)> = results
        .iter()
        .enumerate()
        .filter_map(|(row, r)| r.outcomes.iter().position(|o| o.verdict == Verdict::Fail).map(|e| (row, e)))
        .collect();
    let failures: Vec<failure_modes::Failure> = failed
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
    let modes = if recipe.generate_failure_modes { failure_modes::group(&failures) } else { Vec::new() };
    let dataset = (recipe.generate_failure_modes && !failed.is_empty()).then(|| failure_modes_dataset_id(&run_id));

    let wall_seconds = started.elapsed().as_secs_f64();
    let prompt_tokens: usize = results.iter().map(|r| r.output.prompt_tokens).sum();
    let generated_tokens: usize = results.iter().map(|r| r.output.generated_tokens).sum();
    let mut finish_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        *finish_reasons.entry(finish_name(r.output.finish).to_string()).or_default() += 1;
    }
    let mut judges = Vec::new();
    for (_, m) in &judge_models {
        judges.push(model_manifest(m)?);
    }
    let summary = json!({
        "runId": run_id,
        "createdAt": now_rfc3339(),
        "synthVersion": env!("CARGO_PKG_VERSION"),
        "recipeFile": recipe_path.display().to_string(),
        "recipe": recipe.source,
        "dataset": {"id": dataset_id, "rowsUsed": results.len(), "rowsInDataset": rows_in_dataset},
        "model": model_manifest(&model)?,
        "judges": judge_of.iter().map(|(i, name)| (recipe.evaluators[*i].name.clone(), json!(name))).collect::<Map<String, Value>>(),
        "judgeModels": judges,
        "device": device::name(&device),
        "inferenceSeed": recipe.inference.seed,
        "rows": results.len(),
        "passedRows": results.len() - failed_rows,
        "failedRows": failed_rows,
        "evaluators": counts.iter().map(|c| json!({
            "name": c.name, "type": c.type_name, "pass": c.pass, "fail": c.fail,
            "unparseable": c.unparseable, "skipped": c.skipped, "passRate": c.pass_rate().map(round3),
        })).collect::<Vec<_>>(),
        "finishReasons": finish_reasons,
        "tokens": {"prompt": prompt_tokens, "generated": generated_tokens, "judgePrompt": judge_tokens.0, "judgeGenerated": judge_tokens.1},
        "wallSeconds": round3(wall_seconds),
        "failureModesDataset": dataset,
        "failureModes": modes.iter().map(|m| json!({"label": m.label, "count": m.count(), "description": m.description})).collect::<Vec<_>>(),
    });

    let mut lines = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let mut evaluations = Map::new();
        for (e, (evaluator, o)) in recipe.evaluators.iter().zip(&r.outcomes).enumerate() {
            let mut entry = json!({"verdict": o.verdict, "rationale": o.rationale});
            if let Some(reason) = o.reason {
                entry["reason"] = json!(reason);
            }
            if let Some(reply) = r.judge_replies.get(&e) {
                entry["judgeReply"] = json!(reply);
            }
            evaluations.insert(evaluator.name.clone(), entry);
        }
        let line = json!({
            "row": i,
            "prompt": r.example.prompt,
            "reference": r.example.reference,
            "output": r.output.text,
            "finishReason": r.output.finish,
            "tokens": {"prompt": r.output.prompt_tokens, "generated": r.output.generated_tokens},
            "passed": !r.failed(),
            "evaluations": evaluations,
        });
        lines.push(serde_json::to_string(&line)?);
    }
    let path = write_run(store, &run_id, &lines, &summary)?;

    if let Some(dataset_id_out) = &dataset {
        publish_failure_modes(store, dataset_id_out, &run_id, &recipe, &results, &failed, &modes)?;
    }

    Ok(EvalReport {
        run_id,
        path,
        rows: results.len(),
        failed_rows,
        evaluators: counts,
        failure_modes_dataset: dataset,
        failure_modes: modes.len(),
        wall_seconds,
    })
}

fn finish_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::PromptTooLong => "prompt_too_long",
    }
}


/// Writes the run into a hidden directory and renames it into place; an existing run stays.
fn write_run(store: &Store, run_id: &str, lines: &[String], summary: &Value) -> Result<PathBuf> {
    let dir = evals_dir(store);
    std::fs::create_dir_all(&dir).map_err(|e| {
        SynthError::failed(format!("cannot create `{}`: {e}", dir.display())).hint("set `SYNTH_HOME` to a writable directory")
    })?;
    let temp = dir.join(format!(".tmp-{run_id}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir(&temp)?;
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(temp.join(RESULTS_FILE), text)?;
        let mut summary_text = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
        summary_text.push('\n');
        std::fs::write(temp.join(SUMMARY_FILE), summary_text)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(SynthError::failed(format!("cannot write the eval run into `{}`: {e}", temp.display())).into());
    }
    let target = dir.join(run_id);
    if target.symlink_metadata().is_ok() {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(SynthError::invalid(format!("eval run `{run_id}` already exists")).hint("choose another `--run-id`").into());
    }
    std::fs::rename(&temp, &target).map_err(|e| {
        let _ = std::fs::remove_dir_all(&temp);
        SynthError::failed(format!("cannot move `{}` to `{}`: {e}", temp.display(), target.display()))
    })?;
    Ok(target)
}

/// One chat row per failed example (prompt, then the reference as the assistant's answer),
/// all in `train`, labelled with its failure mode.
fn publish_failure_modes(
    store: &Store,
    id: &str,
    run_id: &str,
    recipe: &EvalRecipe,
    results: &[RowResult],
    failed: &[(usize, usize)],
    modes: &[FailureMode],
) -> Result<PathBuf> {
    let mut label_of: Vec<&str> = vec![""; failed.len()];
    for mode in modes {
        for &m in &mode.members {
            label_of[m] = &mode.label;
        }
    }
    let mut rows = Vec::with_capacity(failed.len());
    for (i, &(row, e)) in failed.iter().enumerate() {
        let r = &results[row];
        let mut messages = r.example.prompt.clone();
        messages.push(Message::new("assistant", r.example.reference.clone()));
        let metadata: Map<String, Value> = [
            ("failureMode", json!(label_of[i])),
            ("evaluator", json!(recipe.evaluators[e].name)),
            ("rationale", json!(r.outcomes[e].rationale)),
            ("modelOutput", json!(r.output.text)),
            ("reference", json!(r.example.reference)),
            ("evalRun", json!(run_id)),
            ("row", json!(row)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        rows.push(Row { messages, metadata: Some(metadata) });
    }
    let mut pending = store.begin_dataset(id)?;
    pending.write_split("train", &rows)?;
    let mut manifest = Manifest::new(id, KIND_FAILURE_MODES);
    manifest.add_split("train", rows.len());
    manifest.extra.insert("evalRun".into(), json!(run_id));
    manifest.extra.insert("evalDataset".into(), json!(recipe.dataset_id));
    manifest.extra.insert("model".into(), json!(recipe.model.model_name));
    manifest.extra.insert(
        "failureModes".into(),
        json!(modes.iter().map(|m| json!({"label": m.label, "count": m.count(), "evaluator": m.evaluator, "description": m.description})).collect::<Vec<_>>()),
    );
    pending.write_manifest(&manifest)?;
    pending.publish(false)
}

/// `synth eval show`: the summary and the `worst` rows (most failed evaluators first).
pub fn show(store: &Store, run_id: &str, worst: usize) -> Result<String> {
    let dir = run_dir(store, run_id)?;
    if !dir.is_dir() {
        let mut known: Vec<String> = std::fs::read_dir(evals_dir(store))
            .map(|entries| entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| !n.starts_with('.')).collect())
            .unwrap_or_default();
        known.sort();
        let hint = if known.is_empty() {
            "no eval runs yet: run `synth eval RECIPE`".to_string()
        } else {
            format!("stored runs: {}", known.iter().take(10).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
        };
        return Err(SynthError::not_found(format!("eval run `{run_id}` not found in `{}`", evals_dir(store).display())).hint(hint).into());
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| SynthError::failed(format!("cannot read `{}`: {e}", dir.join(name).display())));
    let summary: Value = serde_json::from_str(&read(SUMMARY_FILE)?)
        .map_err(|e| SynthError::failed(format!("`{}` is not valid JSON: {e}", dir.join(SUMMARY_FILE).display())))?;
    let mut rows: Vec<Value> = Vec::new();
    for (n, line) in read(RESULTS_FILE)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        rows.push(serde_json::from_str(line).map_err(|e| SynthError::failed(format!("{}:{}: not valid JSON: {e}", dir.join(RESULTS_FILE).display(), n + 1)))?);
    }
    Ok(render_show(&summary, &rows, worst))
}

fn render_show(summary: &Value, rows: &[Value], worst: usize) -> String {
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let mut out = String::new();
    out.push_str(&format!(
        "eval run `{}`: model `{}` on dataset `{}` ({} rows), {}\n",
        s(&summary["runId"]),
        s(&summary["model"]["name"]),
        s(&summary["dataset"]["id"]),
        s(&summary["rows"]),
        s(&summary["createdAt"])
    ));
    out.push_str(&format!("{:<20} {:<14} {:>5} {:>5} {:>11} {:>7} {:>9}\n", "evaluator", "type", "pass", "fail", "unparseable", "skipped", "pass rate"));
    for e in summary["evaluators"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let rate = e["passRate"].as_f64().map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        out.push_str(&format!(
            "{:<20} {:<14} {:>5} {:>5} {:>11} {:>7} {:>9}\n",
            s(&e["name"]),
            s(&e["type"]),
            s(&e["pass"]),
            s(&e["fail"]),
            s(&e["unparseable"]),
            s(&e["skipped"]),
            rate
        ));
    }
    let t = &summary["tokens"];
    out.push_str(&format!(
        "rows failed: {} of {}; tokens: {} prompt, {} generated (judges: {} prompt, {} generated); {}s\n",
        s(&summary["failedRows"]),
        s(&summary["rows"]),
        s(&t["prompt"]),
        s(&t["generated"]),
        s(&t["judgePrompt"]),
        s(&t["judgeGenerated"]),
        s(&summary["wallSeconds"])
    ));
    if let Some(modes) = summary["failureModes"].as_array().filter(|m| !m.is_empty()) {
        out.push_str(&format!("failure modes (dataset `{}`):\n", s(&summary["failureModesDataset"])));
        for m in modes {
            out.push_str(&format!("  {:>4}  {}: {}\n", s(&m["count"]), s(&m["label"]), s(&m["description"])));
        }
    }

    let verdicts = |row: &Value, verdict: &str| {
        row["evaluations"].as_object().map_or(0, |e| e.values().filter(|v| v["verdict"] == verdict).count())
    };
    let mut order: Vec<&Value> = rows.iter().filter(|r| verdicts(r, "fail") + verdicts(r, "unparseable") > 0).collect();
    order.sort_by_key(|r| (std::cmp::Reverse(verdicts(r, "fail")), std::cmp::Reverse(verdicts(r, "unparseable")), r["row"].as_u64().unwrap_or(u64::MAX)));
    if worst > 0 && !order.is_empty() {
        out.push_str(&format!("worst rows ({} of {} shown):\n", order.len().min(worst), order.len()));
    }
    for row in order.into_iter().take(worst) {
        let prompt = row["prompt"].as_array().and_then(|m| m.iter().rev().find(|m| m["role"] == "user")).map_or(String::new(), |m| s(&m["content"]));
        out.push_str(&format!("row {} ({} failed, finish {}):\n", s(&row["row"]), verdicts(row, "fail"), s(&row["finishReason"])));
        out.push_str(&format!("  prompt:    {}\n", evaluators::short(&prompt)));
        out.push_str(&format!("  reference: {}\n", evaluators::short(&s(&row["reference"]))));
        out.push_str(&format!("  output:    {}\n", evaluators::short(&s(&row["output"]))));
        if let Some(evaluations) = row["evaluations"].as_object() {
            for (name, e) in evaluations {
                out.push_str(&format!("  {name}: {} - {}\n", s(&e["verdict"]), evaluators::short(&s(&e["rationale"]))));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_last_assistant_message_or_metadata() {
        let row = Row { messages: vec![Message::new("system", "s"), Message::new("user", "2+2?"), Message::new("assistant", "4")], metadata: None };
        let e = example(&row).unwrap();
        assert_eq!(e.reference, "4");
        assert_eq!(e.prompt.len(), 2);
        assert_eq!(e.prompt_text(), "2+2?");

        let mut meta = Map::new();
        meta.insert("reference".into(), json!("Paris"));
        let row = Row { messages: vec![Message::new("user", "Capital of France?")], metadata: Some(meta) };
        assert_eq!(example(&row).unwrap(), Example { prompt: row.messages.clone(), reference: "Paris".into() });

        let no_reference = Row { messages: vec![Message::new("user", "hi")], metadata: None };
        assert!(example(&no_reference).unwrap_err().contains("no assistant message"));
        let no_user = Row { messages: vec![Message::new("system", "s"), Message::new("assistant", "a")], metadata: None };
        assert!(example(&no_user).unwrap_err().contains("no user message"));
    }

    #[test]
    fn pass_rate_counts_unparseable_as_not_passed() {
        let c = EvaluatorCounts { pass: 3, fail: 1, unparseable: 4, skipped: 10, ..Default::default() };
        assert_eq!(c.pass_rate(), Some(0.375));
        assert_eq!(EvaluatorCounts { skipped: 2, ..Default::default() }.pass_rate(), None);
    }

    #[test]
    fn run_ids_count_up_and_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        assert_eq!(settle_run_id(&store, None, true).unwrap(), "eval_run_1");
        std::fs::create_dir_all(evals_dir(&store).join("eval_run_1")).unwrap();
        assert_eq!(settle_run_id(&store, None, false).unwrap(), "eval_run_2");
        let err = settle_run_id(&store, Some("eval_run_1"), false).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(settle_run_id(&store, Some("../x"), false).is_err());
        assert_eq!(settle_run_id(&store, Some("mine"), true).unwrap(), "mine");
    }

    #[test]
    fn show_orders_rows_by_failures() {
        let summary = json!({"runId": "r", "model": {"name": "m"}, "dataset": {"id": "d"}, "rows": 2, "createdAt": "t",
            "evaluators": [{"name": "a", "type": "exact_match", "pass": 1, "fail": 1, "unparseable": 0, "skipped": 0, "passRate": 0.5}],
            "failedRows": 1, "tokens": {}, "wallSeconds": 1.0, "failureModes": []});
        let rows = vec![
            json!({"row": 0, "prompt": [{"role": "user", "content": "ok?"}], "reference": "y", "output": "y", "finishReason": "stop", "evaluations": {"a": {"verdict": "pass", "rationale": "same"}}}),
            json!({"row": 1, "prompt": [{"role": "user", "content": "bad?"}], "reference": "y", "output": "n", "finishReason": "stop", "evaluations": {"a": {"verdict": "fail", "rationale": "expected `y`, got `n`"}}}),
        ];
        let text = render_show(&summary, &rows, 5);
        assert!(text.contains("50.0%"), "{text}");
        assert!(text.contains("row 1 (1 failed") && !text.contains("row 0 ("), "{text}");
        assert!(text.contains("prompt:    bad?"), "{text}");
    }
}

//! Failure-mode synthesis: `synth run` on a seed dataset of kind `failure_modes` (made by
//! `synth eval` with `generateFailureModes`). Each failed row becomes one new example aimed at
//! its failure mode, so a mode gets examples in proportion to its share of the failures.
//!
//! Two generations per row, each batched across all rows:
//! 1. *request*: the model sees the failed request and what went wrong (the mode's label and
//!    description) and writes a new request that exercises the same weakness;
//! 2. *answer*: the model answers the new request with the failed row's reference answer (to
//!    its own request) given as grounding in a system message. The grounding is not kept in the
//!    new row, which is `[user: request, assistant: answer]`.
//!
//! Degenerate generations are dropped and counted as in general synthesis.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::general::{self, DropReason};
use super::run::{model_manifest, RunOptions, RunReport};
use super::{generate, mix_seed, EngineOptions, Job, RateCap};
use crate::device;
use crate::engine::SamplingParams;
use crate::error::SynthError;
use crate::model::{LoadedModel, Registry};
use crate::output;
use crate::progress::Progress;
use crate::recipe::Recipe;
use crate::store::{Manifest, Message, Row, Store, KIND_SYNTHESIZED};

/// One failed row of the seed, read for synthesis.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedExample {
    pub label: String,
    pub description: String,
    pub request: String,
    pub reference: String,
    pub system: Option<String>,
    pub evaluator: Option<String>,
    /// Why the evaluator failed this row (metadata `rationale`), if recorded.
    pub rationale: Option<String>,
}

/// Reads a failure-mode row: its label (metadata `failureMode`), the mode's description from
/// the manifest, the failed request (first user message) and the reference (last assistant
/// message).
pub fn failed_example(row: &Row, descriptions: &BTreeMap<String, String>) -> std::result::Result<FailedExample, String> {
    let meta = row.metadata.as_ref();
    let label = match meta.and_then(|m| m.get("failureMode")) {
        Some(Value::String(l)) if !l.trim().is_empty() => l.clone(),
        _ => return Err("has no `metadata.failureMode` label".into()),
    };
    let (system, request) = general::seed_parts(row);
    let request = request.ok_or("has no user message")?.to_string();
    let reference = row.messages.iter().rev().find(|m| m.role == "assistant").map(|m| m.content.clone()).ok_or("has no assistant message (the reference)")?;
    let description = descriptions.get(&label).cloned().unwrap_or_else(|| format!("failure mode `{label}`"));
    let text = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_string);
    Ok(FailedExample { label, description, request, reference, system: system.map(str::to_string), evaluator: text("evaluator"), rationale: text("rationale") })
}

/// The instruction for stage 1.
pub fn request_prompt(failed: &FailedExample) -> String {
    let why = match &failed.rationale {
        Some(r) => format!("The assistant's answer was wrong ({}).", r.trim()),
        None => "The assistant's answer was wrong.".to_string(),
    };
    format!(
        "Here is a request that an AI assistant got wrong:\n\n<request>\n{}\n</request>\n\n\
         {why} This kind of mistake ({}): {}.\n\n\
         Write one new request of the same kind, about something different, that tests the same skill. \
         Reply with the new request only, without any preamble, quotes or answer.",
        failed.request.trim(),
        failed.label,
        failed.description.trim().trim_end_matches('.')
    )
}

/// The grounding for stage 2, as a system message.
pub fn grounding(failed: &FailedExample) -> String {
    let mut text = String::new();
    if let Some(system) = &failed.system {
        text.push_str(system.trim());
        text.push_str("\n\n");
    }
    text.push_str(&format!(
        "For reference, a similar request was:\n{}\nIts correct answer is:\n{}\n\nAnswer the user's request correctly and concisely, in the same style.",
        failed.request.trim(),
        failed.reference.trim()
    ));
    text
}

/// The descriptions of a failure-mode dataset's modes, by label.
fn descriptions(manifest: &Manifest) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for mode in manifest.extra.get("failureModes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        if let (Some(label), Some(description)) = (mode["label"].as_str(), mode["description"].as_str()) {
            out.insert(label.to_string(), description.to_string());
        }
    }
    out
}

/// `synth run` for a `failure_modes` seed dataset; `run.rs` dispatches here.
pub fn run(recipe: Recipe, recipe_path: &Path, store: &Store, options: &RunOptions, seed_manifest: Manifest, started: Instant) -> Result<RunReport> {
    let dataset_id = &recipe.synthesis.dataset_id;
    let mut seeds = store.load_rows(dataset_id).with_context(|| format!("loading seed dataset `{dataset_id}`"))?;
    if let Some(limit) = options.limit {
        seeds.truncate(limit);
    }
    if seeds.is_empty() {
        return Err(SynthError::invalid(format!("seed dataset `{dataset_id}` has no rows")).hint("run `synth eval` with `generateFailureModes: true` on a model that fails some rows").into());
    }
    let descriptions = descriptions(&seed_manifest);
    let mut failed = Vec::with_capacity(seeds.len());
    for (i, row) in seeds.iter().enumerate() {
        failed.push(failed_example(row, &descriptions).map_err(|problem| {
            SynthError::invalid(format!("failure-mode dataset `{dataset_id}`, row {i}: {problem}")).hint("make the dataset again with `synth eval` and `generateFailureModes: true`")
        })?);
    }
    let eval_run = seed_manifest.extra.get("evalRun").cloned().unwrap_or(Value::Null);

    let output_id = match &options.output_id {
        Some(id) => {
            store.dataset_dir(id)?;
            if store.exists(id)? && !options.overwrite {
                return Err(SynthError::invalid(format!("dataset `{id}` already exists")).hint("choose another `--output-id`, or pass `--overwrite` to replace it").into());
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

    // Stage 1: new requests aimed at each row's failure mode.
    let jobs: Vec<Job> = failed.iter().enumerate().map(|(i, f)| Job { messages: vec![Message::new("user", request_prompt(f))], params: params(i, 1) }).collect();
    let mut progress = Progress::new("requests", jobs.len(), options.progress);
    let requests = generate(&model, &jobs, &engine, rate.as_mut(), None, &mut progress)?;
    progress.finish();
    let mut generated_tokens: usize = requests.iter().flatten().map(|g| g.generated_tokens).sum();
    let mut prompt_tokens: usize = requests.iter().flatten().map(|g| g.prompt_tokens).sum();
    let mut drops: Vec<(usize, DropReason)> = Vec::new();
    let mut answer_inputs: Vec<(usize, String)> = Vec::new();
    for (i, result) in requests.into_iter().enumerate() {
        let result = result.context("a request generation did not finish")?;
        match general::check(&result, DropReason::EmptyRequest, DropReason::RequestCutOff) {
            Ok(text) => answer_inputs.push((i, text)),
            Err(reason) => drops.push((i, reason)),
        }
    }

    // Stage 2: grounded answers.
    let jobs: Vec<Job> = answer_inputs
        .iter()
        .map(|(i, request)| Job { messages: vec![Message::new("system", grounding(&failed[*i])), Message::new("user", request.clone())], params: params(*i, 2) })
        .collect();
    let mut progress = Progress::new("answers", jobs.len(), options.progress);
    let answers = generate(&model, &jobs, &engine, rate.as_mut(), None, &mut progress)?;
    progress.finish();
    generated_tokens += answers.iter().flatten().map(|g| g.generated_tokens).sum::<usize>();
    prompt_tokens += answers.iter().flatten().map(|g| g.prompt_tokens).sum::<usize>();

    let mut rows: Vec<Row> = Vec::new();
    let mut per_mode: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for f in &failed {
        per_mode.entry(f.label.clone()).or_default().0 += 1;
    }
    for ((i, request), answer) in answer_inputs.into_iter().zip(answers) {
        let answer = answer.context("an answer generation did not finish")?;
        match general::check(&answer, DropReason::EmptyAnswer, DropReason::AnswerCutOff) {
            Ok(text) => {
                let f = &failed[i];
                let mut metadata = Map::new();
                metadata.insert("failureMode".into(), json!(f.label));
                metadata.insert("seedRow".into(), json!(i));
                if let Some(evaluator) = &f.evaluator {
                    metadata.insert("evaluator".into(), json!(evaluator));
                }
                metadata.insert("samplingSeed".into(), json!(mix_seed(inference.seed, i as u64)));
                metadata.insert("model".into(), json!(model.resolved.spec.name));
                metadata.insert("seedDataset".into(), json!(dataset_id));
                metadata.insert("evalRun".into(), eval_run.clone());
                per_mode.entry(f.label.clone()).or_default().1 += 1;
                rows.push(Row { messages: vec![Message::new("user", request), Message::new("assistant", text)], metadata: Some(metadata) });
            }
            Err(reason) => drops.push((i, reason)),
        }
    }
    let drop_reasons: Vec<DropReason> = drops.iter().map(|(_, r)| *r).collect();
    if rows.is_empty() {
        return Err(SynthError::failed(format!(
            "every generation was degenerate ({}), so there is no dataset to publish",
            Value::Object(general::drop_counts(&drop_reasons))
        ))
        .hint("raise `inferenceMaxNewTokens`, or check the model with `synth generate`")
        .into());
    }

    let wall_seconds = started.elapsed().as_secs_f64();
    let mut extra = Map::new();
    extra.insert("synthVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    extra.insert("synthesis".into(), json!("failure_modes"));
    extra.insert("recipeFile".into(), json!(recipe_path.display().to_string()));
    extra.insert("recipe".into(), recipe.source.clone());
    extra.insert("seedDataset".into(), json!({"id": dataset_id, "kind": seed_manifest.kind, "rowsUsed": seeds.len()}));
    extra.insert("evalRun".into(), eval_run);
    extra.insert("failureModesDataset".into(), json!(dataset_id));
    extra.insert(
        "failureModes".into(),
        Value::Array(per_mode.iter().map(|(label, (seed_rows, rows))| json!({"label": label, "seedRows": seed_rows, "rows": rows})).collect()),
    );
    extra.insert("model".into(), model_manifest(&model)?);
    extra.insert("device".into(), json!(device::name(&device)));
    extra.insert("inferenceSeed".into(), json!(inference.seed));
    extra.insert(
        "counts".into(),
        json!({
            "seedRows": seeds.len(),
            "rows": rows.len(),
            "dropped": drops.len(),
            "droppedBy": Value::Object(general::drop_counts(&drop_reasons)),
            "degeneratePolicy": "dropped: empty or cut-off requests and answers are not kept",
        }),
    );
    extra.insert("tokens".into(), json!({"prompt": prompt_tokens, "generated": generated_tokens}));
    extra.insert("wallSeconds".into(), json!((wall_seconds * 1000.0).round() / 1000.0));
    extra.insert("tokensPerSecond".into(), json!(((generated_tokens as f64 / wall_seconds.max(1e-9)) * 1000.0).round() / 1000.0));

    let (path, splits) = output::publish(store, &output_id, rows, recipe.synthesis.distribution, inference.seed, KIND_SYNTHESIZED, extra, options.overwrite)?;
    Ok(RunReport { id: output_id, path, splits, seed_rows: seeds.len(), dropped: drops.len(), generated_tokens, wall_seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(meta: Value) -> Row {
        Row { messages: vec![Message::new("user", "What is 7 times 8?"), Message::new("assistant", "56")], metadata: meta.as_object().cloned() }
    }

    #[test]
    fn reads_failed_rows_with_their_mode() {
        let descriptions: BTreeMap<String, String> = [("numeric/wrong-number".to_string(), "the answer gave a wrong number".to_string())].into();
        let f = failed_example(&row(json!({"failureMode": "numeric/wrong-number", "evaluator": "numeric", "rationale": "expected 56, got 54"})), &descriptions).unwrap();
        assert_eq!(f.rationale.as_deref(), Some("expected 56, got 54"));
        assert_eq!(f.request, "What is 7 times 8?");
        assert_eq!(f.reference, "56");
        assert_eq!(f.description, "the answer gave a wrong number");
        assert_eq!(f.evaluator.as_deref(), Some("numeric"));
        let prompt = request_prompt(&f);
        assert!(prompt.contains("What is 7 times 8?") && prompt.contains("wrong number") && prompt.contains("numeric/wrong-number") && prompt.contains("got 54"), "{prompt}");
        let ground = grounding(&f);
        assert!(ground.contains("56") && ground.contains("What is 7 times 8?"), "{ground}");

        assert!(failed_example(&row(json!({})), &descriptions).unwrap_err().contains("failureMode"));
        let no_reference = Row { messages: vec![Message::new("user", "q")], metadata: json!({"failureMode": "x"}).as_object().cloned() };
        assert!(failed_example(&no_reference, &descriptions).unwrap_err().contains("assistant"));
    }
}

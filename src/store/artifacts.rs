//! The files one command writes and another reads, as types: the manifest details of a
//! synthesized dataset and of a failure-mode dataset, the metadata of a failure-mode row, the
//! provenance of a synthesized row, and an eval run's `summary.json` and `results.jsonl`.
//!
//! A dataset's `manifest.json` is a [`Manifest`](super::Manifest) (id, kind, creation time,
//! splits) whose other keys are one of the `*Manifest` details here, flattened in
//! (see [`Manifest::with_details`](super::Manifest::with_details)).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::row::Message;
use crate::engine::FinishReason;

/// A model as manifests and summaries record it: names, and every file with its sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    pub name: String,
    pub hf_repo: String,
    pub revision: String,
    /// The file or directory the weights were loaded from.
    pub source: String,
    pub files: Vec<ModelFileRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFileRecord {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Prompt and generated token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenCounts {
    pub prompt: usize,
    pub generated: usize,
}

// ---------------------------------------------------------------------------------------------
// `synth run`: a synthesized dataset.

/// The manifest details of a dataset of kind `synthesized`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SynthesisManifest {
    pub synth_version: String,
    pub recipe_file: String,
    /// The recipe file's JSON, as written.
    pub recipe: Value,
    pub seed_dataset: SeedDatasetRecord,
    /// Present when the seed was a failure-mode dataset.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub targeted: Option<TargetedRecord>,
    pub model: ModelRecord,
    pub device: String,
    pub inference_seed: u64,
    pub counts: RunCounts,
    /// Generations replayed from the journal of an interrupted earlier attempt.
    pub resumed_generations: usize,
    pub tokens: TokenCounts,
    pub wall_seconds: f64,
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedDatasetRecord {
    pub id: String,
    pub kind: String,
    pub rows_used: usize,
}

/// Synthesis aimed at an evaluation's failure modes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetedRecord {
    /// `failure_modes`.
    pub synthesis: String,
    pub eval_run: Option<String>,
    pub failure_modes_dataset: String,
    pub failure_modes: Vec<TargetedModeRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetedModeRecord {
    pub label: String,
    /// Failed rows of this mode in the seed.
    pub seed_rows: usize,
    /// New rows made for it.
    pub rows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    pub seed_rows: usize,
    pub rows: usize,
    pub dropped: usize,
    /// Dropped seed rows by reason (`answerCutOff`, ...).
    pub dropped_by: BTreeMap<String, usize>,
    pub degenerate_policy: String,
    pub retries_per_generation: u32,
    pub retried: usize,
    pub recovered_by_retry: usize,
}

/// The `metadata` every synthesized row carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowProvenance {
    pub model: String,
    pub seed_dataset: String,
    pub seed_row: usize,
    pub sampling_seed: u64,
    /// Rows made from a failure-mode dataset: the mode aimed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluator: Option<String>,
    /// Present (possibly null) exactly when `failure_mode` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_run: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// `synth eval`: a failure-mode dataset, read back by `synth run`.

/// The manifest details of a dataset of kind `failure_modes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureModesManifest {
    pub eval_run: String,
    pub eval_dataset: String,
    /// The evaluated model's name.
    pub model: String,
    pub failure_modes: Vec<FailureModeRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureModeRecord {
    pub label: String,
    pub count: usize,
    pub evaluator: String,
    pub description: String,
}

/// The `metadata` of a failure-mode row. Every field is written; when read back, any may be
/// missing (the reader says which it needs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureModeRow {
    pub failure_mode: Option<String>,
    pub evaluator: Option<String>,
    /// Why the evaluator failed the row.
    pub rationale: Option<String>,
    pub model_output: Option<String>,
    pub reference: Option<String>,
    pub eval_run: Option<String>,
    /// The row's index in the evaluated dataset.
    pub row: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// `synth eval`: `evals/<run>/summary.json` and `results.jsonl`, read by `synth eval show`.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalSummary {
    pub run_id: String,
    pub created_at: String,
    pub synth_version: String,
    pub recipe_file: String,
    pub recipe: Value,
    pub dataset: EvalDatasetRecord,
    pub model: ModelRecord,
    /// The judge model of each LLM-judge evaluator, by evaluator name.
    pub judges: BTreeMap<String, String>,
    /// Judge models other than the evaluated one.
    pub judge_models: Vec<ModelRecord>,
    pub device: String,
    pub inference_seed: u64,
    pub rows: usize,
    pub passed_rows: usize,
    pub failed_rows: usize,
    pub evaluators: Vec<EvaluatorSummary>,
    /// Rows by the finish reason of the model's answer.
    pub finish_reasons: BTreeMap<String, usize>,
    pub tokens: EvalTokens,
    pub wall_seconds: f64,
    pub failure_modes_dataset: Option<String>,
    pub failure_modes: Vec<EvalFailureMode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalDatasetRecord {
    pub id: String,
    pub rows_used: usize,
    pub rows_in_dataset: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub pass: usize,
    pub fail: usize,
    pub unparseable: usize,
    pub skipped: usize,
    /// Passes among the rows it applied to; `None` when it applied to none.
    pub pass_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalTokens {
    pub prompt: usize,
    pub generated: usize,
    pub judge_prompt: usize,
    pub judge_generated: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalFailureMode {
    pub label: String,
    pub count: usize,
    pub description: String,
}

/// One line of `results.jsonl`: a dataset row, the model's answer and every evaluator's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalResult {
    pub row: usize,
    pub prompt: Vec<Message>,
    pub reference: String,
    pub output: String,
    pub finish_reason: FinishReason,
    pub tokens: TokenCounts,
    pub passed: bool,
    /// By evaluator name, in recipe order.
    pub evaluations: serde_json::Map<String, Value>,
}

/// One evaluator's verdict on one row (the values of [`EvalResult::evaluations`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationRecord {
    /// `pass`, `fail`, `unparseable` or `skipped`.
    pub verdict: String,
    pub rationale: String,
    /// A deterministic evaluator's reason for a failure (`wrong-number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_reply: Option<String>,
}

impl EvalResult {
    /// The row's evaluations, typed; an entry that does not read is left out.
    pub fn records(&self) -> Vec<(&str, EvaluationRecord)> {
        self.evaluations.iter().filter_map(|(name, v)| Some((name.as_str(), EvaluationRecord::deserialize(v).ok()?))).collect()
    }

    /// Evaluators that gave this row `verdict`.
    pub fn count(&self, verdict: &str) -> usize {
        self.records().iter().filter(|(_, r)| r.verdict == verdict).count()
    }
}

/// Rounds to three decimals, for the figures manifests and summaries show.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Hex sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("reading `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_keeps_its_key_order_and_leaves_out_absent_fields() {
        let p = RowProvenance { model: "m".into(), seed_dataset: "d".into(), seed_row: 3, sampling_seed: 9, failure_mode: None, evaluator: None, eval_run: None };
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"model":"m","seedDataset":"d","seedRow":3,"samplingSeed":9}"#);
        let t = RowProvenance { failure_mode: Some("x/y".into()), eval_run: Some(Value::Null), ..p };
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"model":"m","seedDataset":"d","seedRow":3,"samplingSeed":9,"failureMode":"x/y","evalRun":null}"#);
    }

    #[test]
    fn a_failure_mode_row_reads_with_missing_fields() {
        let row: FailureModeRow = serde_json::from_value(serde_json::json!({"failureMode": "a/b", "other": 1})).unwrap();
        assert_eq!(row.failure_mode.as_deref(), Some("a/b"));
        assert_eq!(row.rationale, None);
    }
}

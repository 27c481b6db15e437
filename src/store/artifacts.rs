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
    /// How alike the new requests are (runs with `numSamples`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diversity: Option<DiversityRecord>,
    /// Generations replayed from the journal of an interrupted earlier attempt.
    pub resumed_generations: usize,
    pub tokens: RunTokens,
    /// Of this process (a resumed run's earlier attempts not included).
    pub wall_seconds: f64,
    /// `tokens.generatedThisRun / wallSeconds`.
    pub tokens_per_second: f64,
    /// What the curation gates did (settings, thresholds, drops by gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curation: Option<CurationRecord>,
    /// How rows were split: groups by seed row, sizes, near duplicates across splits (absent on
    /// a shard, which is not split). Not `splits`: that key is the manifest's list of split files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_groups: Option<SplitRecord>,
    /// Present on a shard of a run (`--shard I/N`), which `synth datasets merge` publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// The file beside the splits that keeps the dropped candidates ([`DROPPED_FILE`]), when
    /// the run dropped any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_file: Option<String>,
}

/// A dataset's dropped candidates, one JSON object per line, in candidate order: written by
/// `synth run` and `synth datasets merge`, read by `synth datasets report`.
pub const DROPPED_FILE: &str = "dropped.jsonl";

/// A candidate a run dropped: where it came from, why, and what it had when it was dropped
/// (the conversation so far, the generation that failed last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroppedCandidate {
    pub seed_row: usize,
    pub variant: u32,
    /// A drop reason key, as in the manifest's `counts.droppedBy`.
    pub reason: String,
    pub messages: Vec<Message>,
    /// The judge's reply, for a row the judge gate dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_reply: Option<String>,
}

/// Which shard of which work a shard dataset is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardRecord {
    pub index: usize,
    pub count: usize,
    /// The run's journal fingerprint (recipe, seed rows, model files, device, options): equal
    /// on every shard of one run.
    pub fingerprint: String,
}

/// The tokens of every generation the dataset was made from, and of those this process made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTokens {
    pub prompt: usize,
    pub generated: usize,
    /// Generated by this process; less than `generated` when the run resumed a journal.
    pub generated_this_run: usize,
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
    /// Rows asked for (`numSamples`); absent when the run made one row per seed row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_samples: Option<usize>,
    /// The most candidates the run could try (`--max-candidates`), with `numSamples`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_candidates: Option<usize>,
    /// Candidates (seed row, variant) tried, with `numSamples`: `rows + dropped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
}

/// How alike a run's new requests (first user messages) are: `distinct1`/`distinct2` are the
/// unique word uni/bigrams over all of them, and `similarSameSeedPairs` the share of pairs made
/// from the same seed row whose word-trigram sets have a Jaccard index of 0.5 or more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiversityRecord {
    /// `on` or `off` (`--diversity`).
    pub mechanism: String,
    pub distinct1: f64,
    pub distinct2: f64,
    pub same_seed_pairs: usize,
    pub similar_same_seed_pairs: f64,
}

/// What curation did (the manifest's `curation`): every gate on or off, its thresholds, the
/// candidates checked and the drops by gate. See [`crate::curation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurationRecord {
    /// Every gate by key, in the order a candidate meets them: `true` when it ran.
    #[serde(with = "named_in_order")]
    pub gates: Vec<(String, bool)>,
    /// Jaccard index of word-3-gram sets at or above which two texts are near duplicates.
    pub near_duplicate_threshold: f64,
    pub min_hash: MinHashRecord,
    pub thresholds: FilterThresholds,
    /// Datasets excluded (decontamination) and how many of their user messages were indexed.
    pub exclude: Vec<String>,
    pub excluded_messages: usize,
    pub checked: CheckedCounts,
    /// Candidates dropped, by gate key.
    pub dropped_by: BTreeMap<String, usize>,
    /// The judge gate, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeRecord>,
}

/// The judge gate's settings (the manifest's `curation.judge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeRecord {
    /// The registry name of the judge model.
    pub model: String,
    pub prompt_template: String,
    pub max_new_tokens: usize,
    /// What a reply without a readable verdict does to its row.
    pub unparseable: String,
}

/// The MinHash LSH that finds near-duplicate candidates (decisions use the exact Jaccard index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinHashRecord {
    pub shingle: String,
    pub permutations: usize,
    pub bands: usize,
    pub rows_per_band: usize,
}

/// The fixed thresholds of the heuristic filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterThresholds {
    pub min_request_words: usize,
    pub repetition_min_words: usize,
    pub repetition_ratio: f64,
    pub repetition_bigram_ratio: f64,
    pub echo_overlap: f64,
}

/// How many requests, answers and finished rows went through the gates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckedCounts {
    pub requests: usize,
    pub answers: usize,
    pub rows: usize,
    /// Finished rows the judge graded.
    #[serde(default)]
    pub judged: usize,
}

/// How rows were split (the manifest's `splitGroups` record): grouped by seed row so that rows made
/// from one seed row never sit in two splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitRecord {
    /// `seedRow`: rows with the same `metadata.seedRow` form a group; a row without one is a
    /// group of its own.
    pub grouped_by: String,
    pub groups: usize,
    /// Rows per split (train, validation, test) that `datasetDistribution` asks for.
    pub target: [usize; 3],
    /// Rows per split made.
    pub sizes: [usize; 3],
    /// Rows that sit in another split than the target sizes would put them (half the sum of the
    /// absolute differences): 0 unless a group did not fit.
    pub rows_off_target: usize,
    /// Pairs of rows in different splits whose user turns are near duplicates; absent when not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_split_near_duplicates: Option<usize>,
}

/// The `metadata` every synthesized row carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowProvenance {
    pub model: String,
    pub seed_dataset: String,
    pub seed_row: usize,
    /// The pass over the seed rows that made this row (runs with `numSamples`; 0 is the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<u32>,
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
    /// By evaluator name, in recipe order; written as a JSON object.
    #[serde(with = "named_in_order")]
    pub evaluations: Vec<(String, EvaluationRecord)>,
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
    /// Evaluators that gave this row `verdict`.
    pub fn count(&self, verdict: &str) -> usize {
        self.evaluations.iter().filter(|(_, r)| r.verdict == verdict).count()
    }
}

/// A list of `(name, value)` pairs as a JSON object, keeping its order (serde_json's
/// `preserve_order` keeps the file's order when reading).
mod named_in_order {
    use serde::de::DeserializeOwned;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(pairs: &[(String, T)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (name, value) in pairs {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<(String, T)>, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        map.into_iter()
            .map(|(name, value)| Ok((name, T::deserialize(value).map_err(serde::de::Error::custom)?)))
            .collect()
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
        let p = RowProvenance {
            model: "m".into(),
            seed_dataset: "d".into(),
            seed_row: 3,
            variant: None,
            sampling_seed: 9,
            failure_mode: None,
            evaluator: None,
            eval_run: None,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"model":"m","seedDataset":"d","seedRow":3,"samplingSeed":9}"#
        );
        let t = RowProvenance { failure_mode: Some("x/y".into()), eval_run: Some(Value::Null), ..p };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"model":"m","seedDataset":"d","seedRow":3,"samplingSeed":9,"failureMode":"x/y","evalRun":null}"#
        );
    }

    #[test]
    fn a_failure_mode_row_reads_with_missing_fields() {
        let row: FailureModeRow =
            serde_json::from_value(serde_json::json!({"failureMode": "a/b", "other": 1})).unwrap();
        assert_eq!(row.failure_mode.as_deref(), Some("a/b"));
        assert_eq!(row.rationale, None);
    }
}

//! Targeted synthesis: `synth run` on a seed dataset of kind `failure_modes` (made by
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

use anyhow::Result;
use serde_json::Value;

use super::pipeline::{metadata, seed_parts, DropReason, Pipeline, Turns};
use crate::error::SynthError;
use crate::generation::Candidate;
use crate::store::artifacts::{
    FailureModeRow, FailureModesManifest, RowProvenance, TargetedModeRecord, TargetedRecord,
};
use crate::store::{Manifest, Message, Row};

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
pub fn failed_example(
    row: &Row,
    descriptions: &BTreeMap<String, String>,
) -> std::result::Result<FailedExample, String> {
    let meta: FailureModeRow = match &row.metadata {
        Some(m) => serde_json::from_value(Value::Object(m.clone()))
            .map_err(|e| format!("has unreadable failure-mode metadata: {e}"))?,
        None => FailureModeRow::default(),
    };
    let text = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let label = text(meta.failure_mode).ok_or("has no `metadata.failureMode` label")?;
    let (system, request) = seed_parts(row);
    let request = request.ok_or("has no user message")?.to_string();
    let reference = row
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "assistant")
        .map(|m| m.content.clone())
        .ok_or("has no assistant message (the reference)")?;
    let description = descriptions.get(&label).cloned().unwrap_or_else(|| format!("failure mode `{label}`"));
    Ok(FailedExample {
        label,
        description,
        request,
        reference,
        system: system.map(str::to_string),
        evaluator: text(meta.evaluator),
        rationale: text(meta.rationale),
    })
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

/// The descriptions of a failure-mode dataset's modes, by label (none when its manifest does
/// not read).
fn descriptions(manifest: &Manifest) -> BTreeMap<String, String> {
    let Ok(details) = manifest.details::<FailureModesManifest>() else { return BTreeMap::new() };
    details.failure_modes.into_iter().map(|m| (m.label, m.description)).collect()
}

/// Failure-mode synthesis over the rows of a `failure_modes` dataset.
pub struct FailureModes {
    failed: Vec<FailedExample>,
    dataset_id: String,
    eval_run: Option<String>,
}

impl FailureModes {
    /// Reads every seed row as a failed example; a row without its label or reference is an
    /// error naming the row.
    pub fn new(dataset_id: &str, manifest: &Manifest, seeds: &[Row]) -> Result<FailureModes> {
        let descriptions = descriptions(manifest);
        let mut failed = Vec::with_capacity(seeds.len());
        for (i, row) in seeds.iter().enumerate() {
            failed.push(failed_example(row, &descriptions).map_err(|problem| {
                SynthError::invalid(format!("failure-mode dataset `{dataset_id}`, row {i}: {problem}"))
                    .hint("make the dataset again with `synth eval` and `generateFailureModes: true`")
            })?);
        }
        let eval_run = manifest.extra.get("evalRun").and_then(Value::as_str).map(str::to_string);
        Ok(FailureModes { failed, dataset_id: dataset_id.to_string(), eval_run })
    }
}

impl Pipeline for FailureModes {
    fn request(&self, candidate: Candidate, _rng: u64) -> Result<Vec<Message>, DropReason> {
        Ok(vec![Message::new("user", request_prompt(&self.failed[candidate.row]))])
    }

    /// Single-turn: `turns` is always empty.
    fn answer(&self, i: usize, _turns: &Turns, request: &str) -> Vec<Message> {
        vec![Message::new("system", grounding(&self.failed[i])), Message::new("user", request)]
    }

    /// `[user, assistant]`: the grounding is not part of the new example.
    fn row(&self, i: usize, turns: Vec<(String, String)>, provenance: RowProvenance) -> Row {
        let f = &self.failed[i];
        let provenance = RowProvenance {
            failure_mode: Some(f.label.clone()),
            evaluator: f.evaluator.clone(),
            eval_run: Some(self.eval_run.clone().map_or(Value::Null, Value::String)),
            ..provenance
        };
        let messages = turns.into_iter().flat_map(|(u, a)| [Message::new("user", u), Message::new("assistant", a)]);
        Row { messages: messages.collect(), metadata: Some(metadata(&provenance)) }
    }

    /// The eval run and dataset it came from, and per mode the failed rows and new rows.
    fn targeted(&self, rows: &[Row]) -> Option<TargetedRecord> {
        let mut per_mode: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for f in &self.failed {
            per_mode.entry(&f.label).or_default().0 += 1;
        }
        for row in rows {
            if let Some(label) = row.metadata.as_ref().and_then(|m| m.get("failureMode")).and_then(Value::as_str) {
                per_mode.entry(label).or_default().1 += 1;
            }
        }
        let failure_modes = per_mode
            .iter()
            .map(|(label, (seed_rows, rows))| TargetedModeRecord {
                label: label.to_string(),
                seed_rows: *seed_rows,
                rows: *rows,
            })
            .collect();
        Some(TargetedRecord {
            synthesis: "failure_modes".into(),
            eval_run: self.eval_run.clone(),
            failure_modes_dataset: self.dataset_id.clone(),
            failure_modes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn row(meta: Value) -> Row {
        Row {
            messages: vec![Message::new("user", "What is 7 times 8?"), Message::new("assistant", "56")],
            metadata: meta.as_object().cloned(),
        }
    }

    #[test]
    fn reads_failed_rows_with_their_mode() {
        let descriptions: BTreeMap<String, String> =
            [("numeric/wrong-number".to_string(), "the answer gave a wrong number".to_string())].into();
        let f = failed_example(&row(json!({"failureMode": "numeric/wrong-number", "evaluator": "numeric", "rationale": "expected 56, got 54"})), &descriptions).unwrap();
        assert_eq!(f.rationale.as_deref(), Some("expected 56, got 54"));
        assert_eq!(f.request, "What is 7 times 8?");
        assert_eq!(f.reference, "56");
        assert_eq!(f.description, "the answer gave a wrong number");
        assert_eq!(f.evaluator.as_deref(), Some("numeric"));
        let prompt = request_prompt(&f);
        assert!(
            prompt.contains("What is 7 times 8?")
                && prompt.contains("wrong number")
                && prompt.contains("numeric/wrong-number")
                && prompt.contains("got 54"),
            "{prompt}"
        );
        let ground = grounding(&f);
        assert!(ground.contains("56") && ground.contains("What is 7 times 8?"), "{ground}");

        assert!(failed_example(&row(json!({})), &descriptions).unwrap_err().contains("failureMode"));
        let no_reference = Row {
            messages: vec![Message::new("user", "q")],
            metadata: json!({"failureMode": "x"}).as_object().cloned(),
        };
        assert!(failed_example(&no_reference, &descriptions).unwrap_err().contains("assistant"));
    }
}

//! What one kind of synthesis asks of the model and makes of its answers, and why a seed row
//! may make no row.

use std::collections::BTreeMap;

use crate::curation::Gate;
use crate::engine::FinishReason;
use crate::generation::{Candidate, Generated, Rejection};
use crate::store::artifacts::{DroppedCandidate, RowProvenance, TargetedRecord};
use crate::store::{Message, Row};

/// The turns of a conversation made so far: (user message, assistant answer) pairs.
pub type Turns = [(String, String)];

/// What one kind of synthesis asks of the model and makes of its answers, for each candidate
/// (a seed row on one of its variants): `synth run` does the rest (model, journal, batched
/// stages, retries, splits, manifest).
pub trait Pipeline: Sync {
    /// Stage 1: the conversation that asks for a new request, or why this candidate is skipped.
    /// `rng` is the candidate's own seed, for choices a later variant makes.
    fn request(&self, candidate: Candidate, rng: u64) -> Result<Vec<Message>, DropReason>;
    /// Stage 2 (and each later answer): the conversation whose completion answers `request`,
    /// after the turns made so far.
    fn answer(&self, row: usize, turns: &Turns, request: &str) -> Vec<Message>;
    /// How many user turns the new row has after the first (the seed's follow-ups).
    fn follow_ups(&self, _row: usize) -> usize {
        0
    }
    /// The conversation whose completion is the next user turn after `turns`.
    fn follow_up(&self, _row: usize, _turns: &Turns) -> Vec<Message> {
        Vec::new()
    }
    /// The new dataset row; `provenance` is the metadata every row carries.
    fn row(&self, row: usize, turns: Vec<(String, String)>, provenance: RowProvenance) -> Row;
    /// What the judge's `{reference}` shows for seed row `row`: its first answer, if any.
    fn reference(&self, _row: usize) -> String {
        String::new()
    }
    /// For synthesis aimed at failure modes: what the manifest records of it, given the rows made.
    fn targeted(&self, _rows: &[Row]) -> Option<TargetedRecord> {
        None
    }
}

/// Why a candidate produced no new row (a follow-up user turn is checked as a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// The seed has no user message to start from.
    SeedWithoutUserMessage,
    /// The prompt does not fit the model's context.
    PromptTooLong,
    EmptyRequest,
    /// The request hit `inferenceMaxNewTokens` before the model ended it.
    RequestCutOff,
    EmptyAnswer,
    /// The answer hit `inferenceMaxNewTokens`: a truncated answer is not a training example.
    AnswerCutOff,
    /// A curation gate (quality filter, duplicate, decontamination) failed.
    Curation(Gate),
}

impl DropReason {
    pub fn key(self) -> &'static str {
        match self {
            DropReason::SeedWithoutUserMessage => "seedWithoutUserMessage",
            DropReason::PromptTooLong => "promptTooLong",
            DropReason::EmptyRequest => "emptyRequest",
            DropReason::RequestCutOff => "requestCutOff",
            DropReason::EmptyAnswer => "emptyAnswer",
            DropReason::AnswerCutOff => "answerCutOff",
            DropReason::Curation(gate) => gate.key(),
        }
    }
}

impl Rejection for DropReason {
    /// A new sampling seed cannot make a prompt fit.
    fn worth_retrying(&self) -> bool {
        *self != DropReason::PromptTooLong
    }
}

/// Which generation of a row a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Request,
    Answer,
}

/// Checks a stage's output; the cleaned text if it is usable.
pub fn check(generated: &Generated, stage: Stage) -> Result<String, DropReason> {
    let (empty, cut_off) = match stage {
        Stage::Request => (DropReason::EmptyRequest, DropReason::RequestCutOff),
        Stage::Answer => (DropReason::EmptyAnswer, DropReason::AnswerCutOff),
    };
    match generated.finish {
        FinishReason::PromptTooLong => return Err(DropReason::PromptTooLong),
        FinishReason::Length => return Err(cut_off),
        FinishReason::Stop => {}
    }
    let text = match stage {
        Stage::Request => clean_request(&generated.text),
        Stage::Answer => generated.text.trim().to_string(),
    };
    if text.is_empty() {
        Err(empty)
    } else {
        Ok(text)
    }
}

/// Removes what small models wrap a request in: surrounding whitespace, echoed example tags,
/// a leading label, matching quotes, and an answer or commentary they run on into.
pub fn clean_request(text: &str) -> String {
    let mut t = text.trim();
    for marker in ["\nResponse:", "\nAnswer:", "\nExample:", "\nNote:"] {
        if let Some(at) = t.find(marker) {
            t = t[..at].trim_end();
        }
    }
    for tag in ["<example>", "</example>"] {
        t = t.trim_start_matches(tag).trim_end_matches(tag).trim();
    }
    for label in ["New request:", "Request:", "new request:"] {
        if let Some(rest) = t.strip_prefix(label) {
            t = rest.trim();
        }
    }
    for (open, close) in [('"', '"'), ('\u{201c}', '\u{201d}'), ('\'', '\'')] {
        if t.len() >= 2 && t.starts_with(open) && t.ends_with(close) {
            t = t[open.len_utf8()..t.len() - close.len_utf8()].trim();
        }
    }
    t.to_string()
}

/// The seed's system message (if any) and first user message.
pub fn seed_parts(seed: &Row) -> (Option<&str>, Option<&str>) {
    let system = seed.messages.iter().find(|m| m.role == "system").map(|m| m.content.as_str());
    let user =
        seed.messages.iter().find(|m| m.role == "user" && !m.content.trim().is_empty()).map(|m| m.content.as_str());
    (system, user)
}

/// A made row dropped once every row is made (a duplicate of another seed row's row), as the
/// dataset's dropped file keeps it.
pub fn dropped_row(row: &Row, reason: DropReason) -> DroppedCandidate {
    let field = |name: &str| row.metadata.as_ref().and_then(|m| m.get(name)).and_then(serde_json::Value::as_u64);
    let candidate =
        Candidate { row: field("seedRow").unwrap_or(0) as usize, variant: field("variant").unwrap_or(0) as u32 };
    dropped(candidate, reason, row.messages.clone())
}

/// What the dataset's dropped file keeps of a dropped candidate (no judge reply).
pub fn dropped(candidate: Candidate, reason: DropReason, messages: Vec<Message>) -> DroppedCandidate {
    let reason = reason.key().to_string();
    DroppedCandidate { seed_row: candidate.row, variant: candidate.variant, reason, messages, judge_reply: None }
}

/// Counts of dropped rows by reason, as the manifest shows them.
pub fn drop_counts(drops: &[DropReason]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for d in drops {
        *counts.entry(d.key().to_string()).or_default() += 1;
    }
    counts
}

/// A row's metadata from its provenance.
pub fn metadata(provenance: &RowProvenance) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(provenance) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(text: &str, finish: FinishReason) -> Generated {
        Generated { text: text.into(), finish, prompt_tokens: 5, generated_tokens: 3 }
    }

    #[test]
    fn cleans_wrapped_requests() {
        assert_eq!(clean_request("  \"How do I bake bread?\"  "), "How do I bake bread?");
        assert_eq!(clean_request("<example>\nWhat is rust?\n</example>"), "What is rust?");
        assert_eq!(clean_request("New request: Sort a list in Python"), "Sort a list in Python");
        assert_eq!(clean_request("It's 'fine'"), "It's 'fine'");
        assert_eq!(clean_request("\"Name a bakery?\"\n\nResponse: \"The Crust\""), "Name a bakery?");
    }

    #[test]
    fn degenerate_outputs_are_classified() {
        assert_eq!(check(&gen("  ", FinishReason::Stop), Stage::Answer), Err(DropReason::EmptyAnswer));
        assert_eq!(check(&gen("long...", FinishReason::Length), Stage::Answer), Err(DropReason::AnswerCutOff));
        assert_eq!(check(&gen("x", FinishReason::PromptTooLong), Stage::Answer), Err(DropReason::PromptTooLong));
        assert_eq!(check(&gen(" Fine. ", FinishReason::Stop), Stage::Answer), Ok("Fine.".to_string()));
        assert_eq!(check(&gen("\"\"", FinishReason::Stop), Stage::Request), Err(DropReason::EmptyRequest));
        assert!(!DropReason::PromptTooLong.worth_retrying() && DropReason::AnswerCutOff.worth_retrying());
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let counts = drop_counts(&[DropReason::EmptyAnswer, DropReason::EmptyAnswer, DropReason::RequestCutOff]);
        assert_eq!(serde_json::to_value(counts).unwrap(), serde_json::json!({"requestCutOff": 1, "emptyAnswer": 2}));
    }
}

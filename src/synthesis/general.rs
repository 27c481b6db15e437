//! General synthesis: each seed row becomes one new, different example in its spirit.
//!
//! Two generations per row, each batched across all rows:
//! 1. *request*: the model is shown the seed's first user message and asked for a new request
//!    on the same topic and in the same style, but asking for something different;
//! 2. *answer*: the model answers that new request (under the seed's system message, if any).
//!
//! The new row is `[system?, user: request, assistant: answer]` with provenance metadata.
//! Degenerate generations are dropped and counted by reason, never silently kept.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{Generated, Pipeline};
use crate::engine::FinishReason;
use crate::store::{Message, Row};

/// Why a seed row produced no new row.
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
        }
    }
}

/// The instruction that turns a seed request into a new one.
pub fn request_prompt(seed_request: &str) -> String {
    format!(
        "Here is an example of a request a user sent to an AI assistant:\n\n<example>\n{}\n</example>\n\n\
         Write one new request that a different user might send: on the same topic and in the same style, \
         but asking for something different. Reply with the new request only, without any preamble, \
         quotes or answer.",
        seed_request.trim()
    )
}

/// The seed's system message (if any) and first user message.
pub fn seed_parts(seed: &Row) -> (Option<&str>, Option<&str>) {
    let system = seed.messages.iter().find(|m| m.role == "system").map(|m| m.content.as_str());
    let user = seed.messages.iter().find(|m| m.role == "user" && !m.content.trim().is_empty()).map(|m| m.content.as_str());
    (system, user)
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

/// Checks a stage's output; the cleaned text if it is usable.
pub fn check(generated: &Generated, empty: DropReason, cut_off: DropReason) -> Result<String, DropReason> {
    match generated.finish {
        FinishReason::PromptTooLong => return Err(DropReason::PromptTooLong),
        FinishReason::Length => return Err(cut_off),
        FinishReason::Stop => {}
    }
    let text = if empty == DropReason::EmptyRequest { clean_request(&generated.text) } else { generated.text.trim().to_string() };
    if text.is_empty() {
        Err(empty)
    } else {
        Ok(text)
    }
}

/// General synthesis over seed rows.
pub struct General<'a> {
    pub seeds: &'a [Row],
}

impl Pipeline for General<'_> {
    fn request(&self, i: usize) -> Result<Vec<Message>, DropReason> {
        let (_, user) = seed_parts(&self.seeds[i]);
        let user = user.ok_or(DropReason::SeedWithoutUserMessage)?;
        Ok(vec![Message::new("user", request_prompt(user))])
    }

    /// The new request under the seed's system message, if any.
    fn answer(&self, i: usize, request: &str) -> Vec<Message> {
        let (system, _) = seed_parts(&self.seeds[i]);
        let mut messages: Vec<Message> = system.map(|s| Message::new("system", s)).into_iter().collect();
        messages.push(Message::new("user", request));
        messages
    }

    fn row(&self, i: usize, request: String, answer: String, provenance: Map<String, Value>) -> Row {
        let mut messages = self.answer(i, &request);
        messages.push(Message::new("assistant", answer));
        Row { messages, metadata: Some(provenance) }
    }
}

/// Counts of dropped rows by reason, as the manifest shows them.
pub fn drop_counts(drops: &[DropReason]) -> Map<String, Value> {
    let mut counts: BTreeMap<DropReason, usize> = BTreeMap::new();
    for d in drops {
        *counts.entry(*d).or_default() += 1;
    }
    counts.into_iter().map(|(k, v)| (k.key().to_string(), json!(v))).collect()
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
        let (e, c) = (DropReason::EmptyAnswer, DropReason::AnswerCutOff);
        assert_eq!(check(&gen("  ", FinishReason::Stop), e, c), Err(DropReason::EmptyAnswer));
        assert_eq!(check(&gen("long...", FinishReason::Length), e, c), Err(DropReason::AnswerCutOff));
        assert_eq!(check(&gen("x", FinishReason::PromptTooLong), e, c), Err(DropReason::PromptTooLong));
        assert_eq!(check(&gen(" Fine. ", FinishReason::Stop), e, c), Ok("Fine.".to_string()));
        let (e, c) = (DropReason::EmptyRequest, DropReason::RequestCutOff);
        assert_eq!(check(&gen("\"\"", FinishReason::Stop), e, c), Err(DropReason::EmptyRequest));
    }

    #[test]
    fn seed_parts_take_system_and_first_user_message() {
        let row = Row {
            messages: vec![Message::new("system", "Be brief."), Message::new("user", "Hi"), Message::new("assistant", "Hello"), Message::new("user", "Again")],
            metadata: None,
        };
        assert_eq!(seed_parts(&row), (Some("Be brief."), Some("Hi")));
        let seeds = [row, Row { messages: vec![Message::new("assistant", "Hello")], metadata: None }];
        let general = General { seeds: &seeds };
        assert_eq!(general.answer(0, "New question"), vec![Message::new("system", "Be brief."), Message::new("user", "New question")]);
        assert_eq!(general.request(1), Err(DropReason::SeedWithoutUserMessage));
        let made = general.row(0, "New question".into(), "Sure.".into(), Map::new());
        assert_eq!(made.messages.len(), 3);
        let counts = drop_counts(&[DropReason::EmptyAnswer, DropReason::EmptyAnswer, DropReason::RequestCutOff]);
        assert_eq!(serde_json::Value::Object(counts), json!({"requestCutOff": 1, "emptyAnswer": 2}));
    }
}

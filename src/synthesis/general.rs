//! General synthesis: each seed row becomes one new, different example in its spirit.
//!
//! Two generations per row, each batched across all rows:
//! 1. *request*: the model is shown the seed's first user message and asked for a new request
//!    on the same topic and in the same style, but asking for something different;
//! 2. *answer*: the model answers that new request (under the seed's system message, if any).
//!
//! The new row is `[system?, user: request, assistant: answer]` with provenance metadata.
//! Degenerate generations are dropped and counted by reason, never silently kept.

use super::pipeline::{metadata, seed_parts, DropReason, Pipeline};
use crate::store::artifacts::RowProvenance;
use crate::store::{Message, Row};

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

    fn row(&self, i: usize, request: String, answer: String, provenance: RowProvenance) -> Row {
        let mut messages = self.answer(i, &request);
        messages.push(Message::new("assistant", answer));
        Row { messages, metadata: Some(metadata(&provenance)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_parts_take_system_and_first_user_message() {
        let row = Row {
            messages: vec![
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
                Message::new("assistant", "Hello"),
                Message::new("user", "Again"),
            ],
            metadata: None,
        };
        assert_eq!(seed_parts(&row), (Some("Be brief."), Some("Hi")));
        let seeds = [row, Row { messages: vec![Message::new("assistant", "Hello")], metadata: None }];
        let general = General { seeds: &seeds };
        assert_eq!(
            general.answer(0, "New question"),
            vec![Message::new("system", "Be brief."), Message::new("user", "New question")]
        );
        assert_eq!(general.request(1), Err(DropReason::SeedWithoutUserMessage));
        let provenance = RowProvenance {
            model: "m".into(),
            seed_dataset: "d".into(),
            seed_row: 0,
            sampling_seed: 1,
            failure_mode: None,
            evaluator: None,
            eval_run: None,
        };
        let made = general.row(0, "New question".into(), "Sure.".into(), provenance);
        assert_eq!(made.messages.len(), 3);
        assert_eq!(made.metadata.unwrap()["seedRow"], 0);
    }
}

//! General synthesis: each seed row becomes one new, different example in its spirit.
//!
//! Two generations per row, each batched across all rows:
//! 1. *request*: the model is shown the seed's first user message and asked for a new request
//!    on the same topic and in the same style, but asking for something different;
//! 2. *answer*: the model answers that new request (under the seed's system message, if any).
//!
//! The new row is `[system?, user: request, assistant: answer]` with provenance metadata.
//!
//! With `numSamples` the seed rows are used round-robin; pass `v > 0` over them is *variant*
//! `v`, whose stage-1 prompt also shows two other seed requests and a direction to move in
//! ([`DIRECTIONS`]; both drawn from the variant's seed), so that variants are not paraphrases.
//! A seed with `k` user turns gives a row with `k`: after each answer the model writes the
//! next user turn (shown the conversation so far and the seed's own follow-up for style), then
//! answers it; each is a stage of its own (3, 4, 5, …).
//! Degenerate generations are dropped and counted by reason, never silently kept.

use super::pipeline::{metadata, seed_parts, DropReason, Pipeline, Turns};
pub use super::prompts::{follow_up_prompt, request_prompt, variant_prompt, DIRECTIONS};
use crate::generation::{mix_seed, Candidate};
use crate::store::artifacts::RowProvenance;
use crate::store::{Message, Row};

/// The most user turns a new row gets from a multi-turn seed (each turn is two stages).
pub const MAX_TURNS: usize = 100;

/// The seed's user messages after the first (non-empty ones), at most `MAX_TURNS - 1`.
fn seed_follow_ups(seed: &Row) -> Vec<&str> {
    let users = seed.messages.iter().filter(|m| m.role == "user" && !m.content.trim().is_empty());
    users.skip(1).take(MAX_TURNS - 1).map(|m| m.content.as_str()).collect()
}

/// General synthesis over seed rows.
pub struct General<'a> {
    pub seeds: &'a [Row],
    /// Later variants see other seeds and a direction (`--diversity on`); off, they are prompted
    /// as the first pass is and differ only by their sampling seed.
    pub diversity: bool,
}

impl General<'_> {
    /// Two other seed rows with a user message and a direction, drawn from the variant's `rng`.
    fn variant_choices(&self, row: usize, rng: u64) -> (Vec<&str>, &'static str) {
        let direction = DIRECTIONS[(mix_seed(rng, 0xD1) % DIRECTIONS.len() as u64) as usize];
        let mut pool: Vec<(u64, &str)> = (0..self.seeds.len())
            .filter(|&j| j != row)
            .filter_map(|j| seed_parts(&self.seeds[j]).1.map(|user| (mix_seed(rng, j as u64), user)))
            .collect();
        pool.sort_unstable_by_key(|(order, _)| *order);
        (pool.into_iter().take(2).map(|(_, user)| user).collect(), direction)
    }
}

impl Pipeline for General<'_> {
    fn request(&self, candidate: Candidate, rng: u64) -> Result<Vec<Message>, DropReason> {
        let (_, user) = seed_parts(&self.seeds[candidate.row]);
        let user = user.ok_or(DropReason::SeedWithoutUserMessage)?;
        if candidate.variant == 0 || !self.diversity {
            return Ok(vec![Message::new("user", request_prompt(user))]);
        }
        let (others, direction) = self.variant_choices(candidate.row, rng);
        Ok(vec![Message::new("user", variant_prompt(user, &others, direction))])
    }

    /// The conversation so far and the new request, under the seed's system message, if any.
    fn answer(&self, i: usize, turns: &Turns, request: &str) -> Vec<Message> {
        let (system, _) = seed_parts(&self.seeds[i]);
        let mut messages: Vec<Message> = system.map(|s| Message::new("system", s)).into_iter().collect();
        for (user, answer) in turns {
            messages.push(Message::new("user", user.as_str()));
            messages.push(Message::new("assistant", answer.as_str()));
        }
        messages.push(Message::new("user", request));
        messages
    }

    fn reference(&self, row: usize) -> String {
        let messages = &self.seeds[row].messages;
        messages.iter().find(|m| m.role == "assistant").map_or_else(String::new, |m| m.content.clone())
    }

    fn follow_ups(&self, row: usize) -> usize {
        seed_follow_ups(&self.seeds[row]).len()
    }

    /// Turn `k` (after `k` answered turns) is shown the seed's `k`-th follow-up for style.
    fn follow_up(&self, row: usize, turns: &Turns) -> Vec<Message> {
        let seed = &self.seeds[row];
        let examples = seed_follow_ups(seed);
        let example = examples.get(turns.len().saturating_sub(1)).copied().unwrap_or_default();
        vec![Message::new("user", follow_up_prompt(seed_parts(seed).0, turns, example))]
    }

    fn row(&self, i: usize, turns: Vec<(String, String)>, provenance: RowProvenance) -> Row {
        let (system, _) = seed_parts(&self.seeds[i]);
        let mut messages: Vec<Message> = system.map(|s| Message::new("system", s)).into_iter().collect();
        for (user, answer) in turns {
            messages.push(Message::new("user", user));
            messages.push(Message::new("assistant", answer));
        }
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
        let general = General { seeds: &seeds, diversity: true };
        assert_eq!(
            general.answer(0, &[], "New question"),
            vec![Message::new("system", "Be brief."), Message::new("user", "New question")]
        );
        assert_eq!(general.request(Candidate { variant: 0, row: 1 }, 7), Err(DropReason::SeedWithoutUserMessage));
        assert_eq!(general.follow_ups(0), 1);
        let turns = [("New question".to_string(), "Sure.".to_string())];
        let follow = &general.follow_up(0, &turns)[0].content;
        assert!(follow.contains("User: New question\nAssistant: Sure.") && follow.contains("Again"), "{follow}");
        let provenance = RowProvenance {
            model: "m".into(),
            seed_dataset: "d".into(),
            seed_row: 0,
            variant: None,
            sampling_seed: 1,
            failure_mode: None,
            evaluator: None,
            eval_run: None,
        };
        let made = general.row(0, vec![("New question".into(), "Sure.".into())], provenance);
        assert_eq!(made.messages.len(), 3);
        assert_eq!(made.metadata.unwrap()["seedRow"], 0);
    }

    #[test]
    fn later_variants_see_other_seeds_and_a_direction_unless_diversity_is_off() {
        let seeds: Vec<Row> = ["Bake bread", "Fix a bike", "Learn chess", "Plant roses"]
            .iter()
            .map(|q| Row { messages: vec![Message::new("user", *q)], metadata: None })
            .collect();
        let general = General { seeds: &seeds, diversity: true };
        let first = general.request(Candidate { variant: 0, row: 0 }, 5).unwrap();
        assert_eq!(first[0].content, request_prompt("Bake bread"), "variant 0 keeps the first-pass prompt");
        let later = general.request(Candidate { variant: 1, row: 0 }, 5).unwrap()[0].content.clone();
        assert_eq!(later.matches("<example>").count(), 3, "{later}");
        assert!(later.contains("Bake bread") && DIRECTIONS.iter().any(|d| later.contains(d)), "{later}");
        assert_eq!(later, general.request(Candidate { variant: 1, row: 0 }, 5).unwrap()[0].content, "deterministic");
        let off = General { seeds: &seeds, diversity: false };
        assert_eq!(off.request(Candidate { variant: 1, row: 0 }, 5).unwrap(), first);
    }
}

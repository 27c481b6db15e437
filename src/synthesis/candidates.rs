//! Candidates to rows: which (seed row, variant) pairs a run tries, and the stages that turn a
//! candidate into a row or a drop.
//!
//! Without `numSamples` every seed row is tried once (variant 0), as a single wave. With it,
//! candidate `i` is seed row `i % n` on variant `i / n`; waves of candidates are tried, in
//! candidate order, until `numSamples` rows are accepted or the candidate budget is spent. A
//! wave is sized from the acceptance rate so far; what it accepts past `numSamples` is not
//! published. Each candidate's generations depend only on its own seed, so which rows are made
//! never depends on batching or on the order generations finish in.

use std::collections::BTreeMap;

use anyhow::Result;

use super::general::MAX_TURNS;
use super::pipeline::{check, DropReason, Pipeline, Stage};
use crate::generation::{mix_seed, Candidate, Job, JournaledGenerator};
use crate::recipe::InferenceSettings;
use crate::store::artifacts::RowProvenance;
use crate::store::Row;

/// What a run asks for: how many rows, from how many candidates at most.
#[derive(Debug, Clone, Copy)]
pub struct Volume {
    /// `numSamples`; `None`: one candidate per seed row.
    pub num_samples: Option<usize>,
    pub max_candidates: usize,
}

/// The default candidate budget is this many candidates per row asked for.
pub const CANDIDATES_PER_SAMPLE: usize = 3;

/// The acceptance rate a run with `numSamples` sizes its first wave for: fewer, larger waves
/// batch better, at the cost of some accepted candidates left unused.
const FIRST_WAVE_RATE: f64 = 0.5;

/// What the seed rows and model are called in each row's provenance.
pub struct Origin<'a> {
    pub model: &'a str,
    pub seed_dataset: &'a str,
    pub seed_rows: usize,
}

/// What the waves made: rows (candidate order), why the other candidates made none, and for
/// each row its seed row and first request.
pub struct Made {
    pub rows: Vec<Row>,
    pub drops: Vec<DropReason>,
    pub candidates: usize,
    pub unused: usize,
    pub requests: Vec<(usize, String)>,
}

/// The seed that candidate's generations are sampled from (stage `s` uses `mix_seed(it, s)`).
/// Variant 0 keeps the derivation runs without variants always had.
pub fn candidate_seed(inference_seed: u64, candidate: Candidate) -> u64 {
    let first = mix_seed(inference_seed, candidate.row as u64);
    match candidate.variant {
        0 => first,
        v => mix_seed(first, 0x7661_7269_616e_7400 ^ u64::from(v)),
    }
}

pub fn make_rows(
    generator: &mut JournaledGenerator,
    pipeline: &dyn Pipeline,
    inference: &InferenceSettings,
    origin: &Origin,
    volume: Volume,
) -> Result<Made> {
    let n = origin.seed_rows;
    let (target, budget) = match volume.num_samples {
        None => (n, n),
        Some(samples) => (samples, volume.max_candidates),
    };
    let mut made = Made { rows: Vec::new(), drops: Vec::new(), candidates: 0, unused: 0, requests: Vec::new() };
    while made.rows.len() < target && made.candidates < budget {
        let needed = target - made.rows.len();
        let rate = match made.candidates {
            0 if volume.num_samples.is_some() => FIRST_WAVE_RATE,
            0 => 1.0,
            tried => made.rows.len() as f64 / tried as f64,
        };
        let ahead = (needed as f64 / rate.max(0.25)).ceil() as usize;
        let wave = ahead.max(needed).min(budget - made.candidates);
        let candidates: Vec<Candidate> = (made.candidates..made.candidates + wave)
            .map(|i| Candidate { variant: (i / n) as u32, row: i % n })
            .collect();
        made.candidates += wave;
        let label = if volume.num_samples.is_some() { format!(" ({} more rows)", needed) } else { String::new() };
        let wave = Wave { generator: &mut *generator, pipeline, inference, label };
        for (candidate, outcome) in wave.run(&candidates)? {
            match outcome {
                Ok(turns) if made.rows.len() < target => {
                    made.requests.push((candidate.row, turns[0].0.clone()));
                    let provenance = provenance(origin, inference.seed, candidate, volume.num_samples.is_some());
                    made.rows.push(pipeline.row(candidate.row, turns, provenance));
                }
                Ok(_) => made.unused += 1,
                Err(reason) => made.drops.push(reason),
            }
        }
    }
    Ok(made)
}

fn provenance(origin: &Origin, inference_seed: u64, candidate: Candidate, with_variant: bool) -> RowProvenance {
    RowProvenance {
        model: origin.model.to_string(),
        seed_dataset: origin.seed_dataset.to_string(),
        seed_row: candidate.row,
        variant: with_variant.then_some(candidate.variant),
        sampling_seed: candidate_seed(inference_seed, candidate),
        failure_mode: None,
        evaluator: None,
        eval_run: None,
    }
}

/// One wave of candidates through every stage.
struct Wave<'g, 'a, 'p> {
    generator: &'g mut JournaledGenerator<'a>,
    pipeline: &'p dyn Pipeline,
    inference: &'p InferenceSettings,
    /// Added to progress labels.
    label: String,
}

/// A candidate between stages: its finished turns and the user turn awaiting an answer.
struct Open {
    turns: Vec<(String, String)>,
    user: String,
}

type Finished = BTreeMap<Candidate, Result<Vec<(String, String)>, DropReason>>;

impl Wave<'_, '_, '_> {
    fn params(&self, candidate: Candidate, stage: u8) -> crate::engine::SamplingParams {
        self.inference.sampling(mix_seed(candidate_seed(self.inference.seed, candidate), u64::from(stage)))
    }

    /// Stage 1 (requests), then per turn an answer stage and, while the seed has follow-ups,
    /// a follow-up stage. Outcomes come back in candidate order.
    fn run(mut self, candidates: &[Candidate]) -> Result<Finished> {
        let mut finished = Finished::new();
        let mut jobs = Vec::new();
        for &c in candidates {
            match self.pipeline.request(c, candidate_seed(self.inference.seed, c)) {
                Ok(messages) => jobs.push((c, Job { messages, params: self.params(c, 1) })),
                Err(reason) => drop(finished.insert(c, Err(reason))),
            }
        }
        let label = format!("requests{}", self.label);
        let mut open: BTreeMap<Candidate, Open> = BTreeMap::new();
        for (c, outcome) in self.generator.generate_stage(1, &label, jobs, |g| check(g, Stage::Request))? {
            match outcome {
                Ok(user) => drop(open.insert(c, Open { turns: Vec::new(), user })),
                Err(reason) => drop(finished.insert(c, Err(reason))),
            }
        }
        for turn in 0..MAX_TURNS as u8 {
            if open.is_empty() {
                break;
            }
            let answered = self.answers(turn, open, &mut finished)?;
            open = self.follow_ups(turn, answered, &mut finished)?;
        }
        Ok(finished)
    }

    /// Stage `2 turn + 2`: every open candidate's user turn answered.
    fn answers(&mut self, turn: u8, open: BTreeMap<Candidate, Open>, finished: &mut Finished) -> Result<Vec<Open2>> {
        let stage = 2 * turn + 2;
        let jobs = open
            .iter()
            .map(|(&c, o)| {
                (c, Job { messages: self.pipeline.answer(c.row, &o.turns, &o.user), params: self.params(c, stage) })
            })
            .collect();
        let label = if turn == 0 {
            format!("answers{}", self.label)
        } else {
            format!("answers, turn {}{}", turn + 1, self.label)
        };
        let outcomes = self.generator.generate_stage(stage, &label, jobs, |g| check(g, Stage::Answer))?;
        let mut answered = Vec::new();
        for ((c, mut o), (_, outcome)) in open.into_iter().zip(outcomes) {
            match outcome {
                Ok(answer) => {
                    o.turns.push((std::mem::take(&mut o.user), answer));
                    answered.push((c, o.turns));
                }
                Err(reason) => drop(finished.insert(c, Err(reason))),
            }
        }
        Ok(answered)
    }

    /// Stage `2 turn + 3`: the next user turn of every answered candidate whose seed has one;
    /// the others are finished.
    fn follow_ups(
        &mut self,
        turn: u8,
        answered: Vec<Open2>,
        finished: &mut Finished,
    ) -> Result<BTreeMap<Candidate, Open>> {
        let stage = 2 * turn + 3;
        let mut jobs = Vec::new();
        let mut waiting = BTreeMap::new();
        for (c, turns) in answered {
            if turns.len() > self.pipeline.follow_ups(c.row) {
                finished.insert(c, Ok(turns));
            } else {
                jobs.push((c, Job { messages: self.pipeline.follow_up(c.row, &turns), params: self.params(c, stage) }));
                waiting.insert(c, turns);
            }
        }
        let mut open = BTreeMap::new();
        if jobs.is_empty() {
            return Ok(open);
        }
        let label = format!("follow-ups, turn {}{}", turn + 2, self.label);
        for (c, outcome) in self.generator.generate_stage(stage, &label, jobs, |g| check(g, Stage::Request))? {
            let turns = waiting.remove(&c).unwrap_or_default();
            match outcome {
                Ok(user) => drop(open.insert(c, Open { turns, user })),
                Err(reason) => drop(finished.insert(c, Err(reason))),
            }
        }
        Ok(open)
    }
}

/// An answered candidate and its turns.
type Open2 = (Candidate, Vec<(String, String)>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_zero_keeps_the_old_seed_and_later_variants_get_their_own() {
        let c = |variant, row| Candidate { variant, row };
        assert_eq!(candidate_seed(42, c(0, 3)), mix_seed(42, 3));
        let seeds: std::collections::HashSet<u64> =
            (0..4).flat_map(|v| (0..4).map(move |r| candidate_seed(42, c(v, r)))).collect();
        assert_eq!(seeds.len(), 16);
    }
}

//! Candidates to rows, as one stream: which (seed row, variant) pairs a run tries, the stages
//! that turn a candidate into a row or a drop, and the fixed order rows are kept in.
//!
//! Each usable seed row has a *quota* of rows and a *budget* of candidates: without
//! `numSamples` one of each; with it, row `i` of `numSamples` goes to usable seed row
//! `i % n` (and candidate `i` of the budget likewise), so every seed row gets its share. A seed
//! row tries its variants 0, 1, 2, … in order, as many at once as it still needs rows, and a
//! dropped variant is replaced by its next one until the quota is met or the budget spent.
//!
//! Everything runs through one engine: a candidate's next stage (answer, follow-up turn) is
//! asked for as soon as the generation before it is accepted, so the engine stays full until
//! the end. Outcomes are *committed* in candidate order (`variant × seed rows + row`), never in
//! finishing order, and each candidate's generations depend only on its own seed: which rows
//! are made never depends on batching, threads or an interruption.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use super::general::MAX_TURNS;
use super::pipeline::{check, dropped, dropped_row, DropReason, Pipeline, Stage};
use super::shard::Shard;
use crate::curation::{self, Curator, Gate, RowGates};
use crate::engine::{FinishReason, SamplingParams};
use crate::evaluation::evaluators::Verdict;
use crate::evaluation::judge;
use crate::generation::{mix_seed, Ask, Candidate, Flow, Generated, Job, JournaledGenerator, Role};
use crate::recipe::judge_template::render_template;
use crate::recipe::InferenceSettings;
use crate::store::artifacts::{DroppedCandidate, RowProvenance};
use crate::store::{Message, Row};

/// What a run asks for: how many rows, from how many candidates at most, and which seed rows
/// this process makes them for.
#[derive(Debug, Clone, Copy)]
pub struct Volume {
    /// `numSamples`; `None`: one candidate per seed row.
    pub num_samples: Option<usize>,
    pub max_candidates: usize,
    /// `--shard I/N`: only the seed rows of shard I (their quotas are dealt over all seed rows).
    pub shard: Option<Shard>,
}

/// The default candidate budget is this many candidates per row asked for.
pub const CANDIDATES_PER_SAMPLE: usize = 3;

/// What the seed rows and model are called in each row's provenance.
pub struct Origin<'a> {
    pub model: &'a str,
    pub seed_dataset: &'a str,
    pub seed_rows: usize,
}

/// What the stream made: rows (candidate order), why the other candidates made none, how many
/// candidates were tried, and for each row its seed row and first request.
pub struct Made {
    /// Rows asked of this process: `numSamples` (or one per usable seed row), a shard's share.
    pub asked: usize,
    pub rows: Vec<Row>,
    pub drops: Vec<DropReason>,
    pub candidates: usize,
    pub requests: Vec<(usize, String)>,
    /// Every dropped candidate with its text, in candidate order (the dataset's dropped file).
    pub dropped: Vec<DroppedCandidate>,
}

/// The judge's generation of a finished row, after every turn's stages (1, 2, ... 2 × turns).
pub const JUDGE_STAGE: u8 = u8::MAX;

/// The seed that candidate's generations are sampled from (stage `s` uses `mix_seed(it, s)`).
/// Variant 0 keeps the derivation runs without variants always had.
pub fn candidate_seed(inference_seed: u64, candidate: Candidate) -> u64 {
    let first = mix_seed(inference_seed, candidate.row as u64);
    match candidate.variant {
        0 => first,
        v => mix_seed(first, 0x7661_7269_616e_7400 ^ u64::from(v)),
    }
}

/// Tokens an engine slot starts with: room for a stage-1 prompt and its answer; slots grow
/// when a later, longer prompt (a multi-turn conversation) needs it.
const FIRST_SLOT_PROMPT: usize = 1024;

pub fn make_rows(
    generator: &mut JournaledGenerator,
    pipeline: &dyn Pipeline,
    curator: &mut Curator,
    inference: &InferenceSettings,
    origin: &Origin,
    volume: Volume,
) -> Result<Made> {
    let mut rows = Rows::new(pipeline, curator, inference, origin, volume);
    let asked = rows.chains.iter().map(|c| c.quota).sum();
    rows.made.asked = asked;
    generator.run(&mut rows, asked, FIRST_SLOT_PROMPT + inference.max_new_tokens)?;
    let mut made = rows.made;
    made.dropped.sort_by_key(|c| (c.variant, c.seed_row));
    if volume.shard.is_none() {
        for gate in made.drop_across_seed_rows(curator.row_gates()) {
            curator.count_dropped(gate);
        }
    }
    Ok(made)
}

impl Made {
    /// Drops the rows that repeat an earlier row of another seed row (a shard's are dropped by
    /// the merge instead: see [`curation::across_seed_rows`]); returns the gates that dropped them.
    pub fn drop_across_seed_rows(&mut self, gates: RowGates) -> Vec<Gate> {
        let verdicts = curation::across_seed_rows(&self.rows, gates);
        for (row, gate) in self.rows.iter().zip(&verdicts) {
            if let Some(gate) = gate {
                self.dropped.push(dropped_row(row, DropReason::Curation(*gate)));
            }
        }
        let dropped: Vec<Gate> = verdicts.iter().flatten().copied().collect();
        let mut keep = verdicts.iter().map(Option::is_none);
        let mut keep_request = keep.clone();
        self.rows.retain(|_| keep.next().unwrap_or(true));
        self.requests.retain(|_| keep_request.next().unwrap_or(true));
        self.drops.extend(dropped.iter().map(|&gate| DropReason::Curation(gate)));
        dropped
    }
}

/// A candidate's turns as messages, then the generation that failed (if any).
fn conversation(turns: &[(String, String)], last: Option<Message>) -> Vec<Message> {
    let pairs =
        turns.iter().flat_map(|(u, a)| [Message::new("user", u.as_str()), Message::new("assistant", a.as_str())]);
    pairs.chain(last).collect()
}

/// One seed row's candidates: how many rows it must make and may try, and where it stands.
#[derive(Debug, Default, Clone)]
struct Chain {
    quota: usize,
    budget: usize,
    /// Variants started (the next one to start).
    started: usize,
    /// Started variants not resolved yet.
    running: usize,
    /// Resolved variants that made a row, committed or not.
    succeeded: usize,
    /// Rows committed.
    accepted: usize,
}

impl Chain {
    /// Another variant may help: the rows made or in the making fall short of the quota.
    fn wants_another(&self) -> bool {
        self.succeeded + self.running < self.quota && self.started < self.budget
    }

    /// Variant `v` still counts when the committed rows reach it.
    fn in_scope(&self, variant: usize) -> bool {
        self.accepted < self.quota && variant < self.budget
    }
}

/// A candidate between stages: its finished turns and the user turn awaiting an answer.
struct Open {
    turns: Vec<(String, String)>,
    user: String,
}

type Outcome = Result<Vec<(String, String)>, DropReason>;

/// The stream's state: chains, candidates in flight, outcomes waiting for their turn to be
/// committed, and what is committed.
struct Rows<'p> {
    pipeline: &'p dyn Pipeline,
    /// Gates each request and answer as it is accepted, and each row (duplicates) as it is
    /// committed.
    curator: &'p mut Curator,
    inference: &'p InferenceSettings,
    origin: &'p Origin<'p>,
    with_variants: bool,
    /// Seed rows no candidate can be made from (counted as dropped candidates).
    unusable: usize,
    chains: Vec<Chain>,
    /// The next candidate index of every chain that wants another variant.
    startable: BTreeSet<usize>,
    /// Generations ready to start, lowest candidate first, so started candidates finish first.
    ready: BTreeMap<usize, Ask>,
    open: BTreeMap<usize, Open>,
    resolved: BTreeMap<usize, Outcome>,
    /// What each dropped candidate had, until its drop is committed.
    dropped: BTreeMap<usize, DroppedCandidate>,
    /// The next candidate index to commit, and the first past every chain's budget.
    frontier: usize,
    end: usize,
    made: Made,
}

impl<'p> Rows<'p> {
    fn new(
        pipeline: &'p dyn Pipeline,
        curator: &'p mut Curator,
        inference: &'p InferenceSettings,
        origin: &'p Origin,
        volume: Volume,
    ) -> Self {
        let n = origin.seed_rows;
        let mut made = Made {
            asked: 0,
            rows: Vec::new(),
            drops: Vec::new(),
            candidates: 0,
            requests: Vec::new(),
            dropped: Vec::new(),
        };
        let ours = |row: usize| volume.shard.is_none_or(|s| s.holds(row));
        let mut usable = Vec::new();
        for row in 0..n {
            let first = Candidate { variant: 0, row };
            match pipeline.request(first, candidate_seed(inference.seed, first)) {
                Ok(_) => usable.push(row),
                Err(reason) if ours(row) => {
                    made.drops.push(reason);
                    made.dropped.push(dropped(first, reason, Vec::new()));
                }
                Err(_) => {}
            }
        }
        made.candidates = made.drops.len();
        let mut chains = vec![Chain::default(); n];
        let (rows, budget) = match volume.num_samples {
            None => (usable.len(), usable.len()),
            Some(samples) => (samples, volume.max_candidates),
        };
        for (k, &row) in usable.iter().enumerate().filter(|(_, &row)| ours(row)) {
            chains[row].quota = share(rows, usable.len(), k);
            chains[row].budget = share(budget, usable.len(), k);
        }
        let startable = (0..n).filter(|&row| chains[row].wants_another()).collect();
        let end = n * chains.iter().map(|c| c.budget).max().unwrap_or(0);
        Rows {
            pipeline,
            curator,
            inference,
            origin,
            with_variants: volume.num_samples.is_some(),
            unusable: made.drops.len(),
            chains,
            startable,
            ready: BTreeMap::new(),
            open: BTreeMap::new(),
            resolved: BTreeMap::new(),
            dropped: BTreeMap::new(),
            frontier: 0,
            end,
            made,
        }
    }

    fn candidate(&self, index: usize) -> Candidate {
        let n = self.origin.seed_rows;
        Candidate { variant: (index / n) as u32, row: index % n }
    }

    fn index(&self, candidate: Candidate) -> usize {
        candidate.variant as usize * self.origin.seed_rows + candidate.row
    }

    fn params(&self, candidate: Candidate, stage: u8) -> SamplingParams {
        self.inference.sampling(mix_seed(candidate_seed(self.inference.seed, candidate), u64::from(stage)))
    }

    fn ask(&mut self, index: usize, stage: u8, messages: Vec<crate::store::Message>) {
        let candidate = self.candidate(index);
        let job = Job { messages, params: self.params(candidate, stage) };
        self.ready.insert(index, Ask { stage, candidate, job, role: Role::Run });
    }

    /// Starts the lowest startable candidate: its stage-1 generation is ready, or it is
    /// resolved at once when its prompt cannot be made.
    fn start_next(&mut self) -> bool {
        let Some(index) = self.startable.pop_first() else { return false };
        let candidate = self.candidate(index);
        let chain = &mut self.chains[candidate.row];
        chain.started += 1;
        chain.running += 1;
        self.restartable(candidate.row);
        match self.pipeline.request(candidate, candidate_seed(self.inference.seed, candidate)) {
            Ok(messages) => self.ask(index, 1, messages),
            Err(reason) => self.finish(index, Err(reason)),
        }
        true
    }

    /// Puts a chain's next variant among the startable ones if it wants another.
    fn restartable(&mut self, row: usize) {
        let chain = &self.chains[row];
        if chain.wants_another() {
            self.startable.insert(chain.started * self.origin.seed_rows + row);
        }
    }

    /// The stage after an accepted generation: an answer after a user turn; after an answer,
    /// the seed's next follow-up turn, or the row is finished.
    fn advance(&mut self, index: usize, stage: u8, text: String) {
        let row = self.candidate(index).row;
        let mut open = self.open.remove(&index).unwrap_or(Open { turns: Vec::new(), user: String::new() });
        let gate = match stage % 2 {
            1 => self.curator.check_request(row, &text),
            _ => self.curator.check_answer(row, &open.user, &text),
        };
        if let Err(gate) = gate {
            let mut messages = conversation(&open.turns, None);
            if stage.is_multiple_of(2) {
                messages.push(Message::new("user", open.user.as_str()));
            }
            messages.push(Message::new(if stage % 2 == 1 { "user" } else { "assistant" }, text));
            return self.drop_candidate(index, DropReason::Curation(gate), messages, None);
        }
        if stage % 2 == 1 {
            open.user = text;
            let messages = self.pipeline.answer(row, &open.turns, &open.user);
            self.open.insert(index, open);
            return self.ask(index, stage + 1, messages);
        }
        open.turns.push((std::mem::take(&mut open.user), text));
        if open.turns.len() > self.pipeline.follow_ups(row) || open.turns.len() >= MAX_TURNS {
            return self.judge_or_finish(index, open);
        }
        let messages = self.pipeline.follow_up(row, &open.turns);
        self.open.insert(index, open);
        self.ask(index, stage + 1, messages)
    }

    /// A finished row goes to the judge when its gate runs (greedy, its own seed), else it is
    /// resolved.
    fn judge_or_finish(&mut self, index: usize, open: Open) {
        let Some(judge) = self.curator.judge() else { return self.finish(index, Ok(open.turns)) };
        let candidate = self.candidate(index);
        let prompt = judge_prompt(&judge.template, &self.pipeline.reference(candidate.row), &open.turns);
        let params = SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: judge.max_new_tokens,
            seed: mix_seed(candidate_seed(self.inference.seed, candidate), u64::from(JUDGE_STAGE)),
        };
        let job = Job { messages: vec![Message::new("user", prompt)], params };
        self.open.insert(index, open);
        self.ready.insert(index, Ask { stage: JUDGE_STAGE, candidate, job, role: Role::Judge });
    }

    /// The judge's reply on a finished row: its verdict keeps or drops the row.
    fn judged(&mut self, index: usize, reply: &str) {
        let turns = self.open.get(&index).map(|o| o.turns.clone()).unwrap_or_default();
        let verdict = match judge::parse(reply).verdict {
            Verdict::Pass => Some(true),
            Verdict::Fail => Some(false),
            Verdict::Unparseable | Verdict::Skipped => None,
        };
        match self.curator.check_judged(verdict) {
            Ok(()) => self.finish(index, Ok(turns)),
            Err(gate) => {
                let messages = conversation(&turns, None);
                self.drop_candidate(index, DropReason::Curation(gate), messages, Some(reply.to_string()))
            }
        }
    }

    /// A candidate is dropped: what it had is kept for the dataset's dropped file.
    fn drop_candidate(
        &mut self,
        index: usize,
        reason: DropReason,
        messages: Vec<Message>,
        judge_reply: Option<String>,
    ) {
        let candidate = self.candidate(index);
        let detail = DroppedCandidate { judge_reply, ..dropped(candidate, reason, messages) };
        self.dropped.insert(index, detail);
        self.finish(index, Err(reason));
    }

    /// A candidate is resolved: its chain may want another variant, and the committed prefix
    /// may grow.
    fn finish(&mut self, index: usize, outcome: Outcome) {
        let row = self.candidate(index).row;
        self.open.remove(&index);
        let chain = &mut self.chains[row];
        chain.running -= 1;
        chain.succeeded += usize::from(outcome.is_ok());
        self.resolved.insert(index, outcome);
        self.restartable(row);
        self.commit();
    }

    /// Commits resolved outcomes in candidate order up to the first one still running;
    /// candidates their chain no longer needs are passed over.
    fn commit(&mut self) {
        while self.frontier < self.end {
            let candidate = self.candidate(self.frontier);
            if !self.chains[candidate.row].in_scope(candidate.variant as usize) {
                self.frontier += 1;
                continue;
            }
            let Some(outcome) = self.resolved.remove(&self.frontier) else { break };
            self.made.candidates += 1;
            let failed = match outcome {
                Ok(turns) => match self.dedup(candidate, &turns) {
                    Ok(()) => {
                        self.keep(candidate, turns);
                        None
                    }
                    Err(reason) => Some((reason, conversation(&turns, None))),
                },
                Err(reason) => Some((reason, Vec::new())),
            };
            if let Some((reason, messages)) = failed {
                let detail =
                    self.dropped.remove(&self.frontier).unwrap_or_else(|| dropped(candidate, reason, messages));
                self.made.drops.push(reason);
                self.made.dropped.push(detail);
            }
            self.frontier += 1;
        }
    }

    /// A row that duplicates a seed row or a kept row is dropped, and its seed row tries
    /// another variant.
    fn dedup(&mut self, candidate: Candidate, turns: &[(String, String)]) -> Result<(), DropReason> {
        if let Err(gate) = self.curator.accept(candidate.row, turns) {
            self.chains[candidate.row].succeeded -= 1;
            self.restartable(candidate.row);
            return Err(DropReason::Curation(gate));
        }
        Ok(())
    }

    fn keep(&mut self, candidate: Candidate, turns: Vec<(String, String)>) {
        self.chains[candidate.row].accepted += 1;
        self.made.requests.push((candidate.row, turns[0].0.clone()));
        let provenance = RowProvenance {
            model: self.origin.model.to_string(),
            seed_dataset: self.origin.seed_dataset.to_string(),
            seed_row: candidate.row,
            variant: self.with_variants.then_some(candidate.variant),
            sampling_seed: candidate_seed(self.inference.seed, candidate),
            failure_mode: None,
            evaluator: None,
            eval_run: None,
        };
        self.made.rows.push(self.pipeline.row(candidate.row, turns, provenance));
    }
}

/// The judge's prompt: the rubric with the conversation up to the last answer as `{prompt}`
/// (the request alone for a single-turn row), that answer as `{output}`, and the seed row's
/// answer as `{reference}`.
fn judge_prompt(template: &str, reference: &str, turns: &[(String, String)]) -> String {
    let Some(((last_user, last_answer), earlier)) = turns.split_last() else {
        return render_template(template, "", reference, "");
    };
    let prompt = match earlier {
        [] => last_user.clone(),
        _ => {
            let mut lines: Vec<String> =
                earlier.iter().flat_map(|(u, a)| [format!("User: {u}"), format!("Assistant: {a}")]).collect();
            lines.push(format!("User: {last_user}"));
            lines.join("\n\n")
        }
    };
    render_template(template, &prompt, reference, last_answer)
}

/// Item `k`'s share when `total` is dealt round-robin over `ways`.
fn share(total: usize, ways: usize, k: usize) -> usize {
    total / ways + usize::from(k < total % ways)
}

impl Flow for Rows<'_> {
    type Reject = DropReason;

    fn next(&mut self) -> Option<Ask> {
        loop {
            if let Some((_, ask)) = self.ready.pop_first() {
                return Some(ask);
            }
            if !self.start_next() {
                return None;
            }
        }
    }

    /// The first stage and every follow-up make a user turn; the even stages answer one. A
    /// judge's reply is read whatever it is (a cut-off reply may still hold its verdict).
    fn check(&self, stage: u8, generated: &Generated) -> Result<String, DropReason> {
        match stage {
            JUDGE_STAGE if generated.finish == FinishReason::PromptTooLong => Err(DropReason::PromptTooLong),
            JUDGE_STAGE => Ok(generated.text.clone()),
            _ => check(generated, if stage % 2 == 1 { Stage::Request } else { Stage::Answer }),
        }
    }

    fn resolved(&mut self, stage: u8, candidate: Candidate, outcome: Result<String, DropReason>) {
        let index = self.index(candidate);
        match outcome {
            Ok(text) if stage == JUDGE_STAGE => self.judged(index, &text),
            Ok(text) => self.advance(index, stage, text),
            Err(reason) => {
                let open = self.open.get(&index);
                let mut messages = conversation(open.map_or(&[][..], |o| &o.turns), None);
                if let Some(user) = open.map(|o| &o.user).filter(|u| stage.is_multiple_of(2) && !u.is_empty()) {
                    messages.push(Message::new("user", user.as_str()));
                }
                self.drop_candidate(index, reason, messages, None)
            }
        }
    }

    fn complete(&self) -> bool {
        self.frontier >= self.end
    }

    fn made(&self) -> (usize, String) {
        let tried = self.unusable + self.chains.iter().map(|c| c.started).sum::<usize>();
        let made = self.chains.iter().map(|c| c.succeeded.min(c.quota)).sum();
        (made, format!("{tried} candidates, {} dropped", self.made.drops.len()))
    }
}

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

    use crate::curation::{CurationSettings, Gate, JudgeSettings};
    use crate::synthesis::general::General;

    /// Drives the flow as an engine with `slots` slots would, finishing running generations in
    /// an order drawn from `order`. A generation is empty (dropped) when `fails` says so.
    /// Returns the rows, the drops, the candidates, and whether a later stage was asked for
    /// while first stages of other candidates were still running.
    fn stream(
        seeds: &[Row],
        volume: Volume,
        slots: usize,
        order: u64,
        fails: impl Fn(Candidate, u8) -> bool,
    ) -> (Vec<Row>, Vec<DropReason>, usize, bool) {
        stream_judged(seeds, volume, slots, order, fails, None)
    }

    /// The judge's reply to a candidate's row, given its prompt.
    type Verdicts = dyn Fn(Candidate, &str) -> String;

    /// [`stream`], with the judge gate on when `judge` gives the judge's reply to each row.
    fn stream_judged(
        seeds: &[Row],
        volume: Volume,
        slots: usize,
        order: u64,
        fails: impl Fn(Candidate, u8) -> bool,
        judge: Option<&Verdicts>,
    ) -> (Vec<Row>, Vec<DropReason>, usize, bool) {
        // Only the duplicate gates (and the judge): the fake texts are not meant to pass the
        // quality filters.
        let on = |g: &Gate| matches!(g, Gate::ExactDuplicate | Gate::NearDuplicate | Gate::Judge);
        let judge_settings = judge.map(|_| JudgeSettings::default());
        let settings = CurationSettings {
            off: Gate::ALL.into_iter().filter(|g| !on(g)).collect(),
            judge: judge_settings,
            ..CurationSettings::default()
        };
        let mut curator = Curator::new(&settings, seeds, &[]);
        let general = General { seeds, diversity: true };
        let inference = InferenceSettings {
            temperature: 0.7,
            max_new_tokens: 16,
            seed: 42,
            seed_was_given: true,
            requests_per_minute: None,
            top_p: 1.0,
            top_k: 0,
            enable_thinking: false,
        };
        let origin = Origin { model: "m", seed_dataset: "d", seed_rows: seeds.len() };
        let mut rows = Rows::new(&general, &mut curator, &inference, &origin, volume);
        let (mut running, mut overlapped, mut step) = (Vec::<Ask>::new(), false, 0);
        loop {
            while running.len() < slots {
                let Some(ask) = rows.next() else { break };
                overlapped |= ask.stage > 1 && running.iter().any(|a| a.stage == 1);
                running.push(ask);
            }
            if running.is_empty() {
                break;
            }
            step += 1;
            let ask = running.swap_remove((mix_seed(order, step) % running.len() as u64) as usize);
            let c = ask.candidate;
            let text = match (fails(c, ask.stage), c.row == 0 && c.variant == 1) {
                _ if ask.stage == JUDGE_STAGE => {
                    assert_eq!(ask.role, Role::Judge);
                    judge.expect("judged only when on")(c, &ask.job.messages[0].content)
                }
                (true, _) => String::new(),
                // Seed row 0's variant 1 asks what its variant 0 asked: an exact duplicate.
                (false, true) if ask.stage == 1 => "stage 1 of seed row 0 variant 0 at last".to_string(),
                _ => format!("stage {} of seed row {} variant {} at last", ask.stage, c.row, c.variant),
            };
            let generated = Generated { text, finish: FinishReason::Stop, prompt_tokens: 1, generated_tokens: 1 };
            let outcome = rows.check(ask.stage, &generated);
            rows.resolved(ask.stage, ask.candidate, outcome);
        }
        assert!(rows.complete(), "the stream ends only when every candidate it needs is resolved");
        (rows.made.rows, rows.made.drops, rows.made.candidates, overlapped)
    }

    fn seeds(n: usize) -> Vec<Row> {
        (0..n).map(|i| Row { messages: vec![Message::new("user", format!("Question {i}"))], metadata: None }).collect()
    }

    #[test]
    fn the_same_rows_whatever_the_slots_and_finishing_order() {
        let seeds = seeds(4);
        let volume = Volume { num_samples: Some(10), max_candidates: 30, shard: None };
        // Seed row 1's even variants leave their answer empty; seed row 3 never makes a request.
        let fails = |c: Candidate, stage: u8| (c.row == 1 && c.variant.is_multiple_of(2) && stage == 2) || c.row == 3;
        let (want, drops, candidates, _) = stream(&seeds, volume, 1, 0, fails);
        for (slots, order) in [(2, 1), (3, 2), (16, 3), (16, 4), (64, 5)] {
            let (rows, other_drops, other_candidates, overlapped) = stream(&seeds, volume, slots, order, fails);
            assert_eq!(rows, want, "slots {slots}, order {order}");
            assert_eq!((other_drops, other_candidates), (drops.clone(), candidates));
            assert!(overlapped || slots < 3, "answers start while other requests still run (slots {slots})");
        }
        let per_seed = |row: u64| want.iter().filter(|r| r.metadata.as_ref().unwrap()["seedRow"] == row).count();
        assert_eq!([per_seed(0), per_seed(1), per_seed(2), per_seed(3)], [3, 3, 2, 0], "quotas 3, 3, 2, 2");
        assert_eq!(want.len(), 8);
        // Seed row 3 spends its budget of 7 on empty requests; seed row 1 drops variants 0, 2, 4;
        // seed row 0's variant 1 duplicates its variant 0 and is replaced.
        assert_eq!(drops.iter().filter(|d| **d == DropReason::EmptyRequest).count(), 7);
        assert_eq!(drops.iter().filter(|d| **d == DropReason::EmptyAnswer).count(), 3);
        assert_eq!(drops.iter().filter(|d| **d == DropReason::Curation(Gate::ExactDuplicate)).count(), 1);
        let variants_of_0: Vec<_> = want
            .iter()
            .filter(|r| r.metadata.as_ref().unwrap()["seedRow"] == 0)
            .map(|r| r.metadata.as_ref().unwrap()["variant"].as_u64().unwrap())
            .collect();
        assert_eq!(variants_of_0, [0, 2, 3]);
        assert_eq!(candidates, want.len() + drops.len());
    }

    #[test]
    fn the_judge_grades_each_finished_row_and_a_failed_or_unreadable_one_is_replaced() {
        let seeds = seeds(3);
        let volume = Volume { num_samples: Some(6), max_candidates: 18, shard: None };
        // Seed row 1's variant 0 fails the judge; seed row 2's variant 1 gets no verdict; seed
        // row 0's variant 1 passes it but duplicates its variant 0.
        let verdict = |c: Candidate, prompt: &str| -> String {
            let answer = format!("Answer: stage 2 of seed row {} variant {} at last", c.row, c.variant);
            assert!(prompt.contains(&answer) && prompt.contains("Reply with Yes or No first"), "{prompt}");
            match (c.row, c.variant) {
                (1, 0) => "No. The answer does not address the request.".into(),
                (2, 1) => "Hmm, hard to say.".into(),
                _ => "Yes, it is a clear request with a fitting answer.".into(),
            }
        };
        let (want, drops, candidates, _) = stream_judged(&seeds, volume, 1, 0, |_, _| false, Some(&verdict));
        assert_eq!(
            drops,
            [Gate::Judge, Gate::ExactDuplicate, Gate::JudgeUnparseable].map(DropReason::Curation),
            "dropped in candidate order"
        );
        assert_eq!((want.len(), candidates), (6, 9));
        let made_from = |row: u64| {
            let of_row = want.iter().filter(|r| r.metadata.as_ref().unwrap()["seedRow"] == row);
            of_row.map(|r| r.metadata.as_ref().unwrap()["variant"].as_u64().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!((made_from(0), made_from(1), made_from(2)), (vec![0, 2], vec![1, 2], vec![0, 2]));
        for (slots, order) in [(3, 1), (16, 2)] {
            let (rows, other_drops, _, _) = stream_judged(&seeds, volume, slots, order, |_, _| false, Some(&verdict));
            assert_eq!((rows, other_drops), (want.clone(), drops.clone()), "slots {slots}");
        }
    }

    #[test]
    fn the_judge_sees_the_conversation_up_to_its_last_answer() {
        let turns = |n: usize| (0..n).map(|i| (format!("ask {i}"), format!("reply {i}"))).collect::<Vec<_>>();
        let template = "P[{prompt}] R[{reference}] O[{output}]";
        assert_eq!(judge_prompt(template, "seed reply", &turns(1)), "P[ask 0] R[seed reply] O[reply 0]");
        assert_eq!(
            judge_prompt(template, "", &turns(2)),
            "P[User: ask 0\n\nAssistant: reply 0\n\nUser: ask 1] R[] O[reply 1]"
        );
    }

    #[test]
    fn shards_make_exactly_the_rows_of_their_seed_rows() {
        let seeds = seeds(5);
        let fails = |c: Candidate, stage: u8| c.row == 2 && c.variant == 0 && stage == 1;
        let volume = |shard| Volume { num_samples: Some(12), max_candidates: 36, shard };
        let (whole, whole_drops, whole_candidates, _) = stream(&seeds, volume(None), 4, 1, fails);
        let mut merged = Vec::new();
        let (mut drops, mut candidates) = (0, 0);
        for index in 0..3 {
            let (rows, shard_drops, shard_candidates, _) =
                stream(&seeds, volume(Some(Shard { index, count: 3 })), 4, 7, fails);
            merged.extend(rows);
            (drops, candidates) = (drops + shard_drops.len(), candidates + shard_candidates);
        }
        let order = |r: &Row| {
            let m = r.metadata.as_ref().unwrap();
            m["variant"].as_u64().unwrap() * 5 + m["seedRow"].as_u64().unwrap()
        };
        merged.sort_by_key(order);
        assert_eq!(merged, whole, "the shards' rows in candidate order are the single run's");
        assert_eq!((drops, candidates), (whole_drops.len(), whole_candidates));
    }

    #[test]
    fn without_num_samples_every_seed_row_is_tried_once() {
        let mut seeds = seeds(5);
        seeds[2].messages = vec![Message::new("assistant", "no user turn")];
        let volume = Volume { num_samples: None, max_candidates: 0, shard: None };
        let (rows, drops, candidates, _) = stream(&seeds, volume, 8, 9, |c, _| c.row == 4);
        let seed_rows: Vec<_> = rows.iter().map(|r| r.metadata.as_ref().unwrap()["seedRow"].clone()).collect();
        assert_eq!(seed_rows, [0, 1, 3], "rows in seed order");
        assert_eq!(drops, [DropReason::SeedWithoutUserMessage, DropReason::EmptyRequest]);
        assert_eq!(candidates, 5);
        assert!(rows.iter().all(|r| r.metadata.as_ref().unwrap().get("variant").is_none()));
    }

    #[test]
    fn rows_and_budget_are_dealt_round_robin() {
        assert_eq!((0..3).map(|k| share(40, 3, k)).collect::<Vec<_>>(), vec![14, 13, 13]);
        assert_eq!((0..8).map(|k| share(5, 8, k)).sum::<usize>(), 5);
    }
}

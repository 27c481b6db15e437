//! Curation: the gates a synthesized candidate must pass before it becomes a row.
//!
//! A candidate meets the gates in three places, each a method of [`Curator`]:
//!
//! ```text
//! Curator::new(&settings, &seed_rows, &excluded_rows)      once per run
//! curator.check_request(seed_row, &request)?               as soon as a request (or follow-up) exists
//! curator.check_answer(seed_row, &request, &answer)?       on each answer
//! curator.check_judged(verdict)?                           on the judge's verdict on a finished row (judge on)
//! curator.accept(seed_row, &turns)?                        on the finished row, in candidate order
//! across_seed_rows(&rows, gates)                           over the whole run's rows, once they are made
//! curator.record(model)                                    → CurationRecord, the manifest's `curation`
//! ```
//!
//! The settings come from [`settle`] (the recipe's `curation`, `synth run`'s flags, and the
//! evaluated dataset of a failure-mode seed excluded); the excluded rows from [`load_excluded`].
//!
//! `check_request` and `check_answer` are pure (`&self`, any order, any thread): they look only
//! at the candidate and its seed. `accept` compares the finished row with the seed rows and the
//! rows accepted before it, and registers it when it passes, so it must be called in a fixed
//! order (candidate order) for the output to be the same at any batch size. A failing check
//! returns the [`Gate`] that failed (its [`Gate::key`] is what manifests and journals show); each
//! call is counted once in [`Curator::record`], so call each check once per candidate.
//!
//! | gate | where | drops |
//! | --- | --- | --- |
//! | `tooShort` | request, answer | an empty request or one of fewer than 3 words (fewer than its seed's if that is shorter); an answer without a word, a bare filler (`OK`, `None`) or a preamble that stops (`Here is the code:`) |
//! | `instructionEcho` | request | talk about the task instead of a request: an opening such as "Here is a different approach to the request:", "The first example …", "A user sent …"; an `<example>` tag; two or more phrases about the task ("new request", "a different user", …); or half its word 3-grams from synth's own stage-1 prompts |
//! | `assistantVoice` | request | an assistant's reply instead of a user's request: an opening such as "Sure!", "I'm ready to help.", "What a great question!", "I am a helpful AI assistant", or an offer of help ("How can I assist you today?") |
//! | `notARequest` | request | a statement that asks for nothing (no question mark, no sentence opening with an imperative or question word, no "please"/"can you"/"I need") where the seed request asks for something: "There are 24 hours in a day." |
//! | `answerInRequest` | request | an answer label ("The answer is:"), an answer after the ask ("…? Sure, here is …", "The answer could be:"), or code the seed request does not have after an ask that is not about that code |
//! | `refusal` | request, answer | a refusal or apology opening ("I'm sorry, but I can't", "I apologize"), or an AI disclaimer, unless the seed's own text is one; sympathy ("I'm sorry to hear") passes |
//! | `repetition` | request, answer | 30% or more of the word 3-grams (or 40% of the 2-grams) of a text of 16+ words are repeats, a line of 3+ words given 4 times, or an answer that repeats its request (Jaccard ≥ 0.8) |
//! | `otherLanguage` | request | another script than the seed request (Latin, Cyrillic, Han, …), or another language when whatlang is sure of both |
//! | `seedCopy` | request | word-3-gram Jaccard with its own seed request ≥ the near-duplicate threshold, or the same words |
//! | `excluded` | request | the same words as, or Jaccard ≥ the threshold with, a user message of an excluded dataset (decontamination: `--exclude`) |
//! | `judge` | row | off unless set (recipe `curation.judge`, `--filter judge=on`): a local judge model, given the rubric with the row's conversation (`{prompt}`) and last answer (`{output}`), replies No (`synth eval`'s verdict parsing) |
//! | `judgeUnparseable` | row | runs with `judge`: the judge's reply has no verdict that can be read; never guessed, so the row is dropped |
//! | `exactDuplicate` | row | user turns with the same words as a seed row's or an earlier row's |
//! | `nearDuplicate` | row | user turns with Jaccard ≥ the threshold with a seed row's or an earlier row's (MinHash LSH finds candidates, the exact index decides; see [`dedup`]) |
//!
//! The duplicate gates compare a row with the seed rows and its own seed row's earlier rows as
//! it is made (a dropped row is replaced by the seed row's next variant), and with other seed
//! rows' rows once the run's rows are all made ([`across_seed_rows`], no replacement): a shard
//! has only its seed rows' rows, and its merge makes the second check, so a sharded run drops
//! exactly the rows a single process drops.
//!
//! Rows are compared by their user turns only: a request defines an example, and two rows with
//! the same request are duplicates for training whatever their answers say.

pub mod dedup;
pub mod filters;
pub mod settings;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};

use self::dedup::{jaccard, normalized, shingles, NearIndex, NUM_PERM, SHINGLE_WORDS};
pub use self::settings::{CurationFlags, CurationSettings, Gate, JudgeSettings};
use crate::store::artifacts::{
    CheckedCounts, CurationRecord, FailureModesManifest, FilterThresholds, JudgeRecord, MinHashRecord,
};
use crate::store::{Manifest, Row, Store, KIND_FAILURE_MODES};

/// An answer this similar to its request (word-3-gram Jaccard) repeats it.
pub const ANSWER_REPEATS_REQUEST: f64 = 0.8;

/// What the gates need of one seed row.
struct SeedText {
    request: String,
    request_shingles: Vec<u64>,
    /// The seed's own first answer refuses or apologizes: then a new one may too.
    answer_refuses: bool,
    request_refuses: bool,
}

impl SeedText {
    fn of(row: &Row) -> Self {
        let first = |role: &str| row.messages.iter().find(|m| m.role == role && !m.content.trim().is_empty());
        let request = first("user").map(|m| m.content.clone()).unwrap_or_default();
        let answer = first("assistant").map(|m| m.content.as_str()).unwrap_or_default();
        Self {
            request_shingles: shingles(&request),
            answer_refuses: filters::refusal(answer),
            request_refuses: filters::refusal(&request),
            request,
        }
    }
}

/// How many checks ran and failed, by gate. Atomic so that the pure checks can count.
#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    answers: AtomicUsize,
    rows: AtomicUsize,
    judged: AtomicUsize,
    dropped: [AtomicUsize; Gate::ALL.len()],
}

impl Counts {
    fn tally(&self, checked: &AtomicUsize, outcome: Result<(), Gate>) -> Result<(), Gate> {
        checked.fetch_add(1, Ordering::Relaxed);
        if let Err(gate) = outcome {
            let at = Gate::ALL.iter().position(|g| *g == gate).unwrap_or_default();
            self.dropped[at].fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

/// The gates of one run, with the rows accepted so far.
pub struct Curator {
    settings: CurationSettings,
    seeds: Vec<SeedText>,
    /// Word 3-grams of synth's own stage-1 instructions (`instructionEcho`).
    instructions: HashSet<String>,
    excluded_exact: HashSet<String>,
    excluded: NearIndex,
    /// Seed rows' and accepted rows' user turns; an accepted row is compared with the seed rows
    /// and the rows of its own seed row only (see [`across_seed_rows`] for the rest).
    kept_exact: HashSet<(Option<usize>, String)>,
    kept: NearIndex,
    /// The seed row of each entry of `kept` (`None`: a seed row itself).
    kept_owner: Vec<Option<usize>>,
    counts: Counts,
}

impl Curator {
    /// `seeds` are the run's seed rows (indexed by `seed_row`); `excluded` the rows of the
    /// excluded datasets (see [`load_excluded`]).
    pub fn new(settings: &CurationSettings, seeds: &[Row], excluded: &[Row]) -> Self {
        let threshold = settings.near_duplicate_threshold;
        let mut curator = Curator {
            settings: settings.clone(),
            seeds: seeds.iter().map(SeedText::of).collect(),
            instructions: instruction_trigrams(),
            excluded_exact: HashSet::new(),
            excluded: NearIndex::new(threshold),
            kept_exact: HashSet::new(),
            kept: NearIndex::new(threshold),
            kept_owner: Vec::new(),
            counts: Counts::default(),
        };
        for message in excluded.iter().flat_map(|row| &row.messages).filter(|m| m.role == "user") {
            curator.excluded_exact.insert(normalized(&message.content));
            curator.excluded.insert(shingles(&message.content));
        }
        for seed in seeds {
            let text = user_turns(seed.messages.iter().filter(|m| m.role == "user").map(|m| &m.content));
            curator.kept_exact.insert((None, normalized(&text)));
            curator.kept.insert(shingles(&text));
            curator.kept_owner.push(None);
        }
        curator
    }

    fn on(&self, gate: Gate) -> bool {
        self.settings.is_on(gate)
    }

    /// The first gate, in [`Gate::ALL`] order, that is on and whose test holds.
    fn first_failing(&self, tests: &[(Gate, &dyn Fn() -> bool)]) -> Result<(), Gate> {
        match tests.iter().find(|(gate, test)| self.on(*gate) && test()) {
            Some((gate, _)) => Err(*gate),
            None => Ok(()),
        }
    }

    /// Gates on a new request (or follow-up user turn) of a candidate made from `seed_row`.
    pub fn check_request(&self, seed_row: usize, request: &str) -> Result<(), Gate> {
        let seed = self.seed(seed_row);
        let own = shingles(request);
        let key = normalized(request);
        let outcome = self.first_failing(&[
            (Gate::TooShort, &|| filters::too_short_request(request, &seed.request)),
            (Gate::InstructionEcho, &|| filters::instruction_echo(request, &self.instructions)),
            (Gate::AssistantVoice, &|| filters::assistant_voice(request)),
            (Gate::NotARequest, &|| filters::not_a_request(request, &seed.request)),
            (Gate::AnswerInRequest, &|| filters::answer_in_request(request, &seed.request)),
            (Gate::Refusal, &|| !seed.request_refuses && filters::refusal(request)),
            (Gate::Repetition, &|| filters::repetitive(request)),
            (Gate::OtherLanguage, &|| filters::other_language(request, &seed.request)),
            (Gate::SeedCopy, &|| {
                key == normalized(&seed.request)
                    || jaccard(&own, &seed.request_shingles) >= self.settings.near_duplicate_threshold
            }),
            (Gate::Excluded, &|| self.excluded_exact.contains(&key) || self.excluded.find(&own).is_some()),
        ]);
        self.counts.tally(&self.counts.requests, outcome)
    }

    /// Gates on one answer to `request` in a candidate made from `seed_row`.
    pub fn check_answer(&self, seed_row: usize, request: &str, answer: &str) -> Result<(), Gate> {
        let seed = self.seed(seed_row);
        let outcome = self.first_failing(&[
            (Gate::TooShort, &|| filters::too_short_answer(answer)),
            (Gate::Refusal, &|| !seed.answer_refuses && filters::refusal(answer)),
            (Gate::Repetition, &|| {
                filters::repetitive(answer) || jaccard(&shingles(answer), &shingles(request)) >= ANSWER_REPEATS_REQUEST
            }),
        ]);
        self.counts.tally(&self.counts.answers, outcome)
    }

    /// Exact and near-duplicate check of a finished row (its `(user, assistant)` turns) against
    /// the seed rows and the rows of its own seed row accepted so far; a row that passes is
    /// registered. Those are the rows every shard of a run has (a shard holds all the variants
    /// of its seed rows), so this gives the same answer sharded or not; duplicates across seed
    /// rows are dropped when the whole run's rows are together, by [`across_seed_rows`].
    pub fn accept(&mut self, seed_row: usize, turns: &[(String, String)]) -> Result<(), Gate> {
        let text = user_turns(turns.iter().map(|(user, _)| user));
        let key = normalized(&text);
        let probe = self.kept.probe(shingles(&text));
        let mine = |id: usize| self.kept_owner[id].is_none_or(|owner| owner == seed_row);
        let outcome = self.first_failing(&[
            (Gate::ExactDuplicate, &|| {
                self.kept_exact.contains(&(None, key.clone()))
                    || self.kept_exact.contains(&(Some(seed_row), key.clone()))
            }),
            (Gate::NearDuplicate, &|| self.kept.find_where(&probe, mine).is_some()),
        ]);
        if outcome.is_ok() {
            self.kept_exact.insert((Some(seed_row), key));
            self.kept.insert_probe(probe);
            self.kept_owner.push(Some(seed_row));
        }
        self.counts.tally(&self.counts.rows, outcome)
    }

    /// The judge gate's settings, when it runs.
    pub fn judge(&self) -> Option<&JudgeSettings> {
        self.settings.judge()
    }

    /// The judge's verdict on a finished row: `Some(pass)`, or `None` when its reply had no
    /// verdict that could be read, which drops the row too (never guessed).
    pub fn check_judged(&self, verdict: Option<bool>) -> Result<(), Gate> {
        let outcome = match verdict {
            Some(true) => Ok(()),
            Some(false) => Err(Gate::Judge),
            None => Err(Gate::JudgeUnparseable),
        };
        self.counts.tally(&self.counts.judged, outcome)
    }

    /// The duplicate gates as [`across_seed_rows`] takes them.
    pub fn row_gates(&self) -> RowGates {
        RowGates {
            exact: self.on(Gate::ExactDuplicate),
            near: self.on(Gate::NearDuplicate),
            threshold: self.settings.near_duplicate_threshold,
        }
    }

    /// Counts a row [`across_seed_rows`] dropped in the manifest's `curation.droppedBy`.
    pub fn count_dropped(&self, gate: Gate) {
        let at = Gate::ALL.iter().position(|g| *g == gate).unwrap_or_default();
        self.counts.dropped[at].fetch_add(1, Ordering::Relaxed);
    }

    fn seed(&self, row: usize) -> &SeedText {
        static NONE: std::sync::LazyLock<SeedText> =
            std::sync::LazyLock::new(|| SeedText::of(&Row { messages: Vec::new(), metadata: None }));
        self.seeds.get(row).unwrap_or(&NONE)
    }

    /// What the manifest records: settings, thresholds, checks and drops by gate;
    /// `synthesis_model` names the judge when it is the recipe's own model.
    pub fn record(&self, synthesis_model: &str) -> CurationRecord {
        let (bands, rows_per_band) = self.kept.bands();
        let mut dropped_by = BTreeMap::new();
        for (gate, count) in Gate::ALL.iter().zip(&self.counts.dropped) {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                dropped_by.insert(gate.key().to_string(), count);
            }
        }
        CurationRecord {
            gates: Gate::ALL.iter().map(|g| (g.key().to_string(), self.on(*g))).collect(),
            near_duplicate_threshold: self.settings.near_duplicate_threshold,
            min_hash: MinHashRecord {
                shingle: format!("word {SHINGLE_WORDS}-grams"),
                permutations: NUM_PERM,
                bands,
                rows_per_band,
            },
            thresholds: FilterThresholds {
                min_request_words: filters::MIN_REQUEST_WORDS,
                repetition_min_words: filters::REPETITION_MIN_WORDS,
                repetition_ratio: filters::REPETITION_RATIO,
                repetition_bigram_ratio: filters::REPETITION_BIGRAM_RATIO,
                echo_overlap: filters::ECHO_OVERLAP,
            },
            exclude: self.settings.exclude.clone(),
            excluded_messages: self.excluded.len(),
            checked: CheckedCounts {
                requests: self.counts.requests.load(Ordering::Relaxed),
                answers: self.counts.answers.load(Ordering::Relaxed),
                rows: self.counts.rows.load(Ordering::Relaxed),
                judged: self.counts.judged.load(Ordering::Relaxed),
            },
            dropped_by,
            judge: self.settings.judge().map(|j| JudgeRecord {
                model: j.model.clone().unwrap_or_else(|| synthesis_model.to_string()),
                prompt_template: j.template.clone(),
                max_new_tokens: j.max_new_tokens,
                unparseable: "dropped (a verdict is never guessed)".into(),
            }),
        }
    }
}

/// A row's user turns as one text (what rows are compared by).
/// The duplicate gates of a run: which are on, and the near-duplicate threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowGates {
    pub exact: bool,
    pub near: bool,
    pub threshold: f64,
}

impl RowGates {
    /// The gates a run's manifest recorded (for `synth datasets merge`).
    pub fn of_record(record: &CurationRecord) -> RowGates {
        let on = |gate: Gate| record.gates.iter().any(|(key, on)| *on && key == gate.key());
        RowGates {
            exact: on(Gate::ExactDuplicate),
            near: on(Gate::NearDuplicate),
            threshold: record.near_duplicate_threshold,
        }
    }
}

/// The second half of row deduplication: which of a whole run's rows, in candidate order,
/// repeat (by user turns: exactly, or with Jaccard ≥ the threshold) an earlier row of another
/// seed row. Such a row is dropped without a replacement, after the run, so that a single
/// process and the merge of its shards (which alone sees every seed row's rows) drop the same
/// rows. [`Curator::accept`] already dropped (and replaced) duplicates of the seed rows and
/// within a seed row.
pub fn across_seed_rows(rows: &[Row], gates: RowGates) -> Vec<Option<Gate>> {
    let mut exact: HashSet<String> = HashSet::new();
    let mut near = NearIndex::new(gates.threshold);
    rows.iter()
        .map(|row| {
            let text = user_turns(row.messages.iter().filter(|m| m.role == "user").map(|m| &m.content));
            let key = normalized(&text);
            let probe = near.probe(shingles(&text));
            let gate = if gates.exact && exact.contains(&key) {
                Some(Gate::ExactDuplicate)
            } else if gates.near && near.find_probe(&probe).is_some() {
                Some(Gate::NearDuplicate)
            } else {
                None
            };
            if gate.is_none() {
                exact.insert(key);
                near.insert_probe(probe);
            }
            gate
        })
        .collect()
}

fn user_turns<'a>(turns: impl Iterator<Item = &'a String>) -> String {
    turns.map(String::as_str).collect::<Vec<_>>().join("\n")
}

/// Word 3-grams of every stage-1 instruction synth writes, with the seed's text left out.
fn instruction_trigrams() -> HashSet<String> {
    use crate::synthesis::prompts::{follow_up_prompt, request_prompt, variant_prompt, DIRECTIONS};
    let mut texts = vec![request_prompt(""), follow_up_prompt(None, &[], "")];
    texts.extend(DIRECTIONS.iter().map(|d| variant_prompt("", &[], d)));
    texts.iter().flat_map(|t| filters::trigrams(t)).collect()
}

/// Every row of the datasets `ids` (all splits), for [`Curator::new`]'s `excluded`.
pub fn load_excluded(store: &Store, ids: &[String]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for id in ids {
        rows.extend(store.load_rows(id).with_context(|| format!("loading excluded dataset `{id}`"))?);
    }
    Ok(rows)
}

/// A run's curation settings: the recipe's, `synth run`'s flags over them, and for a seed made by
/// `synth eval` (failure modes) the evaluated dataset excluded, so that examples aimed at an
/// eval's failures never copy its items.
pub fn settle(recipe: &CurationSettings, flags: &CurationFlags, seed_manifest: &Manifest) -> CurationSettings {
    let mut settings = recipe.clone().with_flags(flags);
    if let Some(evaluated) = evaluated_dataset(seed_manifest) {
        settings.exclude_too(&[evaluated]);
    }
    settings
}

/// The dataset a failure-mode seed's evaluation ran on: synthesis from its failures excludes it.
pub fn evaluated_dataset(seed_manifest: &Manifest) -> Option<String> {
    if seed_manifest.kind != KIND_FAILURE_MODES {
        return None;
    }
    seed_manifest.details::<FailureModesManifest>().ok().map(|m| m.eval_dataset)
}

#[cfg(test)]
mod tests;

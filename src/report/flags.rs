//! Quality flags a person should look at, per row: synth's heuristics, plus any flags the row's
//! metadata carries (`metadata.flags`, a list of names, e.g. the curation gates it failed).

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use crate::synthesis::diversity::trigram_jaccard;

/// The answer repeats the request (word-trigram Jaccard at least this, or the same words).
pub const ECHO: &str = "echo";
/// The answer opens with an apology or a refusal.
pub const REFUSAL: &str = "refusal";
/// Under half of the answer's word trigrams are distinct, or one line comes back 3+ times.
pub const REPETITION: &str = "repetition";
/// The answer has fewer than [`SHORT_WORDS`] words.
pub const VERY_SHORT: &str = "very-short";
/// The answer is over 3x the dataset's median answer length (and over [`LONG_FLOOR`]).
pub const VERY_LONG: &str = "very-long";
/// Most letters of the answer are of another script than the request's.
pub const OTHER_SCRIPT: &str = "other-script";
/// The request shares no content word (4+ letters) with its seed row's request.
pub const OFF_TOPIC: &str = "off-topic";

pub const HEURISTICS: [&str; 7] = [ECHO, REFUSAL, REPETITION, VERY_SHORT, VERY_LONG, OTHER_SCRIPT, OFF_TOPIC];

const ECHO_JACCARD: f64 = 0.6;
const SHORT_WORDS: usize = 3;
const LONG_FLOOR: usize = 256;

static REFUSAL_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\W*(i'?m sorry|i am sorry|sorry, (but )?i|i can(not|'t|’t) (help|assist|provide|answer|do)|i'?m (not able|unable) to|i am (not able|unable) to|as an ai\b)")
        .expect("a valid pattern")
});

/// What the heuristics look at in one row; lengths are in the report's unit.
pub struct RowText<'a> {
    pub request: &'a str,
    pub answer: &'a str,
    pub answer_len: usize,
    pub seed_request: Option<&'a str>,
}

/// The heuristic flags of one row, in [`HEURISTICS`] order.
pub fn heuristic_flags(row: &RowText, median_answer: usize) -> Vec<&'static str> {
    let mut flags = Vec::new();
    let answer_words = words(row.answer);
    if is_echo(row.request, &answer_words) {
        flags.push(ECHO);
    }
    if REFUSAL_START.is_match(row.answer) {
        flags.push(REFUSAL);
    }
    if is_repetitive(&answer_words, row.answer) {
        flags.push(REPETITION);
    }
    if answer_words.len() < SHORT_WORDS {
        flags.push(VERY_SHORT);
    }
    if row.answer_len > LONG_FLOOR && row.answer_len > 3 * median_answer {
        flags.push(VERY_LONG);
    }
    if matches!((dominant_script(row.request), dominant_script(row.answer)), (Some(a), Some(b)) if a != b) {
        flags.push(OTHER_SCRIPT);
    }
    if row.seed_request.is_some_and(|seed| shares_no_content_word(row.request, seed)) {
        flags.push(OFF_TOPIC);
    }
    flags
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Trigram sets whose sizes differ by more than the Jaccard bound cannot reach it, so most
/// answers (far longer than their request) are ruled out by word count alone.
fn is_echo(request: &str, answer: &[String]) -> bool {
    let r = words(request);
    let similar_size = (answer.len() as f64) * ECHO_JACCARD <= r.len() as f64;
    !answer.is_empty()
        && (r == answer
            || (r.len() >= 3 && similar_size && trigram_jaccard(request, &answer.join(" ")) >= ECHO_JACCARD))
}

fn is_repetitive(words: &[String], text: &str) -> bool {
    if words.len() >= 24 {
        let trigrams: HashSet<&[String]> = words.windows(3).collect();
        if (trigrams.len() as f64) < 0.5 * (words.len() - 2) as f64 {
            return true;
        }
    }
    let mut seen = std::collections::HashMap::new();
    text.lines().map(str::trim).filter(|l| l.len() >= 20).any(|line| {
        let n = seen.entry(line).or_insert(0);
        *n += 1;
        *n >= 3
    })
}

fn content_words(text: &str) -> HashSet<String> {
    words(text).into_iter().filter(|w| w.chars().count() >= 4).collect()
}

fn shares_no_content_word(request: &str, seed: &str) -> bool {
    let (a, b) = (content_words(request), content_words(seed));
    a.len() >= 2 && b.len() >= 2 && a.is_disjoint(&b)
}

fn script(c: char) -> Option<&'static str> {
    Some(match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F => "Latin",
        0x370..=0x3FF => "Greek",
        0x400..=0x4FF => "Cyrillic",
        0x590..=0x5FF => "Hebrew",
        0x600..=0x6FF => "Arabic",
        0x900..=0x97F => "Devanagari",
        0xE00..=0xE7F => "Thai",
        0x3040..=0x30FF => "Kana",
        0x4E00..=0x9FFF => "Han",
        0xAC00..=0xD7AF => "Hangul",
        _ => return None,
    })
}

/// The script most letters are in, when there are at least 10 letters.
fn dominant_script(text: &str) -> Option<&'static str> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for s in text.chars().filter_map(script) {
        match counts.iter_mut().find(|(name, _)| *name == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let best = counts.into_iter().max_by_key(|(_, n)| *n)?;
    (total >= 10).then_some(best.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(request: &str, answer: &str, seed: Option<&str>) -> Vec<&'static str> {
        let row = RowText { request, answer, answer_len: answer.split_whitespace().count(), seed_request: seed };
        heuristic_flags(&row, 50)
    }

    #[test]
    fn each_heuristic_fires_on_its_case_and_not_on_a_plain_row() {
        let request = "How do I bake a loaf of sourdough bread at home?";
        let good = "Mix flour, water and starter, let it rise overnight, shape it and bake it at 230 C for 40 minutes.";
        assert!(flags(request, good, Some("How do I make bread rise?")).is_empty());
        assert_eq!(flags(request, request, None), [ECHO]);
        assert!(flags(request, "I'm sorry, but I cannot help with that request today.", None).contains(&REFUSAL));
        let loop_ = "the cat sat on the mat and ".repeat(10);
        assert!(flags(request, &loop_, None).contains(&REPETITION));
        assert_eq!(flags(request, "Yes.", None), [VERY_SHORT]);
        assert!(flags(request, &"word ".repeat(400), None).contains(&VERY_LONG));
        assert!(flags(request, "Смешайте муку, воду и закваску, затем выпекайте хлеб.", None).contains(&OTHER_SCRIPT));
        assert!(flags(request, good, Some("Which planets have rings around them?")).contains(&OFF_TOPIC));
    }
}

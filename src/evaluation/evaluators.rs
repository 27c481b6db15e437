//! The deterministic evaluators: exact match, contains, regex, numeric match. Each turns a model
//! output and a reference into a verdict, a rationale a person can read, and for a failure the
//! reason in a word, which the failure modes group by. The LLM judge is in [`super::judge`].

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use super::recipe::{EvaluatorKind, TextMatch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// The judge's reply had no verdict that could be read; not guessed.
    Unparseable,
    /// The evaluator does not apply to the row (a numeric match on a reference without a number).
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unparseable => "unparseable",
            Verdict::Skipped => "skipped",
        }
    }
}

/// What one evaluator says about one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub rationale: String,
    /// For failures of deterministic evaluators: what went wrong, in kebab case (`wrong-number`).
    pub reason: Option<&'static str>,
}

impl Outcome {
    fn pass(rationale: String) -> Self {
        Outcome { verdict: Verdict::Pass, rationale, reason: None }
    }
    fn fail(reason: &'static str, rationale: String) -> Self {
        Outcome { verdict: Verdict::Fail, rationale, reason: Some(reason) }
    }
    fn skipped(rationale: String) -> Self {
        Outcome { verdict: Verdict::Skipped, rationale, reason: None }
    }
}

/// Runs a deterministic evaluator; `None` for the LLM judge, which needs a model.
pub fn evaluate(kind: &EvaluatorKind, output: &str, reference: &str) -> Option<Outcome> {
    Some(match kind {
        EvaluatorKind::ExactMatch(m) => exact_match(m, output, reference),
        EvaluatorKind::Contains(m) => contains(m, output, reference),
        EvaluatorKind::Regex { regex, must_match } => regex_match(regex, *must_match, output),
        EvaluatorKind::NumericMatch { absolute_tolerance, relative_tolerance } => {
            numeric_match(*absolute_tolerance, *relative_tolerance, output, reference)
        }
        EvaluatorKind::LlmJudge(_) => return None,
    })
}

pub fn exact_match(m: &TextMatch, output: &str, reference: &str) -> Outcome {
    let (o, r) = (normalize(m, output), normalize(m, reference));
    if o == r {
        Outcome::pass(format!("the output equals the reference `{}`", short(&r)))
    } else {
        Outcome::fail("mismatch", format!("expected `{}`, got `{}`", short(&r), short(&o)))
    }
}

/// Passes when the normalized reference appears in the normalized output as whole words: `4`
/// is not found in `14`.
pub fn contains(m: &TextMatch, output: &str, reference: &str) -> Outcome {
    let (o, r) = (normalize(m, output), normalize(m, reference));
    if r.is_empty() {
        return Outcome::skipped("the reference is empty".into());
    }
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let found = o
        .match_indices(&r)
        .any(|(at, _)| boundary(o[..at].chars().next_back()) && boundary(o[at + r.len()..].chars().next()));
    if found {
        Outcome::pass(format!("the output contains `{}`", short(&r)))
    } else {
        Outcome::fail("reference-missing", format!("`{}` is not in the output", short(&r)))
    }
}

pub fn regex_match(regex: &Regex, must_match: bool, output: &str) -> Outcome {
    match (regex.find(output), must_match) {
        (Some(m), true) => Outcome::pass(format!("`{}` matches at `{}`", regex.as_str(), short(m.as_str()))),
        (None, true) => Outcome::fail("no-match", format!("the output does not match `{}`", regex.as_str())),
        (Some(m), false) => Outcome::fail(
            "forbidden-match",
            format!("the output matches `{}` at `{}`", regex.as_str(), short(m.as_str())),
        ),
        (None, false) => Outcome::pass(format!("the output does not match `{}`", regex.as_str())),
    }
}

/// Compares the last number of the output with the last number of the reference:
/// `|out - ref| <= max(absolute, relative * |ref|)`.
pub fn numeric_match(absolute: f64, relative: f64, output: &str, reference: &str) -> Outcome {
    let Some(want) = last_number(reference) else {
        return Outcome::skipped("the reference has no number".into());
    };
    let Some(got) = last_number(output) else {
        return Outcome::fail("no-number", format!("expected {}, the output has no number", want.text));
    };
    let tolerance = absolute.max(relative * want.value.abs());
    let diff = (got.value - want.value).abs();
    if diff <= tolerance {
        Outcome::pass(format!("{} is within {} of {}", got.text, show(tolerance), want.text))
    } else {
        Outcome::fail("wrong-number", format!("expected {}, got {} (off by {})", want.text, got.text, show(diff)))
    }
}

fn show(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

/// A number found in text: its value and how it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub value: f64,
    pub text: String,
}

/// The last number in `text`: `1,234.5`, `-3`, `.5`, `−2` (Unicode minus), `42.` (the dot is
/// punctuation). A `-` right after a letter or digit is a hyphen, not a sign (`3-5` is 3 and 5).
/// Thousands separators need groups of three (`1,2` is two numbers).
pub fn last_number(text: &str) -> Option<Found> {
    static NUMBER: OnceLock<Regex> = OnceLock::new();
    let re = NUMBER.get_or_init(|| {
        Regex::new(r"[-\u{2212}]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
            .expect("the number pattern is valid")
    });
    let mut last = None;
    for m in re.find_iter(text) {
        let mut s = m.as_str();
        let before = text[..m.start()].chars().next_back();
        // Part of a word or identifier (`x2`, `CO2`): not a number on its own.
        if before.is_some_and(|c| c.is_alphabetic()) && !s.starts_with(['-', '\u{2212}']) {
            continue;
        }
        let signed = s.starts_with(['-', '\u{2212}']);
        if signed && before.is_some_and(|c| c.is_alphanumeric()) {
            s = s.trim_start_matches(['-', '\u{2212}']);
        }
        let plain: String = s.replace('\u{2212}', "-").chars().filter(|c| *c != ',').collect();
        if let Ok(value) = plain.parse::<f64>() {
            last = Some(Found { value, text: s.to_string() });
        }
    }
    last
}

/// Normalizes text for exact and contains matching (see [`TextMatch`]).
pub fn normalize(m: &TextMatch, text: &str) -> String {
    let mut s: String = if m.case_sensitive { text.to_string() } else { text.to_lowercase() };
    if m.ignore_punctuation {
        let chars: Vec<char> = s.chars().collect();
        s = chars
            .iter()
            .enumerate()
            .filter(|&(i, c)| {
                if c.is_alphanumeric() || c.is_whitespace() || !(c.is_ascii_punctuation() || is_unicode_punctuation(*c))
                {
                    return true;
                }
                let prev = i.checked_sub(1).and_then(|j| chars.get(j));
                let next = chars.get(i + 1);
                let inner = prev.is_some_and(|p| p.is_alphanumeric()) && next.is_some_and(|n| n.is_alphanumeric());
                let sign = matches!(c, '-' | '\u{2212}')
                    && next.is_some_and(|n| n.is_ascii_digit())
                    && !prev.is_some_and(|p| p.is_alphanumeric());
                inner || sign
            })
            .map(|(_, c)| *c)
            .collect();
    }
    if m.normalize_whitespace {
        s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    s
}

fn is_unicode_punctuation(c: char) -> bool {
    matches!(c, '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205e}' | '\u{3000}'..='\u{303f}' | '\u{00a1}' | '\u{00ab}' | '\u{00bb}' | '\u{00bf}' | '\u{2212}')
}

/// A value for a rationale: one line, at most 80 characters.
pub fn short(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= 80 {
        one_line
    } else {
        format!("{}…", one_line.chars().take(79).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOSE: TextMatch = TextMatch { case_sensitive: false, normalize_whitespace: true, ignore_punctuation: true };
    const STRICT: TextMatch =
        TextMatch { case_sensitive: true, normalize_whitespace: false, ignore_punctuation: false };

    #[test]
    fn exact_match_normalizes_as_asked() {
        assert_eq!(exact_match(&LOOSE, "  Paris. ", "paris").verdict, Verdict::Pass);
        assert_eq!(exact_match(&LOOSE, "New   York!", "new york").verdict, Verdict::Pass);
        assert_eq!(exact_match(&LOOSE, "3.5", "35").verdict, Verdict::Fail, "a decimal point between digits is kept");
        assert_eq!(exact_match(&LOOSE, "-5", "5").verdict, Verdict::Fail, "a minus sign is kept");
        assert_eq!(exact_match(&LOOSE, "don't", "dont").verdict, Verdict::Fail);
        let fail = exact_match(&STRICT, "Paris.", "Paris");
        assert_eq!((fail.verdict, fail.reason), (Verdict::Fail, Some("mismatch")));
        assert!(fail.rationale.contains("`Paris.`"), "{}", fail.rationale);
        assert_eq!(exact_match(&STRICT, "Paris", "Paris").verdict, Verdict::Pass);
        assert_eq!(exact_match(&STRICT, "paris", "Paris").verdict, Verdict::Fail);
        assert_eq!(
            exact_match(&TextMatch { normalize_whitespace: true, ..STRICT }, " Paris\n", "Paris").verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn contains_needs_whole_words() {
        assert_eq!(contains(&LOOSE, "The capital is Paris.", "Paris").verdict, Verdict::Pass);
        assert_eq!(contains(&LOOSE, "The answer is 14.", "4").verdict, Verdict::Fail);
        assert_eq!(contains(&LOOSE, "It is 4, I think 14", "4").verdict, Verdict::Pass);
        assert_eq!(contains(&LOOSE, "Parisian food", "Paris").reason, Some("reference-missing"));
        assert_eq!(contains(&LOOSE, "anything", "  ").verdict, Verdict::Skipped);
        assert_eq!(contains(&STRICT, "paris", "Paris").verdict, Verdict::Fail);
    }

    #[test]
    fn regex_can_require_or_forbid() {
        let re = Regex::new(r"^\s*\d+\s*$").unwrap();
        assert_eq!(regex_match(&re, true, " 42 ").verdict, Verdict::Pass);
        assert_eq!(regex_match(&re, true, "42 apples").reason, Some("no-match"));
        let re = Regex::new(r"(?i)as an ai").unwrap();
        assert_eq!(regex_match(&re, false, "As an AI, I cannot").reason, Some("forbidden-match"));
        assert_eq!(regex_match(&re, false, "Sure: 4").verdict, Verdict::Pass);
    }

    #[test]
    fn last_number_handles_commas_signs_and_decimals() {
        let n = |t: &str| last_number(t).map(|f| f.value);
        assert_eq!(n("The answer is 42."), Some(42.0));
        assert_eq!(n("1,234,567 people"), Some(1_234_567.0));
        assert_eq!(n("costs 1,234.50 dollars"), Some(1234.5));
        assert_eq!(n("it is -7 degrees"), Some(-7.0));
        assert_eq!(n("it is \u{2212}7 degrees"), Some(-7.0));
        assert_eq!(n("between 3-5 days"), Some(5.0), "a hyphen between numbers is not a sign");
        assert_eq!(n("first 3, then 2.5"), Some(2.5));
        assert_eq!(n("about .5 of it"), Some(0.5));
        assert_eq!(n("1,2"), Some(2.0), "not a thousands separator");
        assert_eq!(n("no numbers here"), None);
        assert_eq!(n(""), None);
    }

    #[test]
    fn numeric_match_uses_tolerances() {
        assert_eq!(numeric_match(1e-6, 0.0, "So 6 x 7 = 42", "42").verdict, Verdict::Pass);
        let fail = numeric_match(1e-6, 0.0, "It is 41.", "42");
        assert_eq!((fail.verdict, fail.reason), (Verdict::Fail, Some("wrong-number")));
        assert!(fail.rationale.contains("expected 42, got 41"), "{}", fail.rationale);
        assert_eq!(numeric_match(0.5, 0.0, "41.6", "42").verdict, Verdict::Pass);
        assert_eq!(numeric_match(0.0, 0.01, "1,005", "1000").verdict, Verdict::Pass);
        assert_eq!(numeric_match(0.0, 0.01, "1,020", "1000").verdict, Verdict::Fail);
        assert_eq!(numeric_match(1e-6, 0.0, "I don't know", "42").reason, Some("no-number"));
        assert_eq!(numeric_match(1e-6, 0.0, "Paris", "Paris").verdict, Verdict::Skipped);
        assert_eq!(numeric_match(1e-6, 0.0, "0.30000000000000004", "0.3").verdict, Verdict::Pass);
    }

    #[test]
    fn the_judge_is_not_deterministic() {
        let judge = EvaluatorKind::LlmJudge(super::super::recipe::Judge {
            model: crate::recipe::ModelIdentifier {
                model_type: "llm".into(),
                model_name: "m".into(),
                model_id: None,
                model_version_id: None,
            },
            template: "{output}".into(),
            inference: Default::default(),
        });
        assert_eq!(evaluate(&judge, "x", "y"), None);
        assert_eq!(evaluate(&EvaluatorKind::ExactMatch(LOOSE), "x", "X").map(|o| o.verdict), Some(Verdict::Pass));
    }
}

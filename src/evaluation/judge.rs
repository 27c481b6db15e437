//! Reading a judge model's reply: a verdict and a rationale, from whatever shape a small model
//! gives them in. Tried in order, the first that yields a verdict wins:
//!
//! 1. a JSON object with a `verdict` (or `judgement`, `result`, `grade`, `decision`, `correct`,
//!    `pass`) key: `{"verdict": "fail", "rationale": "..."}`;
//! 2. a labelled line: `Verdict: PASS`, `**Final verdict** - incorrect`, `Judgement = yes`;
//! 3. a bold verdict on its own: `**Correct**`, `**FAIL.**`;
//! 4. a reply that starts with one: `Yes, ...`, `Incorrect. ...`, `PASS`;
//! 5. a first sentence that states one: `The student answer is incorrect.`, `... is not correct`,
//!    `This answer is not a correct and helpful reply`
//!    (every such statement in it must agree).
//!
//! A labelled verdict that names both outcomes (`Verdict: PASS or FAIL`, the template echoed
//! back) or no known word is *unparseable*, and so is a reply with no verdict at all: counted as
//! such, never guessed.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::evaluators::Verdict;

/// The longest rationale kept, in characters.
pub const MAX_RATIONALE_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeReply {
    /// `Pass`, `Fail` or `Unparseable`.
    pub verdict: Verdict,
    pub rationale: String,
}

const VERDICT_KEYS: [&str; 9] =
    ["verdict", "judgement", "judgment", "result", "grade", "decision", "correct", "is_correct", "pass"];
const RATIONALE_KEYS: [&str; 6] = ["rationale", "reason", "reasoning", "explanation", "justification", "comment"];

/// Parses a judge reply.
pub fn parse(reply: &str) -> JudgeReply {
    let text = reply.trim();
    let rationale = labelled_rationale(text);
    // Each rule says: not mine (`None`), mine but no readable verdict (`Some(None)`), or a verdict.
    let found = json_verdict(text)
        .or_else(|| labelled_verdict(text))
        .or_else(|| bold_verdict(text))
        .or_else(|| leading_verdict(text))
        .or_else(|| sentence_verdict(text));
    match found {
        Some(Some(Found { pass, rationale: from_json })) => {
            let rationale = from_json.or(rationale).unwrap_or_else(|| without_verdict_lines(text));
            JudgeReply { verdict: if pass { Verdict::Pass } else { Verdict::Fail }, rationale: clip(&rationale) }
        }
        Some(None) | None => JudgeReply {
            verdict: Verdict::Unparseable,
            rationale: clip(&rationale.unwrap_or_else(|| text.to_string())),
        },
    }
}

struct Found {
    pass: bool,
    rationale: Option<String>,
}

type Rule = Option<Option<Found>>;

fn decided(pass: Option<bool>) -> Rule {
    Some(pass.map(|pass| Found { pass, rationale: None }))
}

/// Pass, fail, or `None` for a word that is neither.
fn word_verdict(word: &str) -> Option<bool> {
    match word.to_lowercase().as_str() {
        "pass" | "passed" | "passes" | "correct" | "yes" | "right" | "true" | "accurate" | "acceptable" | "valid" => {
            Some(true)
        }
        "fail" | "failed" | "fails" | "incorrect" | "no" | "wrong" | "false" | "inaccurate" | "unacceptable"
        | "invalid" => Some(false),
        _ => None,
    }
}

const NEGATIONS: [&str; 4] = ["not", "isn't", "isnt", "never"];

/// The verdict a short fragment states: its first verdict word (flipped after `not`). `None`
/// when there is none, or when the fragment offers a choice (`PASS or FAIL`, `PASS/FAIL`).
fn fragment_verdict(fragment: &str) -> Option<bool> {
    let words: Vec<String> = fragment
        .split(|c: char| c.is_whitespace() || c == '/' || c == '|')
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let slashed = fragment.contains('/') || fragment.contains('|');
    for (i, word) in words.iter().enumerate() {
        let Some(verdict) = word_verdict(word) else { continue };
        let next = words.get(i + 1).map(|w| w.to_lowercase());
        let after_or = words.get(i + 2).and_then(|w| word_verdict(w));
        if next.as_deref() == Some("or") && after_or.is_some()
            || slashed && words.get(i + 1).and_then(|w| word_verdict(w)).is_some()
        {
            return None;
        }
        let negated = i > 0 && NEGATIONS.contains(&words[i - 1].to_lowercase().as_str());
        return Some(verdict != negated);
    }
    None
}

fn json_verdict(text: &str) -> Rule {
    for (at, _) in text.match_indices('{') {
        let mut stream = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
        let Some(Ok(Value::Object(map))) = stream.next() else { continue };
        let get =
            |keys: &[&str]| map.iter().find(|(k, _)| keys.contains(&k.to_lowercase().as_str())).map(|(_, v)| v.clone());
        let pass = match get(&VERDICT_KEYS) {
            None => continue,
            Some(Value::Bool(b)) => Some(b),
            Some(Value::String(s)) => fragment_verdict(&s),
            Some(_) => None,
        };
        let rationale = match get(&RATIONALE_KEYS) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        return Some(pass.map(|pass| Found { pass, rationale }));
    }
    None
}

fn labelled_line() -> &'static Regex {
    static LABEL: OnceLock<Regex> = OnceLock::new();
    LABEL.get_or_init(|| {
        Regex::new(r"(?im)^[\s#>*_`-]*(?:final\s+|overall\s+)?(?:verdict|judge?ment|decision|grade|result|evaluation|assessment)[\s*_`]*(?:[:=\-–]|\bis\b)[\s*_`]*(.*)$")
            .expect("the label pattern is valid")
    })
}

/// The first labelled line decides: a second line is usually commentary.
fn labelled_verdict(text: &str) -> Rule {
    let caps = labelled_line().captures(text)?;
    let fragment = caps.get(1).map_or("", |m| m.as_str());
    // Only the start of the line states the verdict; the rest may argue both ways.
    let head = fragment.split(['.', ',', ';', '(']).next().unwrap_or("");
    decided(fragment_verdict(head))
}

fn bold_verdict(text: &str) -> Rule {
    static BOLD: OnceLock<Regex> = OnceLock::new();
    let re =
        BOLD.get_or_init(|| Regex::new(r"\*\*\s*([A-Za-z' ]{1,20}?)[\s.!:]*\*\*").expect("the bold pattern is valid"));
    let verdicts: Vec<bool> = re
        .captures_iter(text)
        .filter_map(|c| {
            let inner = c.get(1)?.as_str();
            (inner.split_whitespace().count() <= 2).then(|| fragment_verdict(inner)).flatten()
        })
        .collect();
    let first = *verdicts.first()?;
    // Bold words that disagree (`**Correct** ... **Incorrect**`) are no verdict.
    decided(verdicts.iter().all(|v| *v == first).then_some(first))
}

fn leading_verdict(text: &str) -> Rule {
    let first_word = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | ':' | ';'))
        .find(|w| !w.trim_matches(|c: char| !c.is_alphanumeric()).is_empty())?;
    let pass = word_verdict(first_word.trim_matches(|c: char| !c.is_alphanumeric()))?;
    decided(Some(pass))
}

fn sentence_verdict(text: &str) -> Rule {
    static STATED: OnceLock<Regex> = OnceLock::new();
    let re = STATED.get_or_init(|| {
        Regex::new(r"(?i)\b(?:is|was|are|seems)\s+(not\s+)?(?:an?\s+)?(?:entirely\s+|completely\s+|fully\s+|indeed\s+|totally\s+)?(correct|incorrect|right|wrong|accurate|inaccurate)\b")
            .expect("the statement pattern is valid")
    });
    let first = text.split_inclusive(['.', '!', '?', '\n']).next().unwrap_or(text);
    let stated: Vec<bool> =
        re.captures_iter(first).filter_map(|c| Some(word_verdict(c.get(2)?.as_str())? != c.get(1).is_some())).collect();
    let first_verdict = *stated.first()?;
    decided(stated.iter().all(|v| *v == first_verdict).then_some(first_verdict))
}

/// The text after `Rationale:` (or `Reason:`, `Explanation:`, ...), up to a verdict line.
fn labelled_rationale(text: &str) -> Option<String> {
    static LABEL: OnceLock<Regex> = OnceLock::new();
    let re = LABEL.get_or_init(|| {
        Regex::new(
            r"(?im)^[\s#>*_`-]*(?:rationale|reason|reasoning|explanation|justification|because)[\s*_`]*[:=\-–][\s*_`]*",
        )
        .expect("the rationale pattern is valid")
    });
    let start = re.find(text)?.end();
    let rest = &text[start..];
    let end = labelled_line().find(rest).map_or(rest.len(), |m| m.start());
    let rationale = rest[..end].trim();
    (!rationale.is_empty()).then(|| rationale.to_string())
}

fn without_verdict_lines(text: &str) -> String {
    text.lines().filter(|line| !labelled_line().is_match(line)).collect::<Vec<_>>().join("\n").trim().to_string()
}

fn clip(text: &str) -> String {
    let one = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= MAX_RATIONALE_CHARS {
        one
    } else {
        format!("{}…", one.chars().take(MAX_RATIONALE_CHARS - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> Verdict {
        parse(text).verdict
    }

    #[test]
    fn labelled_lines() {
        assert_eq!(verdict("Verdict: PASS\nRationale: 2+2 is 4."), Verdict::Pass);
        assert_eq!(verdict("verdict: fail"), Verdict::Fail);
        assert_eq!(verdict("**Verdict:** Incorrect. The capital is Paris."), Verdict::Fail);
        assert_eq!(verdict("## Final Verdict - correct"), Verdict::Pass);
        assert_eq!(verdict("Judgement = yes"), Verdict::Pass);
        assert_eq!(verdict("Verdict: not correct, it says 5"), Verdict::Fail);
        assert_eq!(verdict("Some thinking first.\nVerdict: PASS (the number matches, nothing wrong)"), Verdict::Pass);
        let reply = parse("Verdict: FAIL\nRationale: The answer says 12 but the reference is 15.");
        assert_eq!(reply.rationale, "The answer says 12 but the reference is 15.");
    }

    #[test]
    fn json_replies() {
        let reply = parse(r#"Here you go: {"verdict": "fail", "rationale": "wrong unit"} hope that helps"#);
        assert_eq!(reply, JudgeReply { verdict: Verdict::Fail, rationale: "wrong unit".into() });
        assert_eq!(verdict(r#"{"Correct": true, "reason": "matches"}"#), Verdict::Pass);
        assert_eq!(parse(r#"{"result": "PASS", "explanation": "ok"}"#).rationale, "ok");
        // A JSON object without a verdict key falls through to the other rules.
        assert_eq!(verdict("{\"answer\": 4}\nVerdict: FAIL"), Verdict::Fail);
        // Broken JSON is not a verdict by itself.
        assert_eq!(verdict(r#"{"verdict": "pass""#), Verdict::Unparseable);
    }

    #[test]
    fn bold_and_leading_words() {
        assert_eq!(verdict("**Correct**\n\nThe answer matches the reference."), Verdict::Pass);
        assert_eq!(verdict("The model answered: **Incorrect.**"), Verdict::Fail);
        assert_eq!(verdict("Yes, the answer is right."), Verdict::Pass);
        assert_eq!(verdict("No. It should be 9."), Verdict::Fail);
        assert_eq!(verdict("PASS"), Verdict::Pass);
        assert_eq!(verdict("incorrect"), Verdict::Fail);
        assert_eq!(verdict("The student answer is incorrect."), Verdict::Fail);
        assert_eq!(verdict("The student's answer is not entirely accurate. It says 5."), Verdict::Fail);
        assert_eq!(verdict("The answer to the question is 81, which is correct."), Verdict::Pass);
        // SmolLM2-135M judging synthesized rows with synth's rubric says it this way.
        assert_eq!(verdict("This answer is not a correct and helpful reply to the request."), Verdict::Fail);
        assert_eq!(verdict("This is a correct and helpful reply."), Verdict::Pass);
        assert_eq!(verdict("It is an incorrect answer."), Verdict::Fail);
    }

    #[test]
    fn malformed_replies_are_unparseable_not_guessed() {
        for reply in [
            "",
            "   \n ",
            "Verdict: PASS or FAIL\nRationale: one sentence saying why",
            "Verdict: PASS/FAIL",
            "Verdict: maybe",
            "The answer to grade is 4 and the reference answer is 4.",
            "I think the capital of France is Paris.",
            "**Correct** answer would be **Incorrect**",
            "Nothing to see; correct or not, who knows",
            "Verdict:",
            "The answer to grade is indeed correct, but the reference answer is incorrect.",
            "The answer to the question is 15 + 27 = 32.",
        ] {
            assert_eq!(verdict(reply), Verdict::Unparseable, "{reply:?}");
        }
        let reply = parse("The reply rambles about Paris.");
        assert_eq!(reply.rationale, "The reply rambles about Paris.", "an unparseable reply keeps its text");
    }

    #[test]
    fn rationale_falls_back_to_the_text_and_is_clipped() {
        let reply = parse("Verdict: FAIL\nThe answer forgot the units.");
        assert_eq!(reply.rationale, "The answer forgot the units.");
        let long = format!("Verdict: PASS\nRationale: {}", "word ".repeat(300));
        let reply = parse(&long);
        assert_eq!(reply.verdict, Verdict::Pass);
        assert_eq!(reply.rationale.chars().count(), MAX_RATIONALE_CHARS);
    }
}

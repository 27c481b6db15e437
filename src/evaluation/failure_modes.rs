//! Failure modes: the failed rows of an evaluation, grouped by evaluator and by what went wrong.
//!
//! Each failed row is grouped once, by the first evaluator (in recipe order) that failed it:
//! 1. what the output itself shows, whatever the evaluator: `prompt-too-long`, `empty-output`,
//!    `cut-off` (the generation hit `inferenceMaxNewTokens`);
//! 2. else, for deterministic evaluators, the reason the evaluator gave (`wrong-number`,
//!    `no-number`, `mismatch`, `reference-missing`, `no-match`, `forbidden-match`);
//! 3. else, for an LLM judge, the judge's rationales, clustered: token-set Jaccard similarity
//!    and average-linkage agglomeration (merge the most similar pair while it is at least
//!    [`MERGE_THRESHOLD`]; ties go to the lowest indices, so the result is deterministic).
//!
//! A mode's label is `<evaluator>/<what>`; for a judge cluster `<what>` is the cluster's two
//! most distinctive rationale words. Descriptions quote the rows' own rationales.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::FinishReason;

/// Average Jaccard similarity at which two clusters of judge rationales merge.
pub const MERGE_THRESHOLD: f64 = 0.2;
/// Examples quoted in a deterministic mode's description.
const EXAMPLES: usize = 2;

/// One failed row, as grouping needs it.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    pub evaluator: &'a str,
    pub is_judge: bool,
    /// The deterministic evaluator's reason (`wrong-number`); `None` for a judge.
    pub reason: Option<&'a str>,
    pub rationale: &'a str,
    pub output: &'a str,
    pub finish: FinishReason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailureMode {
    pub label: String,
    pub evaluator: String,
    pub description: String,
    /// Indices into the failures given to [`group`], ascending.
    pub members: Vec<usize>,
}

impl FailureMode {
    pub fn count(&self) -> usize {
        self.members.len()
    }
}

/// Groups failures into modes, largest first (ties by label). Every failure is in exactly one.
pub fn group(failures: &[Failure]) -> Vec<FailureMode> {
    let mut deterministic: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let mut judged: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, f) in failures.iter().enumerate() {
        let what = match output_problem(f) {
            Some(problem) => problem.to_string(),
            None if f.is_judge => {
                judged.entry(f.evaluator.to_string()).or_default().push(i);
                continue;
            }
            None => f.reason.unwrap_or("failed").to_string(),
        };
        deterministic.entry((f.evaluator.to_string(), what)).or_default().push(i);
    }

    let mut modes = Vec::new();
    for ((evaluator, what), members) in deterministic {
        let description = describe(&evaluator, &what, &members, failures);
        modes.push(FailureMode { label: format!("{evaluator}/{what}"), evaluator, description, members });
    }
    for (evaluator, members) in judged {
        let rationales: Vec<&str> = members.iter().map(|&i| failures[i].rationale).collect();
        for cluster in cluster(&rationales) {
            let cluster_members: Vec<usize> = cluster.iter().map(|&c| members[c]).collect();
            let texts: Vec<&str> = cluster.iter().map(|&c| rationales[c]).collect();
            let words = top_words(&texts, &rationales, 2);
            let what = if words.is_empty() { "no-rationale".to_string() } else { words.join("-") };
            let medoid = texts[medoid(&texts)].trim();
            let description = if medoid.is_empty() {
                format!("the judge `{evaluator}` judged the answer wrong without saying why")
            } else {
                format!("the judge `{evaluator}` judged the answer wrong, saying: \"{medoid}\"")
            };
            modes.push(FailureMode {
                label: format!("{evaluator}/{what}"),
                evaluator: evaluator.clone(),
                description,
                members: cluster_members,
            });
        }
    }

    // Two judge clusters can share their top words.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for mode in &mut modes {
        let base = mode.label.clone();
        let mut n = 2;
        while !seen.insert(mode.label.clone()) {
            mode.label = format!("{base}-{n}");
            n += 1;
        }
    }
    modes.sort_by(|a, b| b.count().cmp(&a.count()).then_with(|| a.label.cmp(&b.label)));
    modes
}

/// What the output shows went wrong before any evaluator looked at it.
fn output_problem(f: &Failure) -> Option<&'static str> {
    match f.finish {
        FinishReason::PromptTooLong => Some("prompt-too-long"),
        _ if f.output.trim().is_empty() => Some("empty-output"),
        FinishReason::Length => Some("cut-off"),
        FinishReason::Stop => None,
    }
}

fn describe(evaluator: &str, what: &str, members: &[usize], failures: &[Failure]) -> String {
    let summary = match what {
        "prompt-too-long" => return "the prompt did not fit the model's context, so there was no answer".to_string(),
        "empty-output" => return "the answer was empty".to_string(),
        "cut-off" => {
            "the answer rambled on until the token limit cut it off, instead of ending with a short answer".to_string()
        }
        other => format!("the `{evaluator}` check failed: {}", other.replace('-', " ")),
    };
    let mut examples: Vec<&str> = Vec::new();
    for &i in members {
        let r = failures[i].rationale.trim();
        if !r.is_empty() && !examples.contains(&r) {
            examples.push(r);
        }
        if examples.len() == EXAMPLES {
            break;
        }
    }
    if examples.is_empty() {
        summary
    } else {
        format!("{summary}; for example: {}", examples.join("; "))
    }
}

/// Lowercase words of three or more letters that carry meaning; numbers and stop words dropped.
pub fn tokens(text: &str) -> BTreeSet<String> {
    const STOP: &[&str] = &[
        "the",
        "and",
        "for",
        "are",
        "was",
        "were",
        "that",
        "this",
        "with",
        "its",
        "it's",
        "not",
        "but",
        "has",
        "have",
        "had",
        "answer",
        "answers",
        "reference",
        "model",
        "output",
        "response",
        "which",
        "because",
        "should",
        "would",
        "could",
        "than",
        "then",
        "there",
        "their",
        "they",
        "from",
        "into",
        "what",
        "when",
        "where",
        "who",
        "why",
        "how",
        "does",
        "did",
        "doesn't",
        "isn't",
        "can",
        "also",
        "any",
        "all",
        "one",
        "given",
        "provided",
        "question",
        "verdict",
        "rationale",
        "pass",
        "fail",
        "correct",
        "incorrect",
        "you",
        "your",
        "our",
        "his",
        "her",
        "been",
        "being",
        "very",
    ];
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| w.chars().count() >= 3 && w.chars().any(|c| c.is_alphabetic()) && !STOP.contains(&w.as_str()))
        .collect()
}

pub fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        // Two empty rationales say the same (nothing).
        return 1.0;
    }
    let shared = a.intersection(b).count() as f64;
    shared / a.union(b).count() as f64
}

/// Average-linkage agglomerative clustering of texts; clusters of indices, each ascending,
/// in order of their first member. Merges the most similar pair of clusters (the first in
/// index order on ties) while its similarity is at least [`MERGE_THRESHOLD`]. Each cluster
/// keeps its best partner among the later clusters, so a merge only rescans the rows it
/// touched: about O(n²) rather than O(n³) for n failures.
pub fn cluster(texts: &[&str]) -> Vec<Vec<usize>> {
    let sets: Vec<BTreeSet<String>> = texts.iter().map(|t| tokens(t)).collect();
    let n = sets.len();
    // Average similarity between live clusters, kept up to date (Lance-Williams).
    let mut link = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let s = jaccard(&sets[i], &sets[j]);
            link[i][j] = s;
            link[j][i] = s;
        }
    }
    let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut alive: Vec<bool> = vec![true; n];
    let row_best = |a: usize, link: &[Vec<f64>], alive: &[bool]| -> Option<(f64, usize)> {
        let mut best: Option<(f64, usize)> = None;
        for b in a + 1..n {
            if alive[b] && best.is_none_or(|(s, _)| link[a][b] > s) {
                best = Some((link[a][b], b));
            }
        }
        best
    };
    let mut best: Vec<Option<(f64, usize)>> = (0..n).map(|a| row_best(a, &link, &alive)).collect();
    loop {
        let mut pick: Option<(f64, usize, usize)> = None;
        for a in (0..n).filter(|&a| alive[a]) {
            if let Some((s, b)) = best[a] {
                if s >= MERGE_THRESHOLD && pick.is_none_or(|(p, _, _)| s > p) {
                    pick = Some((s, a, b));
                }
            }
        }
        let Some((_, a, b)) = pick else { break };
        let (na, nb) = (clusters[a].len() as f64, clusters[b].len() as f64);
        for c in 0..n {
            if alive[c] && c != a && c != b {
                let merged = (na * link[a][c] + nb * link[b][c]) / (na + nb);
                link[a][c] = merged;
                link[c][a] = merged;
            }
        }
        let moved = std::mem::take(&mut clusters[b]);
        clusters[a].extend(moved);
        clusters[a].sort_unstable();
        alive[b] = false;
        best[b] = None;
        best[a] = row_best(a, &link, &alive);
        for c in (0..n).filter(|&c| alive[c] && c != a) {
            match best[c] {
                Some((_, t)) if t == a || t == b => best[c] = row_best(c, &link, &alive),
                current if c < a => {
                    let s = link[c][a];
                    if current.is_none_or(|(v, t)| s > v || (s == v && a < t)) {
                        best[c] = Some((s, a));
                    }
                }
                _ => {}
            }
        }
    }
    clusters.into_iter().zip(alive).filter(|(c, alive)| *alive && !c.is_empty()).map(|(c, _)| c).collect()
}

/// The `k` words that best tell this cluster apart: frequent in it, rare in all rationales.
fn top_words(cluster: &[&str], all: &[&str], k: usize) -> Vec<String> {
    let mut everywhere: BTreeMap<String, usize> = BTreeMap::new();
    for t in all {
        for w in tokens(t) {
            *everywhere.entry(w).or_default() += 1;
        }
    }
    let mut here: BTreeMap<String, usize> = BTreeMap::new();
    for t in cluster {
        for w in tokens(t) {
            *here.entry(w).or_default() += 1;
        }
    }
    let n = all.len() as f64;
    let mut scored: Vec<(f64, String)> = here
        .into_iter()
        .map(|(w, count)| {
            let df = everywhere.get(&w).copied().unwrap_or(1) as f64;
            (count as f64 * (1.0 + n / df).ln(), w)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, w)| w).collect()
}

/// The text most similar to the others (the first on ties).
fn medoid(texts: &[&str]) -> usize {
    let sets: Vec<BTreeSet<String>> = texts.iter().map(|t| tokens(t)).collect();
    let mut best = (f64::NEG_INFINITY, 0);
    for i in 0..sets.len() {
        let total: f64 = (0..sets.len()).filter(|&j| j != i).map(|j| jaccard(&sets[i], &sets[j])).sum();
        if total > best.0 {
            best = (total, i);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure<'a>(
        evaluator: &'a str,
        reason: Option<&'a str>,
        rationale: &'a str,
        output: &'a str,
        finish: FinishReason,
    ) -> Failure<'a> {
        Failure { evaluator, is_judge: reason.is_none(), reason, rationale, output, finish }
    }

    #[test]
    fn jaccard_of_token_sets() {
        let a = tokens("The capital city is wrong");
        let b = tokens("wrong capital city named");
        assert_eq!(a, ["capital", "city", "wrong"].iter().map(|s| s.to_string()).collect());
        assert!((jaccard(&a, &b) - 0.75).abs() < 1e-9, "{}", jaccard(&a, &b));
        assert_eq!(jaccard(&a, &BTreeSet::new()), 0.0);
    }

    #[test]
    fn deterministic_failures_group_by_evaluator_and_reason() {
        use FinishReason::*;
        let failures = vec![
            failure("numeric", Some("wrong-number"), "expected 56, got 54", "54", Stop),
            failure("numeric", Some("no-number"), "expected 56, the output has no number", "fifty", Stop),
            failure("numeric", Some("wrong-number"), "expected 9, got 8", "8", Stop),
            failure("numeric", Some("wrong-number"), "expected 9, got 8", "a long ramble 8", Length),
            failure("exact", Some("mismatch"), "expected `paris`, got `lyon`", "Lyon", Stop),
            failure("exact", Some("mismatch"), "expected `x`, got ``", "  ", Stop),
        ];
        let modes = group(&failures);
        let labels: Vec<(&str, usize)> = modes.iter().map(|m| (m.label.as_str(), m.count())).collect();
        assert_eq!(
            labels,
            [
                ("numeric/wrong-number", 2),
                ("exact/empty-output", 1),
                ("exact/mismatch", 1),
                ("numeric/cut-off", 1),
                ("numeric/no-number", 1)
            ]
        );
        assert_eq!(modes.iter().map(FailureMode::count).sum::<usize>(), failures.len());
        assert_eq!(
            modes[0].description,
            "the `numeric` check failed: wrong number; for example: expected 56, got 54; expected 9, got 8"
        );
    }

    #[test]
    fn judge_rationales_cluster_by_shared_words() {
        let texts = [
            "The capital city named is wrong, Lyon is not the capital of France",
            "Wrong capital city: Sydney is not the capital of Australia",
            "The arithmetic is off: 7 times 8 is 56, multiplication error",
            "Multiplication error, 6 times 7 is 42 so the arithmetic is wrong",
            "",
        ];
        let clusters = cluster(&texts);
        assert_eq!(clusters, vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(cluster(&texts), clusters, "deterministic");

        let failures: Vec<Failure> =
            texts.iter().map(|t| failure("judge", None, t, "some answer", FinishReason::Stop)).collect();
        let modes = group(&failures);
        let labels: Vec<&str> = modes.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels.len(), 3);
        assert!(labels.contains(&"judge/no-rationale"), "{labels:?}");
        let capital = modes.iter().find(|m| m.members == [0, 1]).unwrap();
        assert!(capital.label.starts_with("judge/") && capital.label.contains("capital"), "{}", capital.label);
        assert!(capital.description.contains("capital"), "{}", capital.description);
        let mut all: Vec<usize> = modes.iter().flat_map(|m| m.members.clone()).collect();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }

    /// The plain O(n³) algorithm: scan every pair for the best merge each time.
    fn cluster_naive(texts: &[&str]) -> Vec<Vec<usize>> {
        let sets: Vec<BTreeSet<String>> = texts.iter().map(|t| tokens(t)).collect();
        let n = sets.len();
        let mut link: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| jaccard(&sets[i], &sets[j])).collect()).collect();
        let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        let mut alive = vec![true; n];
        loop {
            let mut best: Option<(f64, usize, usize)> = None;
            for a in (0..n).filter(|&a| alive[a]) {
                for b in (a + 1..n).filter(|&b| alive[b]) {
                    if link[a][b] >= MERGE_THRESHOLD && best.is_none_or(|(s, _, _)| link[a][b] > s) {
                        best = Some((link[a][b], a, b));
                    }
                }
            }
            let Some((_, a, b)) = best else { break };
            let (na, nb) = (clusters[a].len() as f64, clusters[b].len() as f64);
            for c in (0..n).filter(|&c| alive[c] && c != a && c != b) {
                let merged = (na * link[a][c] + nb * link[b][c]) / (na + nb);
                link[a][c] = merged;
                link[c][a] = merged;
            }
            let moved = std::mem::take(&mut clusters[b]);
            clusters[a].extend(moved);
            clusters[a].sort_unstable();
            alive[b] = false;
        }
        clusters.into_iter().zip(alive).filter(|(_, alive)| *alive).map(|(c, _)| c).collect()
    }

    #[test]
    fn fast_clustering_merges_exactly_like_the_plain_algorithm() {
        let words = [
            "capital", "city", "wrong", "number", "units", "meters", "grams", "missing", "format", "rambles",
            "country", "sum",
        ];
        let mut state: u64 = 7;
        let mut next = |m: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % m) as usize
        };
        for round in 0..20 {
            let n = 5 + round * 3;
            let texts: Vec<String> = (0..n)
                .map(|_| (0..1 + next(4)).map(|_| words[next(words.len() as u64)]).collect::<Vec<_>>().join(" "))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            assert_eq!(cluster(&refs), cluster_naive(&refs), "{refs:?}");
        }
    }

    #[test]
    fn labels_stay_unique() {
        let texts = ["capital wrong", "alpha beta gamma", "capital wrong"];
        let failures: Vec<Failure> = texts.iter().map(|t| failure("judge", None, t, "x", FinishReason::Stop)).collect();
        let modes = group(&failures);
        let labels: BTreeSet<&str> = modes.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels.len(), modes.len());
    }
}

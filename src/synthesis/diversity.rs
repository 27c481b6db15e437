//! How alike a run's new requests are: distinct-1/distinct-2 over all of them, and the share of
//! pairs from the same seed row that are near-copies (word-trigram Jaccard ≥ 0.5).

use std::collections::{BTreeMap, HashSet};

use crate::store::artifacts::{round3, DiversityRecord};

/// Pairs from one seed at or above this word-trigram Jaccard index count as near-copies.
pub const SIMILAR_JACCARD: f64 = 0.5;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Unique word n-grams over all texts, divided by all word n-grams (0 when there are none).
pub fn distinct(texts: &[&str], n: usize) -> f64 {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for text in texts {
        for gram in words(text).windows(n) {
            total += 1;
            seen.insert(gram.to_vec());
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}

fn trigrams(text: &str) -> HashSet<Vec<String>> {
    words(text).windows(3).map(<[String]>::to_vec).collect()
}

/// Jaccard index of two texts' word-trigram sets (1 when both have none).
pub fn trigram_jaccard(a: &str, b: &str) -> f64 {
    let (a, b) = (trigrams(a), trigrams(b));
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// The record for requests given with their seed rows.
pub fn measure(requests: &[(usize, String)], mechanism: &str) -> DiversityRecord {
    let texts: Vec<&str> = requests.iter().map(|(_, t)| t.as_str()).collect();
    let mut by_seed: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (row, text) in requests {
        by_seed.entry(*row).or_default().push(text);
    }
    let (mut pairs, mut similar) = (0usize, 0usize);
    for group in by_seed.values() {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                pairs += 1;
                similar += usize::from(trigram_jaccard(a, b) >= SIMILAR_JACCARD);
            }
        }
    }
    DiversityRecord {
        mechanism: mechanism.to_string(),
        distinct1: round3(distinct(&texts, 1)),
        distinct2: round3(distinct(&texts, 2)),
        same_seed_pairs: pairs,
        similar_same_seed_pairs: round3(if pairs == 0 { 0.0 } else { similar as f64 / pairs as f64 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_copies_of_one_seed_are_counted() {
        let requests = vec![
            (0, "How do I bake a loaf of bread at home?".to_string()),
            (0, "How do I bake a loaf of bread at home quickly?".to_string()),
            (0, "Write a poem about the sea.".to_string()),
            (1, "How do I bake a loaf of bread at home?".to_string()),
        ];
        let record = measure(&requests, "on");
        assert_eq!(record.same_seed_pairs, 3);
        assert_eq!(record.similar_same_seed_pairs, round3(1.0 / 3.0));
        assert!(record.distinct1 > 0.0 && record.distinct1 < 1.0 && record.distinct2 > record.distinct1 * 0.5);
        assert_eq!(distinct(&["a b a b"], 1), 0.5);
        assert_eq!(trigram_jaccard("a b c d", "a b c e"), 1.0 / 3.0);
    }
}

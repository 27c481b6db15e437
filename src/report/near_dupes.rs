//! Near-duplicate clusters: texts whose word-trigram sets have a Jaccard index of at least
//! [`SIMILAR_JACCARD`] (synth's own near-copy rule), found without comparing all pairs.
//!
//! MinHash with locality-sensitive hashing: 20 bands of 3 hashes make two texts at Jaccard 0.5
//! share a band with probability 1 - (1 - 0.5³)²⁰ ≈ 0.93 (0.99 at 0.7); each candidate pair is
//! then checked exactly, and checked pairs are joined with union-find.

use std::collections::{HashMap, HashSet};

use crate::synthesis::diversity::SIMILAR_JACCARD;

const BANDS: usize = 20;
const ROWS_PER_BAND: usize = 3;
/// Beyond this many texts in one bucket, each is compared with the bucket's first only.
const FULL_PAIRS_UP_TO: usize = 64;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hashes of the lowercase word trigrams of `text` (the words of the manifest's diversity
/// figures), without building a string per word.
fn trigram_hashes(text: &str) -> HashSet<u64> {
    let words: Vec<u64> = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().flat_map(char::to_lowercase).fold(0xcbf2_9ce4_8422_2325, |h, c| splitmix(h ^ c as u64)))
        .collect();
    words.windows(3).map(|w| splitmix(splitmix(w[0] ^ 1) ^ w[1].rotate_left(21) ^ w[2].rotate_left(42))).collect()
}

fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    let inter = a.intersection(b).count();
    inter as f64 / (a.len() + b.len() - inter) as f64
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Clusters of two or more near-duplicate texts, as indices into `texts`: largest first, each
/// sorted. Texts of fewer than three words are never clustered.
pub fn clusters(texts: &[&str]) -> Vec<Vec<usize>> {
    let sets: Vec<HashSet<u64>> = texts.iter().map(|t| trigram_hashes(t)).collect();
    let mut buckets: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    for (i, set) in sets.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
        for band in 0..BANDS {
            let mut key = band as u64;
            for k in 0..ROWS_PER_BAND {
                let seed = splitmix((band * ROWS_PER_BAND + k) as u64);
                let min = set.iter().map(|h| splitmix(h ^ seed)).min().unwrap_or(0);
                key = splitmix(key ^ min);
            }
            buckets.entry((band, key)).or_default().push(i);
        }
    }
    let mut parent: Vec<usize> = (0..texts.len()).collect();
    let mut checked = HashSet::new();
    for members in buckets.values().filter(|m| m.len() > 1) {
        let full = members.len() <= FULL_PAIRS_UP_TO;
        for (x, &a) in members.iter().enumerate() {
            let partners = if full { &members[x + 1..] } else { &members[..x.min(1)] };
            for &b in partners {
                if checked.insert((a.min(b), a.max(b))) && jaccard(&sets[a], &sets[b]) >= SIMILAR_JACCARD {
                    let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..texts.len() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_copies_cluster_and_different_texts_do_not() {
        let texts = [
            "How do I bake a loaf of bread at home?",
            "Write a poem about the sea at night.",
            "How do I bake a loaf of bread at home quickly?",
            "Explain how vaccines train the immune system.",
            "How do I bake a loaf of bread at home?",
            "ok",
            "ok",
        ];
        assert_eq!(clusters(&texts), vec![vec![0, 2, 4]]);
    }
}

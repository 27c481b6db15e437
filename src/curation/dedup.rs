//! Exact and near-duplicate detection over word shingles.
//!
//! A text becomes its *words* (lowercased runs of letters, digits and apostrophes; each Han,
//! kana, Hangul or Thai character is a word of its own, since those scripts do not separate
//! words with spaces). Two texts are *exact duplicates* when their words are the same
//! ([`normalized`]), and *near duplicates* when the Jaccard index of their sets of word 3-grams
//! ([`shingles`]; a text of fewer than 3 words is one shingle) reaches a threshold.
//!
//! [`NearIndex`] finds near duplicates among many texts without comparing every pair: each text
//! gets a MinHash signature of [`NUM_PERM`] values (Broder 1997; multiply-shift hash functions,
//! see [`MinHasher`]), cut into bands (locality-sensitive hashing,
//! Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3); texts that share a band
//! are candidates, and a candidate counts only if the *exact* Jaccard index of the two shingle
//! sets reaches the threshold. So the estimate never decides, it only narrows: a decision is a
//! pure function of the two texts, and the band count is chosen for recall ([`lsh_params`]).
//!
//! Every hash is xxh3 (fixed by its specification) and the permutations come from a fixed
//! ChaCha8 seed, so the same texts give the same decisions on every platform.

use std::collections::HashMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use twox_hash::XxHash3_64;

/// MinHash permutations per signature (datasketch's default).
pub const NUM_PERM: usize = 128;
/// Words per shingle.
pub const SHINGLE_WORDS: usize = 3;
/// Fixed so that signatures, and so decisions, never change between runs or releases.
const PERMUTATION_SEED: u64 = 0x6d69_6e68_6173_6831;
/// [`lsh_params`] weighs a missed pair this much more than a candidate that verification then
/// rejects (a rejected candidate costs one exact Jaccard; a missed one is a duplicate kept).
const FALSE_NEGATIVE_WEIGHT: f64 = 0.7;

/// Characters of scripts written without spaces between words: each is a word of its own.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF        // Thai, Lao
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xAC00..=0xD7AF      // Hangul syllables
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0x20000..=0x2FFFF)
}

/// The words of `text`, lowercased (see the module docs).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_unspaced(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    for w in &mut out {
        while w.ends_with('\'') {
            w.pop();
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

/// The text's words joined by single spaces: equal for exact duplicates (case, punctuation and
/// spacing aside).
pub fn normalized(text: &str) -> String {
    words(text).join(" ")
}

/// The sorted, distinct hashes of the text's word 3-grams (one shingle of all its words when
/// it has fewer than 3; none when it has no words).
pub fn shingles(text: &str) -> Vec<u64> {
    let words = words(text);
    let mut out: Vec<u64> = if words.len() < SHINGLE_WORDS {
        if words.is_empty() {
            Vec::new()
        } else {
            vec![XxHash3_64::oneshot(words.join("\u{1f}").as_bytes())]
        }
    } else {
        words.windows(SHINGLE_WORDS).map(|gram| XxHash3_64::oneshot(gram.join("\u{1f}").as_bytes())).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Jaccard index of two sorted, distinct shingle sets; 0 when either is empty (a text without
/// words is never a near duplicate; [`normalized`] compares those).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / (a.len() + b.len() - common) as f64
}

/// The [`NUM_PERM`] hash functions of a MinHash signature: multiply-shift hashes
/// `(a·x + b) mod 2^64`, top 32 bits, with odd `a` (Dietzfelbinger et al. 1997: 2-independent
/// in their top bits; one multiply and one add per shingle and permutation, where datasketch's
/// `(a·x + b) mod (2^61 − 1)` needs a 128-bit product and a reduction).
#[derive(Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Default for MinHasher {
    fn default() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(PERMUTATION_SEED);
        let (a, b) = (0..NUM_PERM).map(|_| (rng.next_u64() | 1, rng.next_u64())).unzip();
        Self { a, b }
    }
}

impl MinHasher {
    /// The signature of a non-empty shingle set: per hash function, the least hashed shingle.
    pub fn signature(&self, shingles: &[u64]) -> Vec<u64> {
        let mut signature = vec![u64::MAX; NUM_PERM];
        for &x in shingles {
            for (slot, (&a, &b)) in signature.iter_mut().zip(self.a.iter().zip(&self.b)) {
                let h = a.wrapping_mul(x).wrapping_add(b) >> 32;
                if h < *slot {
                    *slot = h;
                }
            }
        }
        signature
    }
}

/// Bands and rows per band for a Jaccard `threshold` over [`NUM_PERM`] permutations: the pair
/// that minimizes the weighted area of false positives below the threshold and false negatives
/// above it under the LSH S-curve `1 − (1 − s^r)^b` (datasketch's `_optimal_param`, with the
/// weights of [`FALSE_NEGATIVE_WEIGHT`]).
pub fn lsh_params(threshold: f64) -> (usize, usize) {
    let candidate = |s: f64, b: usize, r: usize| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
    let integrate = |from: f64, to: f64, f: &dyn Fn(f64) -> f64| {
        const STEPS: usize = 200;
        let step = (to - from) / STEPS as f64;
        (0..STEPS).map(|i| f(from + (i as f64 + 0.5) * step)).sum::<f64>() * step
    };
    let mut best = (f64::INFINITY, (1, NUM_PERM));
    for b in 1..=NUM_PERM {
        for r in 1..=NUM_PERM / b {
            let fp = integrate(0.0, threshold, &|s| candidate(s, b, r));
            let fn_ = integrate(threshold, 1.0, &|s| 1.0 - candidate(s, b, r));
            let error = fp * (1.0 - FALSE_NEGATIVE_WEIGHT) + fn_ * FALSE_NEGATIVE_WEIGHT;
            if error < best.0 {
                best = (error, (b, r));
            }
        }
    }
    best.1
}

/// A text's shingles and LSH band keys (none when it has no shingles).
pub struct Probe {
    shingles: Vec<u64>,
    keys: Vec<u64>,
}

/// Texts (as shingle sets) in insertion order, searchable for a near duplicate.
pub struct NearIndex {
    threshold: f64,
    bands: usize,
    rows: usize,
    hasher: MinHasher,
    /// Per band: the band's hash → the items with that band.
    tables: Vec<HashMap<u64, Vec<u32>>>,
    items: Vec<Vec<u64>>,
}

impl NearIndex {
    pub fn new(threshold: f64) -> Self {
        let (bands, rows) = lsh_params(threshold);
        Self::with_bands(threshold, bands, rows)
    }

    fn with_bands(threshold: f64, bands: usize, rows: usize) -> Self {
        Self {
            threshold,
            bands,
            rows,
            hasher: MinHasher::default(),
            tables: vec![HashMap::new(); bands],
            items: vec![],
        }
    }

    /// The Jaccard index at or above which two texts are near duplicates.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// LSH bands and rows per band.
    pub fn bands(&self) -> (usize, usize) {
        (self.bands, self.rows)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn band_keys(&self, shingles: &[u64]) -> Vec<u64> {
        let signature = self.hasher.signature(shingles);
        signature.chunks_exact(self.rows).take(self.bands).map(band_hash).collect()
    }

    /// A text's shingles with its band keys, to look up and then insert without hashing twice.
    pub fn probe(&self, shingles: Vec<u64>) -> Probe {
        let keys = if shingles.is_empty() { Vec::new() } else { self.band_keys(&shingles) };
        Probe { shingles, keys }
    }

    /// Adds a text; returns its id (ids count up from 0). A text without shingles is kept (so
    /// ids stay in step) but is nobody's near duplicate.
    pub fn insert(&mut self, shingles: Vec<u64>) -> usize {
        let probe = self.probe(shingles);
        self.insert_probe(probe)
    }

    /// [`insert`](Self::insert) of a probed text.
    pub fn insert_probe(&mut self, probe: Probe) -> usize {
        let id = self.items.len();
        for (table, key) in self.tables.iter_mut().zip(probe.keys) {
            table.entry(key).or_default().push(id as u32);
        }
        self.items.push(probe.shingles);
        id
    }

    /// The earliest inserted text whose Jaccard index with `shingles` reaches the threshold.
    pub fn find(&self, shingles: &[u64]) -> Option<usize> {
        self.find_probe(&self.probe(shingles.to_vec()))
    }

    /// [`find`](Self::find) for a probed text.
    pub fn find_probe(&self, probe: &Probe) -> Option<usize> {
        self.find_where(probe, |_| true)
    }

    /// As [`find_probe`](Self::find_probe), among the ids `keep` accepts.
    pub fn find_where(&self, probe: &Probe, keep: impl Fn(usize) -> bool) -> Option<usize> {
        let own = &probe.shingles;
        self.candidates(probe).into_iter().find(|&id| keep(id) && jaccard(&self.items[id], own) >= self.threshold)
    }

    /// Every inserted text whose Jaccard index with the probed text reaches the threshold, in order.
    pub fn find_all(&self, probe: &Probe) -> Vec<usize> {
        let mut found = self.candidates(probe);
        found.retain(|&id| jaccard(&self.items[id], &probe.shingles) >= self.threshold);
        found
    }

    /// Ids that share a band with the probe, ascending.
    fn candidates(&self, probe: &Probe) -> Vec<usize> {
        let mut candidates: Vec<usize> = Vec::new();
        for (table, key) in self.tables.iter().zip(&probe.keys) {
            if let Some(ids) = table.get(key) {
                candidates.extend(ids.iter().map(|&id| id as usize));
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
    }
}

fn band_hash(band: &[u64]) -> u64 {
    let bytes: Vec<u8> = band.iter().flat_map(|v| v.to_le_bytes()).collect();
    XxHash3_64::oneshot(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_case_punctuation_and_unspaced_scripts() {
        assert_eq!(words("Don't PANIC -- it's   fine!"), ["don't", "panic", "it's", "fine"]);
        assert_eq!(words("如何烤面包?"), ["如", "何", "烤", "面", "包"]);
        assert_eq!(words("'quoted' word"), ["quoted", "word"]);
        assert_eq!(normalized("How do I bake bread?"), normalized("  how do i BAKE bread"));
        assert!(shingles("...").is_empty());
        assert_eq!(shingles("Hello there").len(), 1);
        assert_eq!(shingles("one two three four").len(), 2);
    }

    #[test]
    fn jaccard_is_exact_over_shingle_sets() {
        let a = shingles("How do I bake a loaf of bread at home?");
        let b = shingles("How do I bake a loaf of bread at home quickly?");
        assert_eq!(jaccard(&a, &b), 8.0 / 9.0);
        assert_eq!(jaccard(&a, &a), 1.0);
        assert_eq!(jaccard(&a, &[]), 0.0);
        let c = shingles("Write a haiku about autumn rain.");
        assert_eq!(jaccard(&a, &c), 0.0);
    }

    #[test]
    fn signatures_estimate_jaccard() {
        let hasher = MinHasher::default();
        let a: Vec<u64> = (0..400).collect();
        let b: Vec<u64> = (100..500).collect(); // Jaccard 300/500 = 0.6
        let (sa, sb) = (hasher.signature(&a), hasher.signature(&b));
        let estimate = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / NUM_PERM as f64;
        assert!((estimate - 0.6).abs() < 0.15, "{estimate}");
        assert_eq!(sa, MinHasher::default().signature(&a), "fixed permutations");
    }

    #[test]
    fn band_parameters_follow_the_threshold() {
        for t in [0.3, 0.5, 0.7, 0.9] {
            let (b, r) = lsh_params(t);
            assert!(b * r <= NUM_PERM, "{t}: {b}x{r}");
            // The S-curve's midpoint (1/b)^(1/r) sits at or below the threshold: recall first.
            let knee = (1.0 / b as f64).powf(1.0 / r as f64);
            assert!(knee <= t + 0.05, "{t}: {b}x{r} knee {knee}");
        }
        assert!(lsh_params(0.9).1 > lsh_params(0.3).1, "higher thresholds use longer bands");
    }

    #[test]
    fn the_index_finds_the_earliest_near_duplicate_and_only_above_the_threshold() {
        let mut index = NearIndex::new(0.5);
        index.insert(shingles("What is a good way to store fresh basil so it lasts longer?"));
        index.insert(shingles("Write a Python function that returns the largest number in a list."));
        index.insert(shingles("Write a Python function that returns the largest number in a given list."));
        let query = shingles("Write a Python function that returns the largest number in a list of floats.");
        assert_eq!(index.find(&query), Some(1));
        assert_eq!(index.find_where(&index.probe(query.clone()), |id| id != 1), Some(2));
        // A near miss: same frame, another task (Jaccard 0.29).
        let near_miss = shingles("Write a Python function that returns the smallest even number in a dictionary.");
        assert!(jaccard(&near_miss, &index.items[1]) < 0.5);
        assert_eq!(index.find(&near_miss), None);
        assert_eq!(index.find(&[]), None);
    }
}

//! Cutting rows into train / validation / test from a recipe's `datasetDistribution`.
//!
//! Reproducibility is the point: the same row count, fractions and seed give the same splits on
//! every platform and with every release of synth. So the generator is `ChaCha8Rng`, whose output
//! stream is fixed by its specification, not `StdRng`, whose algorithm rand may change in any
//! release; and the shuffle and its bounded draws are written here instead of calling
//! `SliceRandom::shuffle` or `random_range`, whose sampling rand has changed between versions.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rows per split (train, validation, test) by the largest-remainder method: each split gets the
/// floor of its share, and the rows left over go one each to the largest fractional parts, ties to
/// the earlier split. The sizes always sum to `n`, and a fraction of `0.0` always gets 0 rows.
///
/// Fractions are scaled by their sum, so they need not add up to exactly 1. Negative or non-finite
/// fractions count as 0 (the recipe validator rejects them); if none is positive, train gets all.
pub fn split_sizes(n: usize, fractions: [f64; 3]) -> [usize; 3] {
    let fractions = fractions.map(|f| if f.is_finite() && f > 0.0 { f } else { 0.0 });
    let total: f64 = fractions.iter().sum();
    if total <= 0.0 {
        return [n, 0, 0];
    }
    let quotas = fractions.map(|f| n as f64 * f / total);
    let mut sizes = quotas.map(|q| (q.floor() as usize).min(n));
    // Float error can make a floor overshoot; take the excess back from the largest.
    while sizes.iter().sum::<usize>() > n {
        let largest = (0..3).max_by_key(|&i| sizes[i]).unwrap_or(0);
        sizes[largest] -= 1;
    }
    let mut remainders: [f64; 3] = std::array::from_fn(|i| quotas[i] - sizes[i] as f64);
    let mut left = n - sizes.iter().sum::<usize>();
    while left > 0 {
        // Remainders within float noise of each other are ties, won by the earlier split.
        let mut best: Option<usize> = None;
        for i in (0..3).filter(|&i| fractions[i] > 0.0) {
            if best.is_none_or(|b| remainders[i] > remainders[b] + 1e-9) {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        sizes[i] += 1;
        remainders[i] -= 1.0;
        left -= 1;
    }
    sizes
}

/// `0..n` in a random order fixed by `seed` (Fisher–Yates over `ChaCha8Rng::seed_from_u64`).
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut indices: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        indices.swap(i, j);
    }
    indices
}

/// Row indices for train, validation and test: shuffle, then cut by [`split_sizes`].
///
/// Each split keeps its shuffled order rather than being sorted back into source order, so any
/// prefix of a split is itself a random sample, and rows from one part of the seed (often
/// grouped by topic or source) do not sit together in the output files.
pub fn assign_splits(n: usize, fractions: [f64; 3], seed: u64) -> [Vec<usize>; 3] {
    let [train, validation, _] = split_sizes(n, fractions);
    let mut order = shuffled_indices(n, seed);
    let test = order.split_off(train + validation);
    let validation = order.split_off(train);
    [order, validation, test]
}

/// A uniform draw from `0..bound` (`bound > 0`) by rejection, so no value is favored.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    // 2^64 mod bound: draws below it would make the low values more likely.
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let x = rng.next_u64();
        if x >= threshold {
            return x % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISTRIBUTIONS: [[f64; 3]; 8] = [
        [0.8, 0.1, 0.1],
        [0.85, 0.1, 0.05],
        [0.7, 0.15, 0.15],
        [1.0, 0.0, 0.0],
        [0.5, 0.0, 0.5],
        [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
        [0.9, 0.1, 0.0],
        [0.0, 0.0, 1.0],
    ];

    #[test]
    fn sizes_sum_to_n_and_zero_fractions_stay_empty() {
        for n in 0..200 {
            for f in DISTRIBUTIONS {
                let sizes = split_sizes(n, f);
                assert_eq!(sizes.iter().sum::<usize>(), n, "n={n} f={f:?}");
                for i in 0..3 {
                    if f[i] == 0.0 {
                        assert_eq!(sizes[i], 0, "n={n} f={f:?}");
                    }
                    // Largest remainder never strays a whole row from the exact share.
                    assert!((sizes[i] as f64 - n as f64 * f[i]).abs() < 1.0 + 1e-9, "n={n} f={f:?} {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn known_sizes() {
        assert_eq!(split_sizes(10, [0.8, 0.1, 0.1]), [8, 1, 1]);
        // 3.5, 1.75, 1.75: floors 3+1+1, the two rows left go to the .75 remainders.
        assert_eq!(split_sizes(7, [0.5, 0.25, 0.25]), [3, 2, 2]);
        // 1.67 each: floors 1+1+1, the two left go to the tied train and validation.
        assert_eq!(split_sizes(5, [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]), [2, 2, 1]);
        // 1.6, 0.2, 0.2
        assert_eq!(split_sizes(2, [0.8, 0.1, 0.1]), [2, 0, 0]);
        // 0.5, 0.25, 0.25 with n=1: train's remainder is largest.
        assert_eq!(split_sizes(1, [0.5, 0.25, 0.25]), [1, 0, 0]);
        // 2.5 and 2.5: a true tie goes to train.
        assert_eq!(split_sizes(5, [0.5, 0.0, 0.5]), [3, 0, 2]);
        assert_eq!(split_sizes(0, [0.8, 0.1, 0.1]), [0, 0, 0]);
        assert_eq!(split_sizes(100, [0.85, 0.1, 0.05]), [85, 10, 5]);
        // Scaled by their sum.
        assert_eq!(split_sizes(10, [8.0, 1.0, 1.0]), [8, 1, 1]);
        assert_eq!(split_sizes(4, [0.0, 0.0, 0.0]), [4, 0, 0]);
        assert_eq!(split_sizes(4, [f64::NAN, -1.0, 1.0]), [0, 0, 4]);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        for n in [0, 1, 2, 10, 257] {
            let mut sorted = shuffled_indices(n, 7);
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }
        assert_eq!(shuffled_indices(100, 42), shuffled_indices(100, 42));
        assert_ne!(shuffled_indices(100, 42), shuffled_indices(100, 43));
    }

    #[test]
    fn shuffle_is_pinned() {
        // Changing this order changes every split ever made from a seed: don't, without a
        // migration note.
        assert_eq!(shuffled_indices(10, 42), PINNED_10_42);
    }

    const PINNED_10_42: [usize; 10] = [1, 5, 9, 6, 3, 2, 0, 8, 4, 7];

    #[test]
    fn assign_cuts_the_shuffled_order() {
        let [train, validation, test] = assign_splits(10, [0.8, 0.1, 0.1], 42);
        assert_eq!((train.len(), validation.len(), test.len()), (8, 1, 1));
        let joined: Vec<usize> = train.iter().chain(&validation).chain(&test).copied().collect();
        assert_eq!(joined, shuffled_indices(10, 42));
        let [train, validation, test] = assign_splits(3, [1.0, 0.0, 0.0], 1);
        assert_eq!((train.len(), validation.len(), test.len()), (3, 0, 0));
    }
}

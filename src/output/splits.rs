//! Cutting rows into train / validation / test from a recipe's `datasetDistribution`.
//!
//! Reproducibility is the point: the same row count, fractions and seed give the same splits on
//! every platform and with every release of synth. So the generator is `ChaCha8Rng`, whose output
//! stream is fixed by its specification, not `StdRng`, whose algorithm rand may change in any
//! release; and the shuffle and its bounded draws are written here instead of calling
//! `SliceRandom::shuffle` or `random_range`, whose sampling rand has changed between versions.
//!
//! # Grouped splits
//!
//! Rows made from one seed row (the same `metadata.seedRow`) are paraphrases of one example, so
//! they all go to one split: a model is never tested on a rewording of what it trained on.
//! [`plan_splits`] shuffles the rows as [`assign_splits`] does, takes the groups in the order
//! their first row appears in that shuffle, and puts each whole group into the first split
//! (train, validation, test) that still has room for it under the target sizes
//! ([`split_sizes`]). A group that fits nowhere goes to the split with the most room left (a
//! split whose fraction is 0.0 never gets a row), which is the only way sizes leave their
//! targets; [`SplitRecord::rows_off_target`] says by how much. Each split then lists its rows in
//! the shuffled order. A row without `seedRow` is a group of its own, so rows without groups
//! are split exactly as [`assign_splits`] splits them.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::curation::dedup::{shingles, NearIndex};
use crate::store::artifacts::SplitRecord;
use crate::store::Row;

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

/// Which rows go to train, validation and test, and the record of how.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPlan {
    pub splits: [Vec<usize>; 3],
    pub record: SplitRecord,
}

/// A row's group: its `metadata.seedRow`, if it has one.
fn group_key(row: &Row) -> Option<u64> {
    row.metadata.as_ref()?.get("seedRow")?.as_u64()
}

/// Grouped splits of `rows` (see the module docs); with `near_threshold`, also the count of
/// near-duplicate pairs across splits.
pub fn plan_splits(rows: &[Row], fractions: [f64; 3], seed: u64, near_threshold: Option<f64>) -> SplitPlan {
    let target = split_sizes(rows.len(), fractions);
    let order = shuffled_indices(rows.len(), seed);
    let groups = groups_in_order(rows, &order);
    let mut split_of = vec![0usize; rows.len()];
    let mut sizes = [0usize; 3];
    for members in &groups {
        let split = place(members.len(), &sizes, &target, fractions);
        sizes[split] += members.len();
        for &r in members {
            split_of[r] = split;
        }
    }
    let splits: [Vec<usize>; 3] =
        std::array::from_fn(|s| order.iter().copied().filter(|&r| split_of[r] == s).collect());
    let off: usize = (0..3).map(|s| sizes[s].abs_diff(target[s])).sum::<usize>() / 2;
    let record = SplitRecord {
        grouped_by: "seedRow".into(),
        groups: groups.len(),
        target,
        sizes,
        rows_off_target: off,
        cross_split_near_duplicates: near_threshold.map(|t| cross_split_near_duplicates(rows, &split_of, t)),
    };
    SplitPlan { splits, record }
}

/// Row indices per group, groups in the order their first row appears in `order`; a row
/// without a group is a group of its own.
fn groups_in_order(rows: &[Row], order: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: BTreeMap<u64, usize> = BTreeMap::new();
    for &r in order {
        match group_key(&rows[r]) {
            Some(key) => match by_key.get(&key) {
                Some(&g) => groups[g].push(r),
                None => {
                    by_key.insert(key, groups.len());
                    groups.push(vec![r]);
                }
            },
            None => groups.push(vec![r]),
        }
    }
    groups
}

/// The first split with room for `size` more rows; else the one with the most room left among
/// splits with a positive fraction (train when none has one).
fn place(size: usize, sizes: &[usize; 3], target: &[usize; 3], fractions: [f64; 3]) -> usize {
    let room = |s: usize| target[s] as i64 - sizes[s] as i64;
    if let Some(s) = (0..3).find(|&s| room(s) >= size as i64) {
        return s;
    }
    let open: Vec<usize> = (0..3).filter(|&s| fractions[s].is_finite() && fractions[s] > 0.0).collect();
    // `max_by_key` keeps the last of equals; reversed, ties go to the earlier split.
    open.into_iter().rev().max_by_key(|&s| room(s)).unwrap_or(0)
}

/// Pairs of rows in different splits whose user turns are near duplicates (word-3-gram Jaccard
/// at or above `threshold`), found with [`NearIndex`].
pub fn cross_split_near_duplicates(rows: &[Row], split_of: &[usize], threshold: f64) -> usize {
    let mut index = NearIndex::new(threshold);
    let mut pairs = 0;
    for row in rows {
        let users: Vec<&str> = row.messages.iter().filter(|m| m.role == "user").map(|m| m.content.as_str()).collect();
        let probe = index.probe(shingles(&users.join("\n")));
        let id = index.len();
        pairs += index.find_all(&probe).into_iter().filter(|&other| split_of[other] != split_of[id]).count();
        index.insert_probe(probe);
    }
    pairs
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

    fn synthesized(seed_row: Option<u64>, request: &str) -> Row {
        let metadata = seed_row.map(|r| serde_json::json!({"model": "m", "seedRow": r}));
        Row {
            messages: vec![crate::store::Message::new("user", request), crate::store::Message::new("assistant", "ok")],
            metadata: metadata.and_then(|m| m.as_object().cloned()),
        }
    }

    /// `n` distinct requests, `per_seed` rows from each of `n / per_seed` seed rows.
    fn grouped_rows(n: usize, per_seed: usize) -> Vec<Row> {
        (0..n)
            .map(|i| synthesized(Some((i / per_seed) as u64), &format!("request number {i} about topic {}", i * 7919)))
            .collect()
    }

    fn split_of(plan: &SplitPlan, n: usize) -> Vec<usize> {
        let mut of = vec![9; n];
        for (s, rows) in plan.splits.iter().enumerate() {
            for &r in rows {
                assert_eq!(of[r], 9, "row {r} in two splits");
                of[r] = s;
            }
        }
        assert!(of.iter().all(|&s| s < 3), "every row placed");
        of
    }

    #[test]
    fn no_seed_row_is_in_two_splits_and_sizes_stay_near_their_targets() {
        for (n, per_seed, seed) in [(64, 4, 42), (64, 3, 7), (100, 5, 1), (1000, 7, 9), (40, 3, 42)] {
            let rows = grouped_rows(n, per_seed);
            let plan = plan_splits(&rows, [0.8, 0.1, 0.1], seed, None);
            let of = split_of(&plan, n);
            for r in 0..n {
                assert_eq!(of[r], of[r - r % per_seed], "n={n}: row {r} left its seed row's split");
            }
            let record = &plan.record;
            assert_eq!(record.sizes.iter().sum::<usize>(), n);
            assert_eq!(record.target, split_sizes(n, [0.8, 0.1, 0.1]));
            assert_eq!(record.groups, n.div_ceil(per_seed));
            // A group moves at most its own size off target; first-fit keeps it to one group's worth.
            assert!(record.rows_off_target <= per_seed, "n={n}: {record:?}");
            assert!(record.sizes[1] > 0 && record.sizes[2] > 0, "n={n}: {record:?}");
        }
        // 16 seeds × 4 rows for 51/7/6: whole groups of 4 cannot make 7 or 6; one row's worth moves.
        let plan = plan_splits(&grouped_rows(64, 4), [0.8, 0.1, 0.1], 42, None);
        assert_eq!(plan.record.target, [51, 7, 6]);
        assert_eq!(plan.record.rows_off_target, 2, "{:?}", plan.record);
    }

    #[test]
    fn a_zero_split_gets_no_group_even_when_groups_do_not_fit() {
        for seed in 0..20 {
            let plan = plan_splits(&grouped_rows(30, 7), [0.9, 0.1, 0.0], seed, None);
            assert!(plan.splits[2].is_empty(), "{:?}", plan.record);
            let plan = plan_splits(&grouped_rows(30, 7), [0.0, 0.0, 1.0], seed, None);
            assert_eq!(plan.record.sizes, [0, 0, 30]);
        }
    }

    #[test]
    fn rows_without_groups_split_as_before() {
        for (n, seed) in [(10, 42), (57, 3), (200, 11)] {
            let rows: Vec<Row> = (0..n).map(|i| synthesized(None, &format!("row {i}"))).collect();
            let plan = plan_splits(&rows, [0.8, 0.1, 0.1], seed, None);
            assert_eq!(plan.splits, assign_splits(n, [0.8, 0.1, 0.1], seed));
            assert_eq!(plan.record.rows_off_target, 0);
            assert_eq!(plan.record.groups, n);
        }
    }

    #[test]
    fn grouped_splits_are_deterministic_and_shuffled_within_splits() {
        let rows = grouped_rows(120, 3);
        let plan = plan_splits(&rows, [0.8, 0.1, 0.1], 5, Some(0.5));
        assert_eq!(plan, plan_splits(&rows, [0.8, 0.1, 0.1], 5, Some(0.5)));
        assert_ne!(plan.splits, plan_splits(&rows, [0.8, 0.1, 0.1], 6, Some(0.5)).splits);
        let train = &plan.splits[0];
        assert!(train.windows(2).any(|w| w[0] > w[1]), "train keeps the shuffled order");
    }

    #[test]
    fn near_duplicates_across_splits_are_counted() {
        // Seed rows 0..9, one row each, plus two rows of seed row 10 that copy seed rows 0 and 1.
        let mut rows: Vec<Row> = (0..10)
            .map(|i| synthesized(Some(i), &format!("How do I grow tomatoes number {i} on a sunny balcony in pots?")))
            .collect();
        for (i, copied) in [(0usize, 10u64), (1, 10)] {
            let text = rows[i].messages[0].content.clone();
            rows.push(synthesized(Some(copied), &text));
        }
        let of: Vec<usize> = (0..rows.len()).map(|r| usize::from(r >= 10)).collect();
        assert_eq!(cross_split_near_duplicates(&rows, &of, 0.9), 2);
        let same: Vec<usize> = vec![0; rows.len()];
        assert_eq!(cross_split_near_duplicates(&rows, &same, 0.9), 0);
        let plan = plan_splits(&rows, [0.5, 0.0, 0.5], 3, Some(0.9));
        let counted = plan.record.cross_split_near_duplicates.unwrap();
        assert_eq!(counted, cross_split_near_duplicates(&rows, &split_of(&plan, rows.len()), 0.9));
        assert_eq!(plan_splits(&rows, [0.5, 0.0, 0.5], 3, None).record.cross_split_near_duplicates, None);
    }

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

//! One run split over processes or machines: `--shard I/N` makes the rows of seed rows
//! `r % N == I` (all their variants) into a shard dataset, and [`merge`] publishes the `N`
//! shards as the one dataset a single process would have made.
//!
//! That is exact because a seed row's candidates depend only on the seed rows and their own
//! seeds (its quota and budget are dealt over all seed rows, sharded or not), and a single
//! process keeps rows in candidate order (`variant × seed rows + seed row`): the merge sorts
//! the shards' rows back into that order, then shuffles and splits them with the recipe's seed
//! exactly as `synth run` does. Rows that duplicate a row of another seed row are dropped only
//! then, over all rows, as a single process drops them once its rows are made.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;

use super::diversity;
use super::pipeline::{dropped_row, seed_parts, DropReason};
use crate::curation::{self, Gate, RowGates};
use crate::error::SynthError;
use crate::output::Destination;
use crate::recipe::Recipe;
use crate::store::artifacts::{round3, DroppedCandidate, SynthesisManifest, TargetedModeRecord};
use crate::store::{Row, Store, KIND_SHARD, KIND_SYNTHESIZED};

/// Shard `index` of `count` (0-based), from `I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rule = "a shard is `I/N`: shard I (counted from 0) of N, such as `3/16`";
        let (i, n) = text.split_once('/').ok_or_else(|| rule.to_string())?;
        let (index, count) = match (i.trim().parse::<usize>(), n.trim().parse::<usize>()) {
            (Ok(index), Ok(count)) => (index, count),
            _ => return Err(format!("not whole numbers: {rule}")),
        };
        if count == 0 || index >= count {
            return Err(format!("I must be less than N and N at least 1: {rule}"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The dataset id of this shard of the run whose output is `base`.
    pub fn dataset_id(&self, base: &str) -> String {
        format!("{base}.shard-{}-of-{}", self.index, self.count)
    }

    /// Whether seed row `row` is this shard's.
    pub fn holds(&self, row: usize) -> bool {
        row % self.count == self.index
    }
}

/// What a merge published.
pub struct Merged {
    pub path: PathBuf,
    pub splits: [usize; 3],
}

/// Publishes shards `0..count` of `base` as dataset `base`, after checking they are all there,
/// complete, and made from the same recipe, seed rows, model files and device.
pub fn merge(store: &Store, base: &str, count: usize, overwrite: bool) -> Result<Merged> {
    let shards = read_shards(store, base, count)?;
    check_same_run(base, &shards)?;
    let rows_used = shards[0].1.seed_dataset.rows_used;
    let mut rows: Vec<(usize, Row)> = Vec::new();
    for (id, _) in &shards {
        for row in store.load_rows(id)? {
            rows.push((candidate_index(&row, rows_used, id)?, row));
        }
    }
    rows.sort_by_key(|(index, _)| *index);
    let mut rows: Vec<Row> = rows.into_iter().map(|(_, row)| row).collect();
    let mut candidates = Vec::new();
    for (id, _) in &shards {
        candidates.extend(store.load_dropped(id)?);
    }
    candidates.sort_by_key(|c| (c.variant, c.seed_row));
    let dropped = drop_across_seed_rows(&shards[0].1, &mut rows, &mut candidates);
    let details = merged_manifest(&shards, &rows, &dropped);
    let recipe = Recipe::from_json_str(&details.recipe.to_string(), &details.recipe_file)?;
    let destination = Destination { store, id: base, kind: KIND_SYNTHESIZED, overwrite };
    let (path, splits) = destination.publish_run(rows, &candidates, &recipe, details)?;
    Ok(Merged { path, splits })
}

/// Every shard's id and manifest, in shard order; a missing or foreign one is an error.
fn read_shards(store: &Store, base: &str, count: usize) -> Result<Vec<(String, SynthesisManifest)>> {
    let ids: Vec<String> = (0..count).map(|index| Shard { index, count }.dataset_id(base)).collect();
    let mut missing = Vec::new();
    for id in &ids {
        if !store.exists(id)? {
            missing.push(format!("`{id}`"));
        }
    }
    if !missing.is_empty() {
        return Err(SynthError::not_found(format!(
            "cannot merge `{base}`: {} of its {count} shards are not published: {}",
            missing.len(),
            missing.join(", ")
        ))
        .hint(format!(
            "run each missing shard with `synth run RECIPE --shard I/{count} --output-id {base}` (an interrupted one resumes)"
        ))
        .into());
    }
    let mut shards = Vec::with_capacity(count);
    for (index, id) in ids.into_iter().enumerate() {
        let manifest = store.manifest(&id)?;
        let details: Option<SynthesisManifest> = manifest.details().ok();
        let record = details.as_ref().and_then(|d| d.shard.clone());
        match (manifest.kind == KIND_SHARD, details, record) {
            (true, Some(details), Some(r)) if r.index == index && r.count == count => shards.push((id, details)),
            _ => {
                return Err(SynthError::invalid(format!(
                    "cannot merge `{base}`: dataset `{id}` is not shard {index} of {count} of a `synth run`"
                ))
                .hint("shards are made with `synth run RECIPE --shard I/N --output-id BASE`")
                .into())
            }
        }
    }
    Ok(shards)
}

/// The shards were made by the same work: recipe, seed rows, model files, device and options
/// (the journal fingerprint covers them all).
fn check_same_run(base: &str, shards: &[(String, SynthesisManifest)]) -> Result<()> {
    let (first_id, first) = &shards[0];
    let fingerprint = |m: &SynthesisManifest| m.shard.as_ref().map(|s| s.fingerprint.clone());
    for (id, manifest) in &shards[1..] {
        if fingerprint(manifest) != fingerprint(first) {
            let what = if manifest.recipe != first.recipe {
                "recipes"
            } else if manifest.model.files != first.model.files {
                "model files"
            } else if manifest.device != first.device {
                "devices"
            } else {
                "seed rows or options"
            };
            return Err(SynthError::invalid(format!(
                "cannot merge `{base}`: shards `{first_id}` and `{id}` were made by different runs (their {what} differ)"
            ))
            .hint("rerun the odd shard with the same recipe, seed dataset, model and options (`--overwrite`)")
            .into());
        }
    }
    Ok(())
}

/// A row's place in a single process's order, from its provenance.
fn candidate_index(row: &Row, rows_used: usize, id: &str) -> Result<usize> {
    let meta = row.metadata.as_ref();
    let field = |name: &str| meta.and_then(|m| m.get(name)).and_then(serde_json::Value::as_u64);
    let Some(seed_row) = field("seedRow") else {
        return Err(SynthError::invalid(format!("dataset `{id}` has a row without `metadata.seedRow`")).into());
    };
    Ok(field("variant").unwrap_or(0) as usize * rows_used + seed_row as usize)
}

/// The rows, in candidate order, that repeat an earlier row of another seed row: what a single
/// process drops once its rows are made (see [`curation::across_seed_rows`]); a shard, which
/// has only its own seed rows, leaves them to the merge.
fn drop_across_seed_rows(
    run: &SynthesisManifest,
    rows: &mut Vec<Row>,
    dropped: &mut Vec<DroppedCandidate>,
) -> Vec<Gate> {
    let Some(record) = &run.curation else { return Vec::new() };
    let verdicts = curation::across_seed_rows(rows, RowGates::of_record(record));
    for (row, gate) in rows.iter().zip(&verdicts) {
        if let Some(gate) = gate {
            dropped.push(dropped_row(row, DropReason::Curation(*gate)));
        }
    }
    let mut keep = verdicts.iter().map(Option::is_none);
    rows.retain(|_| keep.next().unwrap_or(true));
    verdicts.into_iter().flatten().collect()
}

/// The shards' manifests as one: counts and tokens summed, the rows dropped across seed rows
/// counted, diversity measured over all rows, wall time of the slowest shard (they may have
/// run at once).
fn merged_manifest(shards: &[(String, SynthesisManifest)], rows: &[Row], dropped: &[Gate]) -> SynthesisManifest {
    let mut merged = shards[0].1.clone();
    merged.shard = None;
    let (mut c, mut t) = (merged.counts.clone(), merged.tokens);
    for (_, m) in &shards[1..] {
        c.rows += m.counts.rows;
        c.dropped += m.counts.dropped;
        c.retried += m.counts.retried;
        c.recovered_by_retry += m.counts.recovered_by_retry;
        c.candidates = c.candidates.zip(m.counts.candidates).map(|(a, b)| a + b);
        for (reason, n) in &m.counts.dropped_by {
            *c.dropped_by.entry(reason.clone()).or_default() += n;
        }
        t.prompt += m.tokens.prompt;
        t.generated += m.tokens.generated;
        t.generated_this_run += m.tokens.generated_this_run;
        merged.resumed_generations += m.resumed_generations;
        if let (Some(all), Some(one)) = (merged.curation.as_mut(), m.curation.as_ref()) {
            all.checked.requests += one.checked.requests;
            all.checked.answers += one.checked.answers;
            all.checked.rows += one.checked.rows;
            for (gate, n) in &one.dropped_by {
                *all.dropped_by.entry(gate.clone()).or_default() += n;
            }
        }
        merged.wall_seconds = merged.wall_seconds.max(m.wall_seconds);
    }
    for gate in dropped {
        c.rows -= 1;
        c.dropped += 1;
        *c.dropped_by.entry(DropReason::Curation(*gate).key().to_string()).or_default() += 1;
        if let Some(all) = merged.curation.as_mut() {
            *all.dropped_by.entry(gate.key().to_string()).or_default() += 1;
        }
    }
    merged.targeted = merged.targeted.take().map(|mut targeted| {
        let mut per_mode: BTreeMap<String, usize> = BTreeMap::new();
        for (_, m) in shards {
            for mode in m.targeted.iter().flat_map(|t| &t.failure_modes) {
                *per_mode.entry(mode.label.clone()).or_default() += mode.rows;
            }
        }
        for TargetedModeRecord { label, rows, .. } in &mut targeted.failure_modes {
            *rows = per_mode.get(label).copied().unwrap_or(0);
        }
        targeted
    });
    if let Some(record) = &merged.diversity {
        let requests: Vec<(usize, String)> = rows.iter().filter_map(first_request).collect();
        merged.diversity = Some(diversity::measure(&requests, &record.mechanism));
    }
    merged.tokens_per_second = round3(t.generated_this_run as f64 / merged.wall_seconds.max(1e-9));
    (merged.counts, merged.tokens) = (c, t);
    merged
}

fn first_request(row: &Row) -> Option<(usize, String)> {
    let seed_row = row.metadata.as_ref()?.get("seedRow")?.as_u64()? as usize;
    Some((seed_row, seed_parts(row).1?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_hold_their_seed_rows() {
        assert_eq!("3/16".parse::<Shard>(), Ok(Shard { index: 3, count: 16 }));
        for bad in ["16/16", "1/0", "x/2", "3", "-1/4"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let shard = Shard { index: 1, count: 3 };
        assert_eq!((0..7).filter(|&r| shard.holds(r)).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(shard.dataset_id("big"), "big.shard-1-of-3");
    }
}

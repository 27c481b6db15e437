//! The figures of one dataset, for the report and `synth datasets stats`: what made it, split
//! sizes, request and answer lengths, rows per seed row, diversity and quality flags; plus the
//! rows themselves as the report's row browser shows them.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::flags::{heuristic_flags, RowText};
use super::lengths::Measure;
use super::near_dupes;
use crate::store::artifacts::{round3, DroppedCandidate, ModelFileRecord, SynthesisManifest};
use crate::store::{Message, Row, Store};
use crate::synthesis::diversity::distinct;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStats {
    pub id: String,
    pub kind: String,
    pub created_at: String,
    pub rows: usize,
    /// What lengths are counted in: `tokens (<model> tokenizer)` or `words`.
    pub length_unit: String,
    pub run: Option<RunSummary>,
    /// Candidates → drops by reason → published (synthesized datasets).
    pub funnel: Vec<FunnelStep>,
    /// The manifest's `curation` record, as written, when it has one.
    pub curation: Option<Value>,
    pub splits: Vec<SplitStats>,
    pub rows_per_seed: Option<SeedCoverage>,
    pub diversity: DiversityStats,
    /// Rows carrying each flag.
    pub flags: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub synth_version: String,
    pub recipe_file: String,
    pub seed_dataset: String,
    pub model: String,
    pub model_files: Vec<ModelFileRecord>,
    pub device: String,
    pub inference_seed: u64,
    pub wall_seconds: f64,
    pub generated_tokens: usize,
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunnelStep {
    pub label: String,
    pub rows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitStats {
    pub name: String,
    pub rows: usize,
    /// The first user message.
    pub request: Lengths,
    /// The last assistant message.
    pub answer: Lengths,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Lengths {
    pub min: usize,
    pub median: usize,
    pub mean: f64,
    pub p95: usize,
    pub max: usize,
    #[serde(skip)]
    pub values: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedCoverage {
    /// Seed rows with at least one row.
    pub seeds: usize,
    pub min: usize,
    pub max: usize,
    pub mean: f64,
    /// Seed rows by how many rows each has.
    pub histogram: BTreeMap<usize, usize>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiversityStats {
    /// Unique word unigrams / bigrams over all requests.
    pub distinct1: f64,
    pub distinct2: f64,
    /// Near-duplicate requests (word-trigram Jaccard ≥ 0.5), as `split#index` row references.
    pub clusters: Vec<Vec<String>>,
    pub rows_in_clusters: usize,
}

/// One row as the row browser shows it.
#[derive(Debug, Clone)]
pub struct ReportRow {
    /// Index into the report's group names (splits, or passed/failed for an eval run).
    pub group: usize,
    /// The row's position in its group.
    pub index: usize,
    pub messages: Vec<Message>,
    pub seed: Option<usize>,
    pub flags: Vec<String>,
    pub cluster: Option<usize>,
    /// The row's metadata as JSON.
    pub metadata: Option<String>,
}

/// A dataset's figures and rows, ready to render.
pub struct Explored {
    pub stats: DatasetStats,
    pub groups: Vec<String>,
    pub rows: Vec<ReportRow>,
    /// The seed rows the dataset's rows were made from, by index.
    pub seeds: BTreeMap<usize, Vec<Message>>,
    /// The candidates the run dropped, when it kept them (`dropped.jsonl`).
    pub dropped: Vec<DroppedCandidate>,
}

/// Reads dataset `id` and works out its figures.
pub fn explore(store: &Store, id: &str) -> Result<Explored> {
    let manifest = store.manifest(id)?;
    let run = manifest.details::<SynthesisManifest>().ok();
    let mut groups = Vec::new();
    let mut rows = Vec::new();
    for split in manifest.splits_in_order() {
        let index = groups.len();
        groups.push(split.name.clone());
        rows.extend(store.read_split(id, &split.name, None)?.into_iter().enumerate().map(|(i, r)| (index, i, r)));
    }
    let seed_rows = run.as_ref().and_then(|r| store.load_rows(&r.seed_dataset.id).ok()).unwrap_or_default();
    let measure = Measure::for_model(run.as_ref().map(|r| &r.model), store.root());
    let mut explored = assemble(&measure, &groups, rows, &seed_rows);
    explored.stats.id = manifest.id.clone();
    explored.stats.kind = manifest.kind.clone();
    explored.stats.created_at = manifest.created_at.clone();
    explored.stats.curation = manifest.extra.get("curation").cloned();
    explored.dropped = store.load_dropped(id)?;
    if let Some(run) = &run {
        explored.stats.funnel = funnel(run);
        explored.stats.run = Some(run_summary(run));
    }
    Ok(explored)
}

/// The figures of `rows` (group, index in group, row), given the seed rows they name.
pub fn assemble(measure: &Measure, groups: &[String], rows: Vec<(usize, usize, Row)>, seeds: &[Row]) -> Explored {
    let requests: Vec<&str> = rows.iter().map(|(_, _, r)| first(r, "user")).collect();
    let answers: Vec<&str> = rows.iter().map(|(_, _, r)| last(r, "assistant")).collect();
    let request_lens = measure.lengths(&requests);
    let answer_lens = measure.lengths(&answers);
    let median_answer = Lengths::of(answer_lens.clone()).median;
    let seed_of: Vec<Option<usize>> = rows.iter().map(|(_, _, r)| seed_row(r)).collect();
    let clusters = near_dupes::clusters(&requests);
    let mut cluster_of = vec![None; rows.len()];
    for (c, members) in clusters.iter().enumerate() {
        members.iter().for_each(|&i| cluster_of[i] = Some(c));
    }
    let report_rows: Vec<ReportRow> = rows
        .iter()
        .enumerate()
        .map(|(i, (group, index, row))| {
            let seed_request = seed_of[i].and_then(|s| seeds.get(s)).map(|s| first(s, "user"));
            let text = RowText { request: requests[i], answer: answers[i], answer_len: answer_lens[i], seed_request };
            let mut flags: Vec<String> = heuristic_flags(&text, median_answer).into_iter().map(String::from).collect();
            flags.extend(metadata_flags(row));
            ReportRow {
                group: *group,
                index: *index,
                messages: row.messages.clone(),
                seed: seed_of[i],
                flags,
                cluster: cluster_of[i],
                metadata: row.metadata.as_ref().and_then(|m| serde_json::to_string(m).ok()),
            }
        })
        .collect();
    let reference = |i: usize| format!("{}#{}", groups[rows[i].0], rows[i].1);
    let stats = DatasetStats {
        id: String::new(),
        kind: String::new(),
        created_at: String::new(),
        rows: rows.len(),
        length_unit: measure.unit(),
        run: None,
        funnel: Vec::new(),
        curation: None,
        splits: split_stats(groups, &rows, &request_lens, &answer_lens),
        rows_per_seed: seed_coverage(&seed_of),
        diversity: DiversityStats {
            distinct1: round3(distinct(&requests, 1)),
            distinct2: round3(distinct(&requests, 2)),
            rows_in_clusters: clusters.iter().map(Vec::len).sum(),
            clusters: clusters.iter().map(|c| c.iter().map(|&i| reference(i)).collect()).collect(),
        },
        flags: flag_counts(&report_rows),
    };
    let seeds = seed_of.iter().flatten().filter_map(|&s| Some((s, seeds.get(s)?.messages.clone()))).collect();
    Explored { stats, groups: groups.to_vec(), rows: report_rows, seeds, dropped: Vec::new() }
}

fn first<'a>(row: &'a Row, role: &str) -> &'a str {
    row.messages.iter().find(|m| m.role == role).map_or("", |m| m.content.as_str())
}

fn last<'a>(row: &'a Row, role: &str) -> &'a str {
    row.messages.iter().rev().find(|m| m.role == role).map_or("", |m| m.content.as_str())
}

fn seed_row(row: &Row) -> Option<usize> {
    row.metadata.as_ref()?.get("seedRow")?.as_u64().map(|n| n as usize)
}

/// `metadata.flags`: names a row carries from elsewhere (curation gates).
fn metadata_flags(row: &Row) -> Vec<String> {
    let Some(Value::Array(items)) = row.metadata.as_ref().and_then(|m| m.get("flags")) else { return Vec::new() };
    items.iter().filter_map(|v| v.as_str().map(String::from)).collect()
}

impl Lengths {
    /// Min, median, mean, 95th percentile and max of `values` (all 0 when there are none).
    pub fn of(values: Vec<usize>) -> Lengths {
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else { return Lengths::default() };
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let mean = round3(sorted.iter().sum::<usize>() as f64 / sorted.len() as f64);
        Lengths { min, median: at(0.5), mean, p95: at(0.95), max, values }
    }
}

fn split_stats(
    groups: &[String],
    rows: &[(usize, usize, Row)],
    request_lens: &[usize],
    answer_lens: &[usize],
) -> Vec<SplitStats> {
    groups
        .iter()
        .enumerate()
        .map(|(g, name)| {
            let members: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].0 == g).collect();
            SplitStats {
                name: name.clone(),
                rows: members.len(),
                request: Lengths::of(members.iter().map(|&i| request_lens[i]).collect()),
                answer: Lengths::of(members.iter().map(|&i| answer_lens[i]).collect()),
            }
        })
        .collect()
}

fn seed_coverage(seed_of: &[Option<usize>]) -> Option<SeedCoverage> {
    let mut per_seed: BTreeMap<usize, usize> = BTreeMap::new();
    for seed in seed_of.iter().flatten() {
        *per_seed.entry(*seed).or_default() += 1;
    }
    if per_seed.is_empty() {
        return None;
    }
    let mut histogram = BTreeMap::new();
    for n in per_seed.values() {
        *histogram.entry(*n).or_default() += 1;
    }
    let total: usize = per_seed.values().sum();
    Some(SeedCoverage {
        seeds: per_seed.len(),
        min: per_seed.values().copied().min().unwrap_or(0),
        max: per_seed.values().copied().max().unwrap_or(0),
        mean: round3(total as f64 / per_seed.len() as f64),
        histogram,
    })
}

pub(super) fn flag_counts(rows: &[ReportRow]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for flag in rows.iter().flat_map(|r| &r.flags) {
        *counts.entry(flag.clone()).or_default() += 1;
    }
    counts
}

fn funnel(run: &SynthesisManifest) -> Vec<FunnelStep> {
    let c = &run.counts;
    let step = |label: String, rows: usize| FunnelStep { label, rows };
    let mut steps = vec![match c.candidates {
        Some(n) => step("candidates".into(), n),
        None => step("seed rows".into(), c.seed_rows),
    }];
    steps.extend(c.dropped_by.iter().map(|(reason, n)| step(format!("dropped: {reason}"), *n)));
    steps.push(step("published".into(), c.rows));
    steps
}

fn run_summary(run: &SynthesisManifest) -> RunSummary {
    RunSummary {
        synth_version: run.synth_version.clone(),
        recipe_file: run.recipe_file.clone(),
        seed_dataset: run.seed_dataset.id.clone(),
        model: run.model.name.clone(),
        model_files: run.model.files.clone(),
        device: run.device.clone(),
        inference_seed: run.inference_seed,
        wall_seconds: run.wall_seconds,
        generated_tokens: run.tokens.generated,
        tokens_per_second: run.tokens_per_second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(request: &str, answer: &str, seed: usize) -> Row {
        let metadata = serde_json::json!({"seedRow": seed}).as_object().cloned();
        Row { messages: vec![Message::new("user", request), Message::new("assistant", answer)], metadata }
    }

    #[test]
    fn figures_of_a_small_dataset() {
        let groups = vec!["train".to_string(), "test".to_string()];
        let rows = vec![
            (0, 0, row("How do I bake a loaf of bread at home?", "Knead, proof and bake it hot for forty minutes.", 0)),
            (0, 1, row("How do I bake a loaf of bread at home quickly?", "Use a no-knead recipe and a hot pot.", 0)),
            (1, 0, row("Name three moons of Jupiter", "Sorry", 1)),
        ];
        let seeds = vec![row("How should I bake bread?", "", 0), row("Which planets have rings?", "", 0)];
        let e = assemble(&Measure::Words, &groups, rows, &seeds);
        let s = &e.stats;
        assert_eq!(s.rows, 3);
        assert_eq!((s.splits[0].rows, s.splits[1].rows), (2, 1));
        assert_eq!((s.splits[0].request.min, s.splits[0].request.max), (10, 11));
        assert_eq!(s.splits[1].answer.values, [1]);
        let seeds = s.rows_per_seed.as_ref().unwrap();
        assert_eq!(seeds.histogram, BTreeMap::from([(1, 1), (2, 1)]));
        assert_eq!(s.diversity.clusters, [["train#0", "train#1"]]);
        assert_eq!(s.flags, BTreeMap::from([("off-topic".to_string(), 1), ("very-short".to_string(), 1)]));
        assert_eq!(e.rows[2].flags, ["very-short", "off-topic"]);
        assert_eq!(e.seeds.len(), 2);
    }
}

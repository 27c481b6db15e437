//! Publishing a finished dataset: rows shuffled into splits, split files, the manifest with its
//! typed details, and the atomic publish (a complete dataset appears under its id, or nothing
//! does).

pub mod splits;

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::recipe::{Distribution, Recipe};
use crate::store::artifacts::{DroppedCandidate, SynthesisManifest, DROPPED_FILE};
use crate::store::{Manifest, Row, Store, SPLITS};

/// Where a dataset goes: its id and kind in a store, and whether it may replace one.
pub struct Destination<'a> {
    pub store: &'a Store,
    pub id: &'a str,
    pub kind: &'a str,
    pub overwrite: bool,
}

impl Destination<'_> {
    /// Splits `rows` by `distribution` with `seed` (rows of one seed row stay together: see
    /// [`splits`]) and publishes them with a manifest holding `details`. Returns the dataset's
    /// directory and the split sizes (train, validation, test).
    pub fn publish_shuffled(
        &self,
        rows: Vec<Row>,
        distribution: Distribution,
        seed: u64,
        details: &impl Serialize,
    ) -> Result<(PathBuf, [usize; 3])> {
        let fractions = [distribution.train, distribution.validation, distribution.test];
        let plan = splits::plan_splits(&rows, fractions, seed, None);
        Ok((self.publish_planned(rows, &plan, details)?, plan.record.sizes))
    }

    /// Publishes `rows` cut as `plan` says (from [`splits::plan_splits`]), with a manifest holding `details`.
    pub fn publish_planned(
        &self,
        rows: Vec<Row>,
        plan: &splits::SplitPlan,
        details: &impl Serialize,
    ) -> Result<PathBuf> {
        self.publish_splits(&cut(&rows, plan), details)
    }

    /// A synthesis run's rows (in candidate order) into splits with the recipe's seed and
    /// distribution, rows of one seed row together, near duplicates across splits counted in
    /// the manifest's `splits`. `synth run` and `synth datasets merge` both publish through
    /// here, so a merge is a single run's bytes.
    pub fn publish_run(
        &self,
        rows: Vec<Row>,
        dropped: &[DroppedCandidate],
        recipe: &Recipe,
        mut details: SynthesisManifest,
    ) -> Result<(PathBuf, [usize; 3])> {
        let d = recipe.synthesis.distribution;
        let threshold = recipe.synthesis.curation.near_duplicate_threshold;
        let plan = splits::plan_splits(&rows, [d.train, d.validation, d.test], recipe.inference.seed, Some(threshold));
        details.split_groups = Some(plan.record.clone());
        Ok((self.publish_with_dropped(&cut(&rows, &plan), dropped, details)?, plan.record.sizes))
    }

    /// Publishes the given splits, in order, with a manifest holding `details`.
    pub fn publish_splits(&self, splits: &[(&str, Vec<Row>)], details: &impl Serialize) -> Result<PathBuf> {
        self.publish_files(splits, &[], details)
    }

    /// A synthesis dataset's splits, with its dropped candidates beside them (when there are
    /// any, named in the manifest's `droppedFile`).
    pub fn publish_with_dropped(
        &self,
        splits: &[(&str, Vec<Row>)],
        dropped: &[DroppedCandidate],
        mut details: SynthesisManifest,
    ) -> Result<PathBuf> {
        details.dropped_file = (!dropped.is_empty()).then(|| DROPPED_FILE.to_string());
        self.publish_files(splits, dropped, &details)
    }

    fn publish_files(
        &self,
        splits: &[(&str, Vec<Row>)],
        dropped: &[DroppedCandidate],
        details: &impl Serialize,
    ) -> Result<PathBuf> {
        let mut pending = self.store.begin_dataset(self.id)?;
        let mut manifest = Manifest::new(self.id, self.kind).with_details(details)?;
        for (name, rows) in splits {
            pending.write_split(name, rows)?;
            manifest.add_split(name, rows.len());
        }
        if !dropped.is_empty() {
            pending.write_lines(DROPPED_FILE, dropped)?;
        }
        pending.write_manifest(&manifest)?;
        pending.publish(self.overwrite)
    }
}

/// `rows` cut into the named splits of `plan`.
fn cut<'p>(rows: &[Row], plan: &splits::SplitPlan) -> Vec<(&'p str, Vec<Row>)> {
    SPLITS
        .iter()
        .zip(&plan.splits)
        .map(|(name, indices)| (*name, indices.iter().map(|&r| rows[r].clone()).collect()))
        .collect()
}

//! Publishing a finished dataset: rows shuffled into splits, split files, the manifest with its
//! typed details, and the atomic publish (a complete dataset appears under its id, or nothing
//! does).

pub mod splits;

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::recipe::Distribution;
use crate::store::{Manifest, Row, Store, SPLITS};

/// Where a dataset goes: its id and kind in a store, and whether it may replace one.
pub struct Destination<'a> {
    pub store: &'a Store,
    pub id: &'a str,
    pub kind: &'a str,
    pub overwrite: bool,
}

impl Destination<'_> {
    /// Shuffles `rows` with `seed`, cuts them by `distribution` (largest remainder) and
    /// publishes them with a manifest holding `details`. Returns the dataset's directory and
    /// the split sizes (train, validation, test).
    pub fn publish_shuffled(
        &self,
        rows: Vec<Row>,
        distribution: Distribution,
        seed: u64,
        details: &impl Serialize,
    ) -> Result<(PathBuf, [usize; 3])> {
        let fractions = [distribution.train, distribution.validation, distribution.test];
        let assignment = splits::assign_splits(rows.len(), fractions, seed);
        let mut named = Vec::with_capacity(SPLITS.len());
        let mut sizes = [0; 3];
        for (i, (name, indices)) in SPLITS.iter().zip(&assignment).enumerate() {
            named.push((*name, indices.iter().map(|&r| rows[r].clone()).collect::<Vec<Row>>()));
            sizes[i] = indices.len();
        }
        Ok((self.publish_splits(&named, details)?, sizes))
    }

    /// Publishes the given splits, in order, with a manifest holding `details`.
    pub fn publish_splits(&self, splits: &[(&str, Vec<Row>)], details: &impl Serialize) -> Result<PathBuf> {
        let mut pending = self.store.begin_dataset(self.id)?;
        let mut manifest = Manifest::new(self.id, self.kind).with_details(details)?;
        for (name, rows) in splits {
            pending.write_split(name, rows)?;
            manifest.add_split(name, rows.len());
        }
        pending.write_manifest(&manifest)?;
        pending.publish(self.overwrite)
    }
}

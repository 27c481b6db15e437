//! Writing a finished run: rows shuffled into splits, split files, the manifest, and the
//! atomic publish (a complete dataset appears under its id, or nothing does).

pub mod splits;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::recipe::Distribution;
use crate::store::{Manifest, Row, Store, SPLITS};

/// Shuffles `rows` with `seed`, cuts them by `distribution` (largest remainder) and publishes
/// them as dataset `id` with a manifest holding `extra`. Returns the dataset's directory and
/// the split sizes.
pub fn publish(store: &Store, id: &str, rows: Vec<Row>, distribution: Distribution, seed: u64, kind: &str, extra: Map<String, Value>, overwrite: bool) -> Result<(PathBuf, [usize; 3])> {
    let fractions = [distribution.train, distribution.validation, distribution.test];
    let assignment = splits::assign_splits(rows.len(), fractions, seed);
    let mut pending = store.begin_dataset(id)?;
    let mut manifest = Manifest::new(id, kind);
    manifest.extra = extra;
    let mut sizes = [0; 3];
    for (i, (name, indices)) in SPLITS.iter().zip(&assignment).enumerate() {
        let split: Vec<Row> = indices.iter().map(|&r| rows[r].clone()).collect();
        pending.write_split(name, &split)?;
        manifest.add_split(name, split.len());
        sizes[i] = split.len();
    }
    pending.write_manifest(&manifest)?;
    let path = pending.publish(overwrite)?;
    Ok((path, sizes))
}

/// Hex sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("reading `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

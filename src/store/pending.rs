//! A dataset being written: split files and a manifest go into a [`StagingDir`] beside
//! `datasets/<id>`, then one rename makes the whole dataset visible. Dropping it unpublished
//! removes the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::atomic::StagingDir;
use super::jsonl;
use super::manifest::{split_file, Manifest, SplitInfo, MANIFEST_FILE, SPLITS};
use super::row::Row;
use crate::error::SynthError;

#[derive(Debug)]
pub struct PendingDataset {
    id: String,
    staging: StagingDir,
    written: Vec<SplitInfo>,
    manifest_written: bool,
}

impl PendingDataset {
    /// Creates the temporary directory; `datasets_dir` exists and `id` is valid.
    pub(crate) fn create(id: &str, datasets_dir: &Path) -> Result<PendingDataset> {
        Ok(PendingDataset {
            id: id.to_string(),
            staging: StagingDir::create(datasets_dir, id)?,
            written: Vec::new(),
            manifest_written: false,
        })
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Writes split `name` (`train`, `validation` or `test`) as `<name>.jsonl`, replacing an
    /// earlier write of it; returns the bytes written.
    pub fn write_split(&mut self, name: &str, rows: &[Row]) -> Result<usize> {
        if !SPLITS.contains(&name) {
            return Err(SynthError::invalid(format!(
                "unknown split `{name}`, expected `train`, `validation` or `test`"
            ))
            .into());
        }
        let bytes = self.staging.write(&split_file(name), |out| jsonl::write_rows(out, rows))?;
        let info = SplitInfo { name: name.to_string(), file: split_file(name), rows: rows.len() };
        match self.written.iter_mut().find(|s| s.name == name) {
            Some(existing) => *existing = info,
            None => self.written.push(info),
        }
        Ok(bytes)
    }

    /// Writes a file of JSON lines beside the splits (such as [`super::artifacts::DROPPED_FILE`]);
    /// returns the bytes written.
    pub fn write_lines<T: serde::Serialize>(&mut self, file: &str, items: &[T]) -> Result<usize> {
        if SPLITS.iter().any(|s| split_file(s) == file) || file == MANIFEST_FILE {
            return Err(SynthError::failed(format!("`{file}` is a split or the manifest, not a side file")).into());
        }
        self.staging.write(file, |out| {
            let mut bytes = 0;
            for item in items {
                let mut line = serde_json::to_vec(item)?;
                line.push(b'\n');
                out.write_all(&line)?;
                bytes += line.len();
            }
            Ok(bytes)
        })
    }

    /// Writes `manifest.json`. The manifest must describe exactly the splits written so far.
    pub fn write_manifest(&mut self, manifest: &Manifest) -> Result<()> {
        if manifest.id != self.id {
            return Err(SynthError::failed(format!(
                "manifest id `{}` does not match dataset `{}`",
                manifest.id, self.id
            ))
            .into());
        }
        for split in &manifest.splits {
            if !self.written.contains(split) {
                return Err(SynthError::failed(format!(
                    "manifest of `{}` lists split `{}` ({} rows in `{}`), which was not written so",
                    self.id, split.name, split.rows, split.file
                ))
                .into());
            }
        }
        if let Some(missing) = self.written.iter().find(|w| manifest.split(&w.name).is_none()) {
            return Err(SynthError::failed(format!(
                "manifest of `{}` leaves out written split `{}`",
                self.id, missing.name
            ))
            .into());
        }
        self.staging.write(MANIFEST_FILE, |out| {
            serde_json::to_writer_pretty(&mut *out, manifest)?;
            out.write_all(b"\n")
        })?;
        self.manifest_written = true;
        Ok(())
    }

    /// Moves the dataset into `datasets/<id>` and returns that path. An existing dataset is an
    /// error unless `overwrite`; then it is moved aside, replaced, and deleted.
    pub fn publish(self, overwrite: bool) -> Result<PathBuf> {
        if !self.manifest_written {
            return Err(SynthError::failed(format!(
                "dataset `{}` has no manifest yet, it cannot be published",
                self.id
            ))
            .into());
        }
        let id = self.id;
        self.staging.publish(overwrite, || already_exists(&id))
    }
}

/// The error for publishing or importing over an existing dataset.
pub(crate) fn already_exists(id: &str) -> anyhow::Error {
    SynthError::invalid(format!("dataset `{id}` already exists"))
        .hint("pass `--overwrite` to replace it, or choose another id")
        .into()
}

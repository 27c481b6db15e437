//! A dataset being written: split files and a manifest go into `datasets/.tmp-<id>-<pid>-<n>/`,
//! then one rename makes the whole dataset visible. Dropping it unpublished removes the directory.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use super::manifest::{split_file, Manifest, SplitInfo, MANIFEST_FILE, SPLITS};
use super::{already_exists, jsonl, Row};
use crate::error::SynthError;

/// Distinguishes temporary directories made by one process.
static NEXT: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct PendingDataset {
    id: String,
    datasets_dir: PathBuf,
    temp: PathBuf,
    written: Vec<SplitInfo>,
    manifest_written: bool,
    published: bool,
}

impl PendingDataset {
    /// Creates the temporary directory; `datasets_dir` exists and `id` is valid.
    pub(crate) fn create(id: &str, datasets_dir: PathBuf) -> Result<PendingDataset> {
        let temp = hidden_dir(&datasets_dir, "tmp", id, |path| match std::fs::create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        })
        .map_err(|e| SynthError::failed(format!("cannot create a directory in `{}`: {e}", datasets_dir.display())))?;
        Ok(PendingDataset {
            id: id.to_string(),
            datasets_dir,
            temp,
            written: Vec::new(),
            manifest_written: false,
            published: false,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Writes split `name` (`train`, `validation` or `test`) as `<name>.jsonl`, replacing an
    /// earlier write of it; returns the bytes written.
    pub fn write_split(&mut self, name: &str, rows: &[Row]) -> Result<usize> {
        if !SPLITS.contains(&name) {
            return Err(SynthError::invalid(format!("unknown split `{name}`, expected `train`, `validation` or `test`")).into());
        }
        let path = self.temp.join(split_file(name));
        let bytes = write_file(&path, |out| jsonl::write_rows(out, rows))?;
        let info = SplitInfo { name: name.to_string(), file: split_file(name), rows: rows.len() };
        match self.written.iter_mut().find(|s| s.name == name) {
            Some(existing) => *existing = info,
            None => self.written.push(info),
        }
        Ok(bytes)
    }

    /// Writes `manifest.json`. The manifest must describe exactly the splits written so far.
    pub fn write_manifest(&mut self, manifest: &Manifest) -> Result<()> {
        if manifest.id != self.id {
            return Err(SynthError::failed(format!("manifest id `{}` does not match dataset `{}`", manifest.id, self.id)).into());
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
            return Err(
                SynthError::failed(format!("manifest of `{}` leaves out written split `{}`", self.id, missing.name)).into()
            );
        }
        let path = self.temp.join(MANIFEST_FILE);
        write_file(&path, |out| {
            serde_json::to_writer_pretty(&mut *out, manifest)?;
            out.write_all(b"\n")?;
            Ok(0)
        })?;
        self.manifest_written = true;
        Ok(())
    }

    /// Moves the dataset into `datasets/<id>` and returns that path. An existing dataset is an
    /// error unless `overwrite`; then it is moved aside, replaced, and deleted.
    pub fn publish(mut self, overwrite: bool) -> Result<PathBuf> {
        if !self.manifest_written {
            return Err(SynthError::failed(format!("dataset `{}` has no manifest yet, it cannot be published", self.id)).into());
        }
        let target = self.datasets_dir.join(&self.id);
        let exists = target.symlink_metadata().is_ok();
        if exists && !overwrite {
            return Err(already_exists(&self.id));
        }

        let old = if exists {
            let old = hidden_dir(&self.datasets_dir, "old", &self.id, |path| {
                if path.symlink_metadata().is_ok() {
                    return Ok(false);
                }
                std::fs::rename(&target, path).map(|()| true)
            })
            .map_err(|e| SynthError::failed(format!("cannot move `{}` aside to replace it: {e}", target.display())))?;
            Some(old)
        } else {
            None
        };

        if let Err(e) = std::fs::rename(&self.temp, &target) {
            if let Some(old) = &old {
                let _ = std::fs::rename(old, &target);
            }
            if !exists && matches!(e.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty) {
                return Err(already_exists(&self.id));
            }
            return Err(
                SynthError::failed(format!("cannot move `{}` to `{}`: {e}", self.temp.display(), target.display())).into()
            );
        }
        self.published = true;
        if let Some(old) = old {
            // The new dataset is in place; a leftover hidden directory is harmless.
            let _ = std::fs::remove_dir_all(old);
        }
        if let Ok(dir) = File::open(&self.datasets_dir) {
            let _ = dir.sync_all();
        }
        Ok(target)
    }
}

impl Drop for PendingDataset {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

/// Picks `<dir>/.<tag>-<id>-<pid>-<n>` for the first `n` where `make` succeeds (returns true).
fn hidden_dir(dir: &Path, tag: &str, id: &str, mut make: impl FnMut(&Path) -> io::Result<bool>) -> io::Result<PathBuf> {
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{tag}-{id}-{pid}-{n}"));
        if make(&path)? {
            return Ok(path);
        }
    }
}

/// Creates `path`, lets `fill` write it, flushes and syncs; returns what `fill` returned.
fn write_file(path: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<usize>) -> Result<usize> {
    let fail = |e: io::Error| SynthError::failed(format!("cannot write `{}`: {e}", path.display()));
    let file = File::create(path).map_err(fail)?;
    let mut out = BufWriter::new(file);
    let n = fill(&mut out).map_err(fail)?;
    let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
    file.sync_all().map_err(fail)?;
    Ok(n)
}

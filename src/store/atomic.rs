//! Writing so that readers see all or nothing: the one "write to a temporary place, then
//! rename" helper behind datasets, eval runs and `synth generate --output`.
//!
//! - [`StagingDir`]: a hidden `.tmp-<name>-<pid>-<n>` directory beside its target, filled, then
//!   renamed into place by [`StagingDir::publish`]; dropped unpublished, it is removed.
//! - [`write_file`]: a whole file, through a temporary file beside it, renamed over the target.
//!   A target that is not a regular file (a device, a FIFO, `/dev/stdout`) is written directly,
//!   never replaced.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use crate::error::SynthError;

/// Distinguishes temporary paths made by one process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A directory being written, invisible under its final name until published.
#[derive(Debug)]
pub struct StagingDir {
    parent: PathBuf,
    name: String,
    temp: PathBuf,
    published: bool,
}

impl StagingDir {
    /// Creates `<parent>/.tmp-<name>-<pid>-<n>`; `parent` exists.
    pub fn create(parent: &Path, name: &str) -> Result<StagingDir> {
        let temp = hidden_path(parent, "tmp", name, |path| match std::fs::create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        })
        .map_err(|e| SynthError::failed(format!("cannot create a directory in `{}`: {e}", parent.display())))?;
        Ok(StagingDir { parent: parent.to_path_buf(), name: name.to_string(), temp, published: false })
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Creates file `name` in the directory, lets `fill` write it, flushes and syncs; returns
    /// what `fill` returned.
    pub fn write<T>(&self, name: &str, fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<T>) -> Result<T> {
        write_synced(&self.temp.join(name), fill)
    }

    /// Moves the directory to `<parent>/<name>` and returns that path. An existing target is
    /// `exists()` unless `overwrite`; then it is moved aside, replaced, and deleted.
    pub fn publish(mut self, overwrite: bool, exists: impl Fn() -> anyhow::Error) -> Result<PathBuf> {
        let target = self.parent.join(&self.name);
        let present = target.symlink_metadata().is_ok();
        if present && !overwrite {
            return Err(exists());
        }
        let old = if present { Some(self.move_aside(&target)?) } else { None };
        if let Err(e) = std::fs::rename(&self.temp, &target) {
            if let Some(old) = &old {
                let _ = std::fs::rename(old, &target);
            }
            if !present && matches!(e.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty) {
                return Err(exists());
            }
            return Err(SynthError::failed(format!(
                "cannot move `{}` to `{}`: {e}",
                self.temp.display(),
                target.display()
            ))
            .into());
        }
        self.published = true;
        if let Some(old) = old {
            // The new directory is in place; a leftover hidden directory is harmless.
            let _ = std::fs::remove_dir_all(old);
        }
        if let Ok(dir) = File::open(&self.parent) {
            let _ = dir.sync_all();
        }
        Ok(target)
    }

    fn move_aside(&self, target: &Path) -> Result<PathBuf> {
        let old = hidden_path(&self.parent, "old", &self.name, |path| {
            if path.symlink_metadata().is_ok() {
                return Ok(false);
            }
            std::fs::rename(target, path).map(|()| true)
        })
        .map_err(|e| SynthError::failed(format!("cannot move `{}` aside to replace it: {e}", target.display())))?;
        Ok(old)
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

/// Removes directory `<parent>/<name>` so that readers see it whole or gone: it is first renamed
/// to a hidden `.old-*` directory beside it, then deleted. Returns the error of the rename; a
/// hidden leftover of a failed delete is reported too (`synth datasets clean` removes it).
pub fn remove_dir(parent: &Path, name: &str) -> Result<()> {
    let target = parent.join(name);
    let old = hidden_path(parent, "old", name, |path| {
        if path.symlink_metadata().is_ok() {
            return Ok(false);
        }
        std::fs::rename(&target, path).map(|()| true)
    })
    .map_err(|e| SynthError::failed(format!("cannot move `{}` aside to delete it: {e}", target.display())))?;
    std::fs::remove_dir_all(&old).map_err(|e| {
        SynthError::failed(format!(
            "`{}` is gone, but deleting its files in `{}` failed: {e}",
            target.display(),
            old.display()
        ))
        .hint("run `synth datasets clean` to remove leftover directories")
    })?;
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Checks, before any work, that [`write_file`] could write `path`: it does not exist (or
/// `overwrite`), it is not a directory, and its directory takes new files. A device or FIFO
/// is accepted as it is: it is written in place.
pub fn check_writable(path: &Path, overwrite: bool) -> Result<()> {
    if let Ok(meta) = path.metadata() {
        if !overwrite {
            return Err(exists(path));
        }
        if !meta.is_file() && !meta.is_dir() {
            // A device or FIFO is written in place at the end; opening one now could block
            // (a FIFO waits for a reader) or signal its reader an early end.
            return Ok(());
        }
        if meta.is_dir() {
            return Err(SynthError::invalid(format!("`{}` is a directory", path.display()))
                .hint("give `--output` a file path")
                .into());
        }
    }
    let dir = parent_dir(path);
    let probe =
        hidden_path(dir, "probe", &file_name(path)?, |p| match File::options().write(true).create_new(true).open(p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        })
        .map_err(|e| {
            SynthError::failed(format!("cannot write in `{}`: {e}", dir.display()))
                .hint("choose an `--output` in a writable directory")
        })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Writes a whole file or nothing: a temporary file beside `path`, renamed into place. An
/// existing `path` is an error unless `overwrite`. A device or FIFO is written directly.
pub fn write_file(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    if let Ok(meta) = path.metadata() {
        if !overwrite {
            return Err(exists(path));
        }
        if !meta.is_file() {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| SynthError::failed(format!("cannot write `{}`: {e}", path.display())))?;
            return out
                .write_all(bytes)
                .map_err(|e| SynthError::failed(format!("cannot write `{}`: {e}", path.display())).into());
        }
    }
    let temp = hidden_path(parent_dir(path), "tmp", &file_name(path)?, |p| Ok(p.symlink_metadata().is_err()))
        .map_err(|e| SynthError::failed(format!("cannot write beside `{}`: {e}", path.display())))?;
    if let Err(e) = write_synced(&temp, |out| out.write_all(bytes)) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    if path.symlink_metadata().is_ok() && !overwrite {
        let _ = std::fs::remove_file(&temp);
        return Err(exists(path));
    }
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        SynthError::failed(format!("cannot move the output into `{}`: {e}", path.display())).into()
    })
}

fn exists(path: &Path) -> anyhow::Error {
    SynthError::invalid(format!("`{}` already exists", path.display()))
        .hint("choose another `--output`, or pass `--overwrite`")
        .into()
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn file_name(path: &Path) -> Result<String> {
    match path.file_name() {
        Some(name) => Ok(name.to_string_lossy().into_owned()),
        None => Err(SynthError::invalid(format!("`{}` has no file name", path.display())).into()),
    }
}

/// Picks `<dir>/.<tag>-<name>-<pid>-<n>` for the first `n` where `make` succeeds (returns true).
fn hidden_path(
    dir: &Path,
    tag: &str,
    name: &str,
    mut make: impl FnMut(&Path) -> io::Result<bool>,
) -> io::Result<PathBuf> {
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{tag}-{name}-{pid}-{n}"));
        if make(&path)? {
            return Ok(path);
        }
    }
}

/// Creates `path`, lets `fill` write it, flushes and syncs; returns what `fill` returned.
fn write_synced<T>(path: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<T>) -> Result<T> {
    let fail = |e: io::Error| SynthError::failed(format!("cannot write `{}`: {e}", path.display()));
    let file = File::create(path).map_err(fail)?;
    let mut out = BufWriter::new(file);
    let n = fill(&mut out).map_err(fail)?;
    let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
    file.sync_all().map_err(fail)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_dir_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let exists = || anyhow::anyhow!("exists");
        {
            let staging = StagingDir::create(dir.path(), "a").unwrap();
            staging.write("f", |out| out.write_all(b"x")).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "dropped unpublished, nothing is left");
        let staging = StagingDir::create(dir.path(), "a").unwrap();
        staging.write("f", |out| out.write_all(b"one")).unwrap();
        let target = staging.publish(false, exists).unwrap();
        assert_eq!(std::fs::read(target.join("f")).unwrap(), b"one");
        let staging = StagingDir::create(dir.path(), "a").unwrap();
        staging.write("f", |out| out.write_all(b"two")).unwrap();
        assert!(staging.publish(false, exists).is_err());
        let staging = StagingDir::create(dir.path(), "a").unwrap();
        staging.write("f", |out| out.write_all(b"two")).unwrap();
        staging.publish(true, exists).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_file_replaces_only_with_overwrite_and_writes_fifos_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        write_file(&path, b"1", false).unwrap();
        assert!(write_file(&path, b"2", false).is_err());
        write_file(&path, b"2", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2");
        assert!(check_writable(&path, false).is_err());
        check_writable(&path, true).unwrap();
        let null = Path::new("/dev/null");
        check_writable(null, true).unwrap();
        write_file(null, b"x", true).unwrap();
        assert!(!null.metadata().unwrap().is_file(), "the device is still a device");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary files left");
    }
}

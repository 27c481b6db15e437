//! The dataset store rooted at a synth home: finding, listing and reading datasets, and
//! starting new ones (see the module docs of [`crate::store`] for the layout).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::atomic;
use super::id::validate_dataset_id;
use super::jsonl::{JsonlReader, LineError};
use super::manifest::{self, Manifest, SplitInfo, MANIFEST_FILE};
use super::pending::PendingDataset;
use super::row::Row;
use crate::error::SynthError;

const DATASETS_DIR: &str = "datasets";

const LIST_HINT: &str = "run `synth datasets list` to see stored datasets, or `synth datasets import FILE --id ID`";

/// The dataset store rooted at a synth home directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One line of `synth datasets list`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    pub id: String,
    pub kind: String,
    pub created_at: String,
    /// In reading order (train, validation, test).
    pub splits: Vec<SplitInfo>,
    /// Set when the manifest is missing or unreadable; the other fields are then empty.
    pub problem: Option<String>,
}

impl DatasetSummary {
    pub fn rows(&self) -> usize {
        self.splits.iter().map(|s| s.rows).sum()
    }
}

impl Store {
    /// The store at the default home (see the module docs).
    pub fn open_default() -> Result<Store> {
        Ok(Store::at(default_root(|name| std::env::var_os(name))?))
    }

    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn datasets_dir(&self) -> PathBuf {
        self.root.join(DATASETS_DIR)
    }

    /// Where dataset `id` lives; fails on an invalid id before anything touches the disk.
    pub fn dataset_dir(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        Ok(self.datasets_dir().join(id))
    }

    pub fn exists(&self, id: &str) -> Result<bool> {
        Ok(self.dataset_dir(id)?.symlink_metadata().is_ok())
    }

    /// Creates `<home>/datasets` if needed.
    pub(crate) fn ensure_datasets_dir(&self) -> Result<PathBuf> {
        let dir = self.datasets_dir();
        std::fs::create_dir_all(&dir).map_err(|e| {
            SynthError::failed(format!("cannot create `{}`: {e}", dir.display()))
                .hint("set `SYNTH_HOME` to a writable directory")
        })?;
        Ok(dir)
    }

    /// Reads the manifest of dataset `id`; a missing dataset is a not-found error.
    pub fn manifest(&self, id: &str) -> Result<Manifest> {
        let dir = self.dataset_dir(id)?;
        if !dir.is_dir() {
            return Err(not_found(self, id));
        }
        read_manifest(&dir).map_err(|message| {
            SynthError::failed(message)
                .hint(format!("remove `{}`, or import the dataset again with `--overwrite`", dir.display()))
                .into()
        })
    }

    /// Every stored dataset, sorted by id. Temporary directories and stray files are skipped; a
    /// dataset directory with a broken manifest is listed with its [`DatasetSummary::problem`].
    pub fn list(&self) -> Result<Vec<DatasetSummary>> {
        let dir = self.datasets_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SynthError::failed(format!("cannot read `{}`: {e}", dir.display())).into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| SynthError::failed(format!("cannot read `{}`: {e}", dir.display())))?;
            let Ok(id) = entry.file_name().into_string() else { continue };
            if validate_dataset_id(&id).is_err() || !entry.path().is_dir() {
                continue;
            }
            out.push(match read_manifest(&entry.path()) {
                Ok(m) => DatasetSummary {
                    id,
                    kind: m.kind.clone(),
                    created_at: m.created_at.clone(),
                    splits: m.splits_in_order().into_iter().cloned().collect(),
                    problem: None,
                },
                Err(problem) => DatasetSummary {
                    id,
                    kind: String::new(),
                    created_at: String::new(),
                    splits: Vec::new(),
                    problem: Some(problem),
                },
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// All rows of dataset `id`: train, then validation, then test.
    pub fn load_rows(&self, id: &str) -> Result<Vec<Row>> {
        let manifest = self.manifest(id)?;
        let dir = self.dataset_dir(id)?;
        let mut rows = Vec::with_capacity(manifest.total_rows());
        for split in manifest.splits_in_order() {
            rows.extend(read_split_file(&dir, split, None)?);
        }
        Ok(rows)
    }

    /// The candidates a run dropped ([`super::artifacts::DROPPED_FILE`]), in candidate order;
    /// none when the dataset has no such file.
    pub fn load_dropped(&self, id: &str) -> Result<Vec<super::artifacts::DroppedCandidate>> {
        let path = self.dataset_dir(id)?.join(super::artifacts::DROPPED_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| {
                    SynthError::invalid(format!("{}:{}: not a dropped candidate: {e}", path.display(), i + 1))
                        .hint("the file is written by `synth run`; delete it to go without the dropped candidates")
                        .into()
                })
            })
            .collect()
    }

    /// The rows of one split, at most `limit` of them.
    pub fn read_split(&self, id: &str, split: &str, limit: Option<usize>) -> Result<Vec<Row>> {
        let manifest = self.manifest(id)?;
        let Some(info) = manifest.split(split) else {
            let names: Vec<String> = manifest.splits_in_order().iter().map(|s| format!("`{}`", s.name)).collect();
            return Err(SynthError::invalid(format!("dataset `{id}` has no split `{split}`"))
                .hint(format!("its splits are {}", names.join(", ")))
                .into());
        };
        read_split_file(&self.dataset_dir(id)?, info, limit)
    }

    /// Deletes dataset `id` atomically (see [`atomic::remove_dir`]) and returns where it was.
    /// Refused while a `synth run` holds the lock of `datasets/.run-<id>` (the journal directory
    /// of `generation::journal`): that run would publish over it.
    pub fn delete(&self, id: &str) -> Result<PathBuf> {
        let dir = self.dataset_dir(id)?;
        if !dir.is_dir() {
            return Err(not_found(self, id));
        }
        if run_lock_held(&self.datasets_dir().join(format!(".run-{id}")).join("lock")) {
            return Err(SynthError::invalid(format!("dataset `{id}` is being written by a running `synth run`"))
                .hint("wait for the run to finish (or stop it), then delete the dataset")
                .into());
        }
        atomic::remove_dir(&self.datasets_dir(), id)?;
        Ok(dir)
    }

    /// Starts writing dataset `id` into a hidden temporary directory.
    pub fn begin_dataset(&self, id: &str) -> Result<PendingDataset> {
        check_id(id)?;
        let datasets = self.ensure_datasets_dir()?;
        PendingDataset::create(id, &datasets)
    }

    /// The first of `<prefix>_1`, `<prefix>_2`, ... that no stored dataset uses.
    pub fn next_free_id(&self, prefix: &str) -> Result<String> {
        check_id(prefix)?;
        first_free(prefix, |id| self.exists(id))
    }
}

/// The first of `<prefix>_1`, `<prefix>_2`, ... that `taken` says is free: default ids of
/// datasets, interrupted runs and eval runs.
pub fn first_free(prefix: &str, taken: impl Fn(&str) -> Result<bool>) -> Result<String> {
    let mut n: u64 = 1;
    loop {
        let id = format!("{prefix}_{n}");
        if !taken(&id)? {
            return Ok(id);
        }
        n += 1;
    }
}

/// Whether a running process holds the lock file at `path`.
fn run_lock_held(path: &Path) -> bool {
    let Ok(lock) = File::open(path) else { return false };
    matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

fn not_found(store: &Store, id: &str) -> anyhow::Error {
    SynthError::not_found(format!("dataset `{id}` not found in `{}`", store.datasets_dir().display()))
        .hint(LIST_HINT)
        .into()
}

fn check_id(id: &str) -> Result<()> {
    validate_dataset_id(id).map_err(|rule| {
        SynthError::invalid(format!("invalid dataset id `{}`: {rule}", id.escape_debug()))
            .hint("use letters, digits, `_`, `-` and `.`, e.g. `my_seed`")
            .into()
    })
}

/// Reads `<dir>/manifest.json`; the error message names the file.
fn read_manifest(dir: &Path) -> std::result::Result<Manifest, String> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("`{}` is not a valid manifest: {e}", path.display()))?;
    if let Some(bad) = manifest.splits.iter().find(|s| !manifest::is_plain_file_name(&s.file)) {
        return Err(format!(
            "`{}` names split file `{}`, expected a file name such as `train.jsonl`",
            path.display(),
            bad.file
        ));
    }
    Ok(manifest)
}

fn read_split_file(dir: &Path, split: &SplitInfo, limit: Option<usize>) -> Result<Vec<Row>> {
    let path = dir.join(&split.file);
    let file = File::open(&path).map_err(|e| SynthError::failed(format!("cannot open `{}`: {e}", path.display())))?;
    let want = limit.unwrap_or(usize::MAX);
    let mut rows = Vec::with_capacity(split.rows.min(want));
    if want == 0 {
        return Ok(rows);
    }
    for (line, row) in JsonlReader::new(BufReader::new(file)) {
        match row {
            Ok((row, _)) => {
                rows.push(row);
                if rows.len() >= want {
                    break;
                }
            }
            Err(LineError::Io(e)) => {
                return Err(SynthError::failed(format!("cannot read `{}`: {e}", path.display())).into())
            }
            Err(LineError::Invalid(msg)) => {
                return Err(SynthError::failed(format!("{}:{line}: {msg}", path.display()))
                    .hint("the stored dataset is damaged; import or synthesize it again with `--overwrite`")
                    .into())
            }
        }
    }
    Ok(rows)
}

/// The default home, given a way to read environment variables.
fn default_root(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = set("SYNTH_HOME") {
        return Ok(home);
    }
    if let Some(data) = set("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return Ok(data.join("synth"));
    }
    if let Some(home) = set("HOME") {
        return Ok(home.join(".local").join("share").join("synth"));
    }
    Err(SynthError::failed("cannot find a directory for synth's data: neither `SYNTH_HOME` nor `HOME` is set")
        .hint("set `SYNTH_HOME` to a writable directory")
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn default_root_prefers_synth_home_then_xdg_then_home() {
        let all = [("SYNTH_HOME", "/s"), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(default_root(env(&all)).unwrap(), PathBuf::from("/s"));
        let no_synth = [("SYNTH_HOME", ""), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(default_root(env(&no_synth)).unwrap(), PathBuf::from("/x/synth"));
        let relative_xdg = [("XDG_DATA_HOME", "x"), ("HOME", "/h")];
        assert_eq!(default_root(env(&relative_xdg)).unwrap(), PathBuf::from("/h/.local/share/synth"));
        assert!(default_root(env(&[])).is_err());
    }
}

//! The run journal: `synth run` appends every finished generation to
//! `datasets/.run-<id>/journal.jsonl` as it completes, so a run that dies — a crash, a kill,
//! Ctrl-C — resumes where it stopped instead of starting over.
//!
//! ```text
//! {"journal":1,"fingerprint":"<sha256>","outputId":"<id>"}                        header
//! {"stage":1,"row":3,"attempt":0,"text":"…","finish":"stop","promptTokens":40,"generatedTokens":17}
//! {"stage":1,"row":3,"variant":2,"attempt":0,"text":"…",…}                          a later variant
//! ```
//! `variant` (the how-manieth pass over the seed rows, `--num-samples`) is written only when it
//! is not 0, so the entries of a run without `--num-samples` read as they always did.
//! The fingerprint covers everything a generation depends on (recipe, seed rows, model files,
//! synth version, device), so a journal is only ever replayed into the run that wrote it. Each
//! request's tokens depend only on its own seed, never on its batch, so replayed and fresh
//! generations make the same dataset an uninterrupted run makes, byte for byte.
//!
//! The directory also holds `lock`, locked for as long as a run writes to it: a second run
//! aimed at the same output id stops with an error instead of interleaving its rows.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::batch::Generated;
use crate::error::SynthError;
use crate::store::{Row, Store};

const JOURNAL_FILE: &str = "journal.jsonl";
const LOCK_FILE: &str = "lock";
const FORMAT: u64 = 1;

/// One candidate row: seed row `row`, on its `variant`-th pass. Ordered by variant, then row:
/// the order candidates are made and accepted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    pub variant: u32,
    pub row: usize,
}

/// Which generation an entry holds: stage (1 request, 2 answer, then follow-up turns), the
/// candidate (seed row and variant), attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub stage: u8,
    pub candidate: Candidate,
    pub attempt: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    stage: u8,
    row: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    variant: u32,
    attempt: u32,
    #[serde(flatten)]
    generated: Generated,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    journal: u64,
    fingerprint: String,
    output_id: String,
}

/// What a run's output depends on, hashed.
/// `prompts` names how later variants are prompted (`--diversity`), which changes their
/// generations without changing their keys.
pub fn fingerprint(
    recipe: &Value,
    seeds: &[Row],
    model_files: &Value,
    device: impl AsRef<str>,
    prompts: &str,
) -> Result<String> {
    let identity = json!({
        "variantPrompts": prompts,
        "synthVersion": env!("CARGO_PKG_VERSION"),
        "recipe": recipe,
        "seedRows": seeds,
        "modelFiles": model_files,
        "device": device.as_ref(),
    });
    Ok(format!("{:x}", Sha256::digest(serde_json::to_vec(&identity)?)))
}

/// An open, locked journal: the generations already done, and the file new ones go to.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    done: HashMap<Key, Generated>,
    /// Entries in the file: replayed plus recorded.
    entries: usize,
    /// Held for the journal's lifetime; the OS releases the lock when the process dies.
    _lock: File,
}

/// An interrupted run's journal, as `synth datasets list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptedRun {
    /// The output dataset id the run was writing.
    pub id: String,
    /// Finished generations the journal holds.
    pub generations: usize,
    /// A process holds the journal's lock right now.
    pub running: bool,
}

/// Why [`Journal::open`] could not take a directory.
enum Refusal {
    Locked,
    OtherRun,
}

impl Journal {
    /// The journal of output `id`: a new one, or the one a matching earlier run left (its entries
    /// are replayed; `restart` discards it). A journal of a different run, or one another process
    /// holds, is an error.
    pub fn open(store: &Store, id: &str, fingerprint: &str, restart: bool) -> Result<Journal> {
        let dir = journal_dir(store, id)?;
        match Self::try_open(&dir, id, fingerprint, restart)? {
            Ok(journal) => Ok(journal),
            Err(Refusal::Locked) => {
                Err(SynthError::invalid(format!("dataset `{id}` is being written by another `synth run` right now"))
                    .hint("wait for it to finish, or choose another `--output-id`")
                    .into())
            }
            Err(Refusal::OtherRun) => Err(SynthError::invalid(format!(
                "`{}` holds the journal of an interrupted run with a different recipe, seed dataset, model or device",
                dir.display()
            ))
            .hint("pass `--restart` to discard it, or choose another `--output-id`")
            .into()),
        }
    }

    /// For a run without `--output-id`: the output id of an interrupted run with this
    /// fingerprint that nobody is writing, if there is one; it is then resumed.
    pub fn find_resumable(store: &Store, prefix: &str, fingerprint: &str) -> Result<Option<String>> {
        for id in run_ids(store).into_iter().filter(|id| id.starts_with(prefix)) {
            let Ok(dir) = journal_dir(store, &id) else { continue };
            if is_symlink(&dir) {
                continue;
            }
            if read_header(&dir.join(JOURNAL_FILE)).is_ok_and(|h| h.fingerprint == fingerprint)
                && !store.exists(&id)?
                && !is_locked(&dir)
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The first of `<prefix>_1`, `<prefix>_2`, ... that neither a dataset nor a journal uses.
    pub fn next_free_id(store: &Store, prefix: &str) -> Result<String> {
        crate::store::first_free(prefix, |id| {
            Ok(store.exists(id)? || journal_dir(store, id)?.symlink_metadata().is_ok())
        })
    }

    /// Journals of runs whose dataset was never published, by output id.
    pub fn interrupted(store: &Store) -> Result<Vec<InterruptedRun>> {
        let mut runs = Vec::new();
        for id in run_ids(store) {
            let Ok(dir) = journal_dir(store, &id) else { continue };
            if store.exists(&id)? || !dir.is_dir() || is_symlink(&dir) {
                continue;
            }
            let generations = std::fs::read(dir.join(JOURNAL_FILE))
                .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_sub(1))
                .unwrap_or(0);
            runs.push(InterruptedRun { id, generations, running: is_locked(&dir) });
        }
        Ok(runs)
    }

    /// Removes the journals of interrupted runs nobody is writing, and temporary directories
    /// left by processes that are gone; returns what was removed.
    pub fn clean(store: &Store) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for run in Self::interrupted(store)?.into_iter().filter(|r| !r.running) {
            let dir = journal_dir(store, &run.id)?;
            std::fs::remove_dir_all(&dir)
                .map_err(|e| SynthError::failed(format!("cannot remove `{}`: {e}", dir.display())))?;
            removed.push(dir);
        }
        let Ok(entries) = std::fs::read_dir(store.datasets_dir()) else { return Ok(removed) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let temporary = name.starts_with(".tmp-") || name.starts_with(".old-");
            if temporary
                && !writer_alive(&name)
                && !is_symlink(&entry.path())
                && std::fs::remove_dir_all(entry.path()).is_ok()
            {
                removed.push(entry.path());
            }
        }
        removed.sort();
        Ok(removed)
    }

    fn try_open(
        dir: &Path,
        id: &str,
        fingerprint: &str,
        restart: bool,
    ) -> Result<std::result::Result<Journal, Refusal>> {
        let fail = |what: &str, e: io::Error| -> anyhow::Error {
            SynthError::failed(format!("cannot {what} `{}`: {e}", dir.display()))
                .hint("set `SYNTH_HOME` to a writable directory")
                .into()
        };
        if is_symlink(dir) {
            return Err(SynthError::invalid(format!(
                "`{}` is a symbolic link; a run's journal stays inside the store",
                dir.display()
            ))
            .hint("remove the link, or choose another `--output-id`")
            .into());
        }
        std::fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| fail("write in", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(Err(Refusal::Locked)),
            Err(std::fs::TryLockError::Error(e)) => return Err(fail("lock a file in", e)),
        }
        let path = dir.join(JOURNAL_FILE);
        if restart {
            let _ = std::fs::remove_file(&path);
        }
        let fresh = path.symlink_metadata().is_err();
        let mut file =
            OpenOptions::new().create(true).append(true).read(true).open(&path).map_err(|e| fail("write in", e))?;
        let mut done = HashMap::new();
        if fresh || file.metadata().map(|m| m.len() == 0).unwrap_or(true) {
            let header = Header { journal: FORMAT, fingerprint: fingerprint.to_string(), output_id: id.to_string() };
            let mut line = serde_json::to_vec(&header)?;
            line.push(b'\n');
            file.write_all(&line).and_then(|()| file.sync_all()).map_err(|e| fail("write in", e))?;
        } else {
            match read_header(&path) {
                Ok(h) if h.fingerprint == fingerprint => {}
                _ => return Ok(Err(Refusal::OtherRun)),
            }
            done = replay(&path, &mut file)?;
        }
        let entries = done.len();
        Ok(Ok(Journal { dir: dir.to_path_buf(), file, done, entries, _lock: lock }))
    }

    /// A generation an earlier attempt of this run finished.
    pub fn get(&self, key: Key) -> Option<&Generated> {
        self.done.get(&key)
    }

    /// Generations replayed from an earlier attempt of this run.
    pub fn replayed(&self) -> usize {
        self.done.len()
    }

    /// Appends a finished generation. The line is handed to the OS before this returns, so a
    /// killed process keeps it; an OS crash may lose the last few, which are then redone.
    pub fn record(&mut self, key: Key, generated: &Generated) -> Result<()> {
        let Candidate { variant, row } = key.candidate;
        let entry = Entry { stage: key.stage, row, variant, attempt: key.attempt, generated: generated.clone() };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| SynthError::failed(format!("cannot append to `{}`: {e}", self.path().display())))?;
        self.entries += 1;
        Ok(())
    }

    /// Generations the journal holds.
    pub fn generations(&self) -> usize {
        self.entries
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Syncs the journal to disk (end of a stage).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| SynthError::failed(format!("cannot sync `{}`: {e}", self.path().display())).into())
    }

    /// Deletes the journal once its dataset is published.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `datasets/.run-<id>`: the journal and lock of a run writing dataset `id`.
fn journal_dir(store: &Store, id: &str) -> Result<PathBuf> {
    store.dataset_dir(id)?;
    Ok(store.datasets_dir().join(format!(".run-{id}")))
}

/// The output ids of every `.run-<id>` directory, sorted.
fn run_ids(store: &Store) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(store.datasets_dir()) else { return Vec::new() };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix(".run-").map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn is_symlink(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
}

/// Whether the process that named a `.tmp-<id>-<pid>-<n>` directory still runs (where
/// `/proc` can tell; elsewhere it is assumed to).
fn writer_alive(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '-');
    let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else { return true };
    let Ok(pid) = pid.parse::<u32>() else { return true };
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether a running process holds the journal in `dir`.
fn is_locked(dir: &Path) -> bool {
    let Ok(lock) = File::open(dir.join(LOCK_FILE)) else { return false };
    matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// The first line, read with a bound: a header is small, whatever else the file holds.
fn read_header(path: &Path) -> Result<Header> {
    let mut first = String::new();
    BufReader::new(File::open(path)?).take(1 << 20).read_line(&mut first)?;
    Ok(serde_json::from_str(&first)?)
}

/// Reads the entries after the header. A last line without its newline is what a kill in the
/// middle of a write leaves: it is cut off, and that generation is simply redone. Any other
/// bad line means the file was damaged, and is an error.
fn replay(path: &Path, file: &mut File) -> Result<HashMap<Key, Generated>> {
    let damaged = |line: usize, why: String| -> anyhow::Error {
        SynthError::failed(format!("`{}`: line {line}: {why}", path.display()))
            .hint("the journal is damaged; pass `--restart` to discard it and start the run over")
            .into()
    };
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut done = HashMap::new();
    let mut buf = Vec::new();
    let mut good_len: u64 = 0;
    let mut number = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        number += 1;
        if buf.last() != Some(&b'\n') {
            break; // torn last write
        }
        if number > 1 {
            let entry: Entry = serde_json::from_slice(&buf).map_err(|e| damaged(number, e.to_string()))?;
            let candidate = Candidate { variant: entry.variant, row: entry.row };
            done.insert(Key { stage: entry.stage, candidate, attempt: entry.attempt }, entry.generated);
        }
        good_len += n as u64;
    }
    drop(reader);
    if good_len < file.metadata()?.len() {
        file.set_len(good_len).map_err(|e| damaged(number, format!("cannot cut off a torn last line: {e}")))?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FinishReason;

    fn gen(text: &str) -> Generated {
        Generated { text: text.into(), finish: FinishReason::Stop, prompt_tokens: 3, generated_tokens: 2 }
    }

    #[test]
    fn replays_entries_cuts_a_torn_line_and_refuses_other_runs() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let key = |row| Key { stage: 1, candidate: Candidate { variant: 0, row }, attempt: 0 };
        {
            let mut j = Journal::open(&store, "out", "abc", false).unwrap();
            j.record(key(0), &gen("zero")).unwrap();
            j.record(key(1), &gen("one")).unwrap();
            // A second run on the same id while this one holds the lock.
            let err = Journal::open(&store, "out", "abc", false).unwrap_err();
            assert!(err.to_string().contains("being written by another"), "{err}");
            let path = j.path();
            drop(j);
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"{\"stage\":1,\"row\":2,\"att").unwrap();
        }
        let j = Journal::open(&store, "out", "abc", false).unwrap();
        assert_eq!(j.replayed(), 2);
        assert_eq!(j.get(key(1)).unwrap().text, "one");
        assert!(j.get(key(2)).is_none());
        assert!(std::fs::read(j.path()).unwrap().ends_with(b"\n"));
        assert_eq!(Journal::find_resumable(&store, "ou", "abc").unwrap(), None, "locked journals are not offered");
        drop(j);
        assert_eq!(Journal::find_resumable(&store, "ou", "abc").unwrap(), Some("out".to_string()));
        assert_eq!(Journal::find_resumable(&store, "ou", "xyz").unwrap(), None);
        let err = Journal::open(&store, "out", "xyz", false).unwrap_err();
        assert!(crate::error::render(&err).contains("--restart"), "{err}");
        let j = Journal::open(&store, "out", "xyz", true).unwrap();
        assert_eq!(j.replayed(), 0);
        assert_eq!(Journal::next_free_id(&store, "out").unwrap(), "out_1");
    }

    #[test]
    fn interrupted_runs_are_listed_and_cleaned_unless_running() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let mut held = Journal::open(&store, "busy", "abc", false).unwrap();
        held.record(Key { stage: 1, candidate: Candidate { variant: 0, row: 0 }, attempt: 0 }, &gen("x")).unwrap();
        drop(Journal::open(&store, "left", "abc", false).unwrap());
        let stale = store.datasets_dir().join(".tmp-left-999999999-0");
        std::fs::create_dir(&stale).unwrap();
        let runs = Journal::interrupted(&store).unwrap();
        assert_eq!(
            runs,
            vec![
                InterruptedRun { id: "busy".into(), generations: 1, running: true },
                InterruptedRun { id: "left".into(), generations: 0, running: false }
            ]
        );
        let removed = Journal::clean(&store).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!stale.exists());
        assert_eq!(Journal::interrupted(&store).unwrap().len(), 1, "the running one stays");
        drop(held);
    }

    #[test]
    fn a_symlinked_run_directory_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        std::fs::create_dir_all(store.datasets_dir()).unwrap();
        std::os::unix::fs::symlink(outside.path(), store.datasets_dir().join(".run-out")).unwrap();
        let err = Journal::open(&store, "out", "abc", false).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing was written outside the store");
    }

    #[test]
    fn a_damaged_middle_line_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let path = {
            let mut j = Journal::open(&store, "out", "abc", false).unwrap();
            j.record(Key { stage: 2, candidate: Candidate { variant: 0, row: 0 }, attempt: 1 }, &gen("x")).unwrap();
            j.record(Key { stage: 1, candidate: Candidate { variant: 3, row: 0 }, attempt: 0 }, &gen("v")).unwrap();
            j.path()
        };
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#""row":0,"attempt":1"#) && text.contains(r#""row":0,"variant":3,"attempt":0"#),
            "{text}"
        );
        let j = Journal::open(&store, "out", "abc", false).unwrap();
        assert_eq!(j.get(Key { stage: 1, candidate: Candidate { variant: 3, row: 0 }, attempt: 0 }).unwrap().text, "v");
        drop(j);
        text.push_str("not json\n");
        std::fs::write(&path, text).unwrap();
        let err = Journal::open(&store, "out", "abc", false).unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
    }
}

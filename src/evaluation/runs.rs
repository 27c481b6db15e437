//! Where eval runs live, and how a finished one is written:
//!
//! ```text
//! <home>/evals/<run_id>/results.jsonl   one EvalResult per dataset row
//! <home>/evals/<run_id>/summary.json    the EvalSummary
//! <home>/evals/.tmp-<run_id>-<pid>-<n>/ a run being written, renamed into place when complete
//! ```

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::error::SynthError;
use crate::store::artifacts::{EvalResult, EvalSummary};
use crate::store::atomic::StagingDir;
use crate::store::id::validate_dataset_id;
use crate::store::Store;

pub const EVALS_DIR: &str = "evals";
pub const RESULTS_FILE: &str = "results.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
/// Default run ids are `eval_run_1`, `eval_run_2`, ...
pub const RUN_ID_PREFIX: &str = "eval_run";
/// The failure-mode dataset of run `<id>` is `dataset_failure_modes_<id>`.
pub const FAILURE_MODES_PREFIX: &str = "dataset_failure_modes_";

pub fn evals_dir(store: &Store) -> PathBuf {
    store.root().join(EVALS_DIR)
}

/// Where eval run `id` lives; fails on an invalid id before anything touches the disk.
pub fn eval_run_dir(store: &Store, id: &str) -> Result<PathBuf> {
    validate_dataset_id(id).map_err(|rule| {
        SynthError::invalid(format!(
            "invalid eval run id `{}`: {}",
            id.escape_debug(),
            rule.replace("dataset id", "run id")
        ))
        .hint("use letters, digits, `_`, `-` and `.`, e.g. `eval_run_7`")
    })?;
    Ok(evals_dir(store).join(id))
}

pub fn failure_modes_dataset_id(run_id: &str) -> String {
    format!("{FAILURE_MODES_PREFIX}{run_id}")
}

/// The run id to use: the one wanted, if neither it nor (`with_dataset`) its failure-mode
/// dataset exists; else the next free `eval_run_<n>`.
pub fn settle_run_id(store: &Store, wanted: Option<&str>, with_dataset: bool) -> Result<String> {
    let Some(id) = wanted else {
        let taken = |id: &str| -> Result<bool> {
            let run = eval_run_dir(store, id)?.symlink_metadata().is_ok();
            Ok(run || (with_dataset && store.exists(&failure_modes_dataset_id(id))?))
        };
        return crate::store::first_free(RUN_ID_PREFIX, taken);
    };
    if eval_run_dir(store, id)?.symlink_metadata().is_ok() {
        return Err(SynthError::invalid(format!("eval run `{id}` already exists in `{}`", evals_dir(store).display()))
            .hint("choose another `--run-id`, or leave it out for the next free `eval_run_<n>`; runs are never overwritten")
            .into());
    }
    if with_dataset {
        let dataset = failure_modes_dataset_id(id);
        store.dataset_dir(&dataset).context("the failure-mode dataset id would be invalid")?;
        if store.exists(&dataset)? {
            return Err(SynthError::invalid(format!(
                "dataset `{dataset}` already exists, so run `{id}` cannot publish its failure modes"
            ))
            .hint("choose another `--run-id`")
            .into());
        }
    }
    Ok(id.to_string())
}

/// Writes the run through a staging directory renamed into place; an existing run stays.
pub fn write_run(store: &Store, run_id: &str, results: &[EvalResult], summary: &EvalSummary) -> Result<PathBuf> {
    let dir = evals_dir(store);
    std::fs::create_dir_all(&dir).map_err(|e| {
        SynthError::failed(format!("cannot create `{}`: {e}", dir.display()))
            .hint("set `SYNTH_HOME` to a writable directory")
    })?;
    let staging = StagingDir::create(&dir, run_id)?;
    staging.write(RESULTS_FILE, |out| {
        for result in results {
            serde_json::to_writer(&mut *out, result)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    staging.write(SUMMARY_FILE, |out| {
        serde_json::to_writer_pretty(&mut *out, summary)?;
        out.write_all(b"\n")
    })?;
    staging.publish(false, || {
        SynthError::invalid(format!("eval run `{run_id}` already exists")).hint("choose another `--run-id`").into()
    })
}

/// Reads a stored run's summary and results.
pub fn read_run(store: &Store, run_id: &str) -> Result<(EvalSummary, Vec<EvalResult>)> {
    let dir = eval_run_dir(store, run_id)?;
    if !dir.is_dir() {
        return Err(SynthError::not_found(format!(
            "eval run `{run_id}` not found in `{}`",
            evals_dir(store).display()
        ))
        .hint(stored_runs_hint(store))
        .into());
    }
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| SynthError::failed(format!("cannot read `{}`: {e}", dir.join(name).display())))
    };
    let summary: EvalSummary = serde_json::from_str(&read(SUMMARY_FILE)?).map_err(|e| {
        SynthError::failed(format!("`{}` is not a valid eval summary: {e}", dir.join(SUMMARY_FILE).display()))
    })?;
    let mut results = Vec::new();
    for (n, line) in read(RESULTS_FILE)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        results.push(serde_json::from_str(line).map_err(|e| {
            SynthError::failed(format!("{}:{}: not a valid eval result: {e}", dir.join(RESULTS_FILE).display(), n + 1))
        })?);
    }
    Ok((summary, results))
}

fn stored_runs_hint(store: &Store) -> String {
    let mut known: Vec<String> = std::fs::read_dir(evals_dir(store))
        .map(|entries| {
            entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| !n.starts_with('.')).collect()
        })
        .unwrap_or_default();
    known.sort();
    if known.is_empty() {
        "no eval runs yet: run `synth eval RECIPE`".to_string()
    } else {
        format!("stored runs: {}", known.iter().take(10).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_count_up_and_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        assert_eq!(settle_run_id(&store, None, true).unwrap(), "eval_run_1");
        std::fs::create_dir_all(evals_dir(&store).join("eval_run_1")).unwrap();
        assert_eq!(settle_run_id(&store, None, false).unwrap(), "eval_run_2");
        let err = settle_run_id(&store, Some("eval_run_1"), false).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(settle_run_id(&store, Some("../x"), false).is_err());
        assert_eq!(settle_run_id(&store, Some("mine"), true).unwrap(), "mine");
    }
}

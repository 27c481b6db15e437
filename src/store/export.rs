//! `synth datasets export`: a stored dataset written out as JSONL, Parquet, or the Hugging Face
//! `datasets` layout (`data/<split>-00000-of-00001.parquet` plus a `README.md` dataset card whose
//! YAML header lists the splits, their row counts and the features). The output directory
//! appears whole or not at all (it is staged beside its target, then renamed).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::artifacts::SynthesisManifest;
use super::atomic::StagingDir;
use super::datasets::Store;
use super::jsonl;
use super::manifest::{Manifest, MANIFEST_FILE};
use super::parquet;
use super::row::Row;
use crate::error::SynthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `<split>.jsonl`, the bytes synth stores, plus `manifest.json`.
    Jsonl,
    /// `<split>.parquet`, plus `manifest.json`.
    Parquet,
    /// `data/<split>-00000-of-00001.parquet` and a `README.md` dataset card.
    Hf,
}

/// One file an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedFile {
    pub split: String,
    pub rows: usize,
    /// Relative to the export directory.
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub files: Vec<ExportedFile>,
}

impl Store {
    /// Writes dataset `id` into the new directory `out` (replaced only with `overwrite`).
    pub fn export(&self, id: &str, format: ExportFormat, out: &Path, overwrite: bool) -> Result<ExportReport> {
        let manifest = self.manifest(id)?;
        let mut splits = Vec::new();
        for split in manifest.splits_in_order() {
            splits.push((split.name.clone(), self.read_split(id, &split.name, None)?));
        }
        let staging = stage_beside(out, overwrite)?;
        let files = match format {
            ExportFormat::Jsonl => write_splits(&staging, &manifest, &splits, "jsonl")?,
            ExportFormat::Parquet => write_splits(&staging, &manifest, &splits, "parquet")?,
            ExportFormat::Hf => write_hf(&staging, &manifest, &splits)?,
        };
        let dir = staging.publish(overwrite, || exists(out))?;
        Ok(ExportReport { dir, files })
    }
}

fn stage_beside(out: &Path, overwrite: bool) -> Result<StagingDir> {
    if out.symlink_metadata().is_ok() && !overwrite {
        return Err(exists(out));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .ok_or_else(|| SynthError::invalid(format!("`{}` has no directory name", out.display())))?
        .to_string_lossy();
    std::fs::create_dir_all(parent)
        .map_err(|e| SynthError::failed(format!("cannot create `{}`: {e}", parent.display())))?;
    StagingDir::create(parent, &name)
}

fn exists(out: &Path) -> anyhow::Error {
    SynthError::invalid(format!("`{}` already exists", out.display()))
        .hint("choose another `--output`, or pass `--overwrite` to replace it")
        .into()
}

fn write_rows(staging: &StagingDir, name: &str, rows: &[Row]) -> Result<()> {
    if name.ends_with(".parquet") {
        staging.write(name, |out| parquet::write_rows(out, rows))
    } else {
        staging.write(name, |out| jsonl::write_rows(out, rows).map(|_| ()))
    }
}

fn write_splits(
    staging: &StagingDir,
    manifest: &Manifest,
    splits: &[(String, Vec<Row>)],
    extension: &str,
) -> Result<Vec<ExportedFile>> {
    let mut files = Vec::new();
    for (split, rows) in splits {
        let path = PathBuf::from(format!("{split}.{extension}"));
        write_rows(staging, &path.to_string_lossy(), rows)?;
        files.push(ExportedFile { split: split.clone(), rows: rows.len(), path });
    }
    staging.write(MANIFEST_FILE, |out| {
        serde_json::to_writer_pretty(&mut *out, manifest)?;
        out.write_all(b"\n")
    })?;
    Ok(files)
}

/// The Hugging Face layout. A split with no rows is left out (the card says so): `datasets`
/// cannot load a split from an empty data file list.
fn write_hf(staging: &StagingDir, manifest: &Manifest, splits: &[(String, Vec<Row>)]) -> Result<Vec<ExportedFile>> {
    let data = staging.path().join("data");
    std::fs::create_dir(&data).map_err(|e| SynthError::failed(format!("cannot create `{}`: {e}", data.display())))?;
    let mut files = Vec::new();
    for (split, rows) in splits.iter().filter(|(_, rows)| !rows.is_empty()) {
        let path = PathBuf::from(format!("data/{split}-00000-of-00001.parquet"));
        write_rows(staging, &path.to_string_lossy(), rows)?;
        files.push(ExportedFile { split: split.clone(), rows: rows.len(), path });
    }
    let card = dataset_card(manifest, &files);
    staging.write("README.md", |out| out.write_all(card.as_bytes()))?;
    Ok(files)
}

/// A JSON string, which YAML reads as the same string.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `README.md`: YAML `configs` and `dataset_info`, then what made the dataset.
pub fn dataset_card(manifest: &Manifest, files: &[ExportedFile]) -> String {
    let mut card = String::from("---\n");
    card.push_str(&format!("pretty_name: {}\ntags:\n- synthetic\n- synth\n", quoted(&manifest.id)));
    card.push_str("configs:\n- config_name: default\n  data_files:\n");
    for f in files {
        card.push_str(&format!("  - split: {}\n    path: {}\n", quoted(&f.split), quoted(&f.path.to_string_lossy())));
    }
    card.push_str(concat!(
        "dataset_info:\n  features:\n  - name: messages\n    list:\n    - name: role\n      dtype: string\n",
        "    - name: content\n      dtype: string\n  - name: metadata\n    dtype: string\n  splits:\n"
    ));
    for f in files {
        card.push_str(&format!("  - name: {}\n    num_examples: {}\n", quoted(&f.split), f.rows));
    }
    card.push_str("---\n\n");
    card.push_str(&card_body(manifest, files));
    card
}

fn card_body(manifest: &Manifest, files: &[ExportedFile]) -> String {
    let mut body = format!("# {}\n\n", manifest.id);
    body.push_str(&format!(
        "A dataset of kind `{}` exported by synth {} (made {}). Each row is a chat conversation (`messages`: \
         role and content) with its provenance as a JSON string (`metadata`).\n\n",
        manifest.kind,
        env!("CARGO_PKG_VERSION"),
        manifest.created_at
    ));
    body.push_str("| split | rows |\n| --- | --- |\n");
    for split in manifest.splits_in_order() {
        let note = if files.iter().any(|f| f.split == split.name) { "" } else { " (empty, not exported)" };
        body.push_str(&format!("| {} | {}{note} |\n", split.name, split.rows));
    }
    if let Ok(run) = manifest.details::<SynthesisManifest>() {
        body.push_str(&format!(
            "\n## How it was made\n\n- synth version: {}\n- recipe: `{}`\n- seed dataset: `{}` ({} rows used)\n\
             - model: {} ({}, revision {})\n- device: {}\n- inference seed: {}\n",
            run.synth_version,
            run.recipe_file,
            run.seed_dataset.id,
            run.seed_dataset.rows_used,
            run.model.name,
            run.model.hf_repo,
            run.model.revision,
            run.device,
            run.inference_seed
        ));
        for file in &run.model.files {
            body.push_str(&format!("- model file `{}`: sha256 `{}`\n", file.name, file.sha256));
        }
        let recipe = serde_json::to_string_pretty(&run.recipe).unwrap_or_default();
        body.push_str(&format!("\nThe recipe:\n\n{}json\n{recipe}\n{}\n", fence(&recipe), fence(&recipe)));
    }
    body
}

/// A backtick fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

//! `synth datasets import`: a JSONL, Parquet or CSV file in any accepted row shape becomes a
//! one-split dataset. Parquet and CSV rows become JSON objects keyed by column name (a CSV
//! `messages` or `metadata` cell holds JSON) and then go through the same row check as JSONL.
//!
//! Policy: all or nothing. Every line is checked; if any is bad, the error lists the first
//! [`MAX_REPORTED`] by line number and nothing is written. A file with no rows is an error too.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::artifacts::file_sha256;
use super::datasets::Store;
use super::jsonl::{parse_object, JsonlReader, LineError, RowFormat};
use super::manifest::{Manifest, KIND_IMPORTED};
use super::parquet;
use super::pending::already_exists;
use super::row::Row;
use crate::error::SynthError;

/// Bad lines listed in one error.
pub const MAX_REPORTED: usize = 10;

const FORMATS_HINT: &str = r#"each non-empty line must be one JSON object: {"messages": [{"role": "user", "content": "..."}]}, {"prompt": "...", "response": "..."} or {"instruction": "...", "input": "...", "output": "..."}"#;

#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    pub id: String,
    /// The published dataset directory.
    pub path: PathBuf,
    pub rows: usize,
    /// Of the source file, hex.
    pub sha256: String,
    pub formats: RowFormatCounts,
    /// Whether an existing dataset was replaced.
    pub replaced: bool,
}

/// How many rows had each source shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowFormatCounts {
    pub chat: usize,
    pub prompt_response: usize,
    pub alpaca: usize,
}

impl RowFormatCounts {
    fn add(&mut self, format: RowFormat) {
        match format {
            RowFormat::Chat => self.chat += 1,
            RowFormat::PromptResponse => self.prompt_response += 1,
            RowFormat::Alpaca => self.alpaca += 1,
        }
    }

    fn to_json(self) -> Value {
        json!({"chat": self.chat, "promptResponse": self.prompt_response, "alpaca": self.alpaca})
    }
}

impl Store {
    /// Imports a `.parquet`, `.csv` or (any other name) JSONL file as dataset `id` (see
    /// [`Store::import_jsonl`]).
    pub fn import_file(&self, path: &Path, id: &str, overwrite: bool) -> Result<ImportReport> {
        let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        let read: ReadObjects = match extension.as_deref() {
            Some("parquet") => parquet::read_objects,
            Some("csv") => read_csv_objects,
            _ => return self.import_jsonl(path, id, overwrite),
        };
        let replaced = self.check_importable(id, overwrite)?;
        let objects = read(open_input(path)?, path)?;
        let shown = path.display().to_string();
        let mut rows = Vec::with_capacity(objects.len());
        let mut formats = RowFormatCounts::default();
        let mut bad = Vec::new();
        let mut bad_count = 0;
        for (i, object) in objects.into_iter().enumerate() {
            match parse_object(object) {
                Ok((row, format)) => {
                    formats.add(format);
                    rows.push(row);
                }
                Err(msg) => {
                    bad_count += 1;
                    if bad.len() < MAX_REPORTED {
                        bad.push(format!("{shown}: row {}: {msg}", i + 1));
                    }
                }
            }
        }
        if bad_count > 0 {
            return Err(bad_lines_error(&shown, &bad, bad_count, "rows"));
        }
        let imported = Imported { rows, formats, sha256: file_sha256(path)?, replaced };
        self.publish_import(path, id, overwrite, imported)
    }

    /// Imports `path` as dataset `id`, kind `imported`, all rows in the `train` split. The manifest
    /// records the source file's name and SHA-256 and the row count per source shape.
    pub fn import_jsonl(&self, path: &Path, id: &str, overwrite: bool) -> Result<ImportReport> {
        let replaced = self.check_importable(id, overwrite)?;
        let shown = path.display();
        let file = open_input(path)?;
        let mut reader = JsonlReader::new(BufReader::new(Hashing { inner: file, hasher: Sha256::new() }));
        let mut rows = Vec::new();
        let mut formats = RowFormatCounts::default();
        let mut bad = Vec::new();
        let mut bad_count = 0;
        for (line, result) in &mut reader {
            match result {
                Ok((row, format)) => {
                    formats.add(format);
                    rows.push(row);
                }
                Err(LineError::Io(e)) => return Err(SynthError::failed(format!("cannot read `{shown}`: {e}")).into()),
                Err(LineError::Invalid(msg)) => {
                    bad_count += 1;
                    if bad.len() < MAX_REPORTED {
                        bad.push(format!("{shown}:{line}: {msg}"));
                    }
                }
            }
        }
        let sha256 = hex(&reader.into_inner().into_inner().hasher.finalize());
        if bad_count > 0 {
            return Err(bad_lines_error(&shown.to_string(), &bad, bad_count, "lines"));
        }
        self.publish_import(path, id, overwrite, Imported { rows, formats, sha256, replaced })
    }

    /// Whether dataset `id` exists (and may be replaced); an error when it does without `overwrite`.
    fn check_importable(&self, id: &str, overwrite: bool) -> Result<bool> {
        self.dataset_dir(id)?;
        let replaced = self.exists(id)?;
        if replaced && !overwrite {
            return Err(already_exists(id));
        }
        Ok(replaced)
    }

    fn publish_import(&self, path: &Path, id: &str, overwrite: bool, imported: Imported) -> Result<ImportReport> {
        let Imported { rows, formats, sha256, replaced } = imported;
        let shown = path.display();
        if rows.is_empty() {
            return Err(SynthError::invalid(format!("`{shown}` has no rows, nothing was imported"))
                .hint(FORMATS_HINT)
                .into());
        }
        let mut pending = self.begin_dataset(id)?;
        pending.write_split("train", &rows)?;
        let mut manifest = Manifest::new(id, KIND_IMPORTED);
        manifest.add_split("train", rows.len());
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| shown.to_string());
        let mut source = Map::new();
        source.insert("file".into(), file_name.into());
        source.insert("sha256".into(), sha256.clone().into());
        source.insert("rowFormats".into(), formats.to_json());
        manifest.extra.insert("source".into(), Value::Object(source));
        pending.write_manifest(&manifest)?;
        let path = pending.publish(overwrite)?;
        Ok(ImportReport { id: id.to_string(), path, rows: rows.len(), sha256, formats, replaced })
    }
}

/// Reads a Parquet or CSV file's rows as JSON objects keyed by column name.
type ReadObjects = fn(File, &Path) -> Result<Vec<Map<String, Value>>>;

/// Rows read from an import file, checked, before they are published.
struct Imported {
    rows: Vec<Row>,
    formats: RowFormatCounts,
    sha256: String,
    replaced: bool,
}

fn open_input(path: &Path) -> Result<File> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SynthError::not_found(format!("file `{shown}` not found")),
        _ => SynthError::failed(format!("cannot open `{shown}`: {e}")),
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(
            SynthError::invalid(format!("`{shown}` is a directory, expected a JSONL, Parquet or CSV file")).into()
        );
    }
    Ok(file)
}

/// A CSV file with a header row, each record as an object keyed by column name. Cells are
/// strings, except that a `messages` or `metadata` cell holds JSON (an empty one is left out).
fn read_csv_objects(file: File, path: &Path) -> Result<Vec<Map<String, Value>>> {
    let shown = path.display();
    let mut reader = csv::Reader::from_reader(file);
    let headers = reader.headers().map_err(|e| SynthError::invalid(format!("`{shown}`: {e}")))?.clone();
    let mut objects = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| SynthError::invalid(format!("`{shown}`: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        let mut object = Map::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            let value = match name {
                "messages" | "metadata" if cell.is_empty() => continue,
                "messages" | "metadata" => serde_json::from_str(cell).map_err(|e| {
                    SynthError::invalid(format!("{shown}:{line}: column `{name}`: not valid JSON: {e}"))
                        .hint("a CSV `messages` cell holds a JSON array of {\"role\", \"content\"} objects")
                })?,
                _ => Value::String(cell.to_string()),
            };
            object.insert(name.to_string(), value);
        }
        objects.push(object);
    }
    Ok(objects)
}

fn bad_lines_error(file: &str, listed: &[String], total: usize, unit: &str) -> anyhow::Error {
    let singular = unit.trim_end_matches('s');
    let lines = if total == 1 { format!("1 invalid {singular}") } else { format!("{total} invalid {unit}") };
    let mut message = format!("`{file}` has {lines}, nothing was imported");
    for line in listed {
        message.push_str("\n  ");
        message.push_str(line);
    }
    if total > listed.len() {
        message.push_str(&format!("\n  ... and {} more", total - listed.len()));
    }
    SynthError::invalid(message).hint(FORMATS_HINT).into()
}

/// Hashes everything read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

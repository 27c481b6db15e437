//! Datasets on disk, under the synth home:
//!
//! 1. `$SYNTH_HOME`, when set and not empty;
//! 2. else `$XDG_DATA_HOME/synth`, when that is set to an absolute path;
//! 3. else `$HOME/.local/share/synth`.
//!
//! ```text
//! <home>/datasets/<id>/manifest.json      what the dataset is (see [`Manifest`])
//! <home>/datasets/<id>/train.jsonl        one chat row per line; also validation.jsonl, test.jsonl
//! <home>/datasets/.tmp-<id>-<pid>-<n>/    a dataset being written, invisible until published
//! ```
//! Directories are created on first write. A dataset appears all at once: it is written into a
//! temporary directory and renamed into place (see [`PendingDataset`]), so readers never see half of
//! one, and an interrupted run leaves only a hidden `.tmp-*` directory behind.

pub mod artifacts;
pub mod atomic;
mod datasets;
pub mod id;
mod import;
pub mod jsonl;
pub mod manifest;
mod pending;
pub mod row;

pub use datasets::{first_free, DatasetSummary, Store};
pub use id::validate_dataset_id;
pub use import::{ImportReport, RowFormatCounts};
pub use jsonl::{JsonlReader, LineError, RowFormat};
pub use manifest::{
    Manifest, SplitInfo, KIND_FAILURE_MODES, KIND_IMPORTED, KIND_SHARD, KIND_SYNTHESIZED, MANIFEST_FILE, SPLITS,
};
pub use pending::PendingDataset;
pub use row::{Message, Row};

//! Datasets on disk under `SYNTH_HOME/datasets/<id>/`.

pub mod id;
pub mod row;

pub use id::validate_dataset_id;
pub use row::{Message, Row};

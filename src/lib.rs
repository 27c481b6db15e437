//! synth: data synthesis recipes → training datasets, with LLMs on your own hardware.
//!
//! Data flow: [`recipe`] (JSON → validated `Recipe`) → [`store`] (datasets on disk, and the
//! typed files commands hand each other) → [`model`] (registry, file resolution, tokenizer,
//! chat template) → [`engine`] (batched decoder, KV cache, scheduler, sampler) →
//! [`generation`] (conversations in, completions out: rate cap, journal, retries) →
//! [`synthesis`] (what to ask per seed row, what to make of the answers; [`curation`] gates each candidate) and [`evaluation`]
//! (answers graded, failures grouped into a dataset synthesis can target) → [`output`]
//! (splits, manifest, publish); [`slurm`] writes the job scripts of a sharded run. [`cli`] parses
//! flags and prints.

pub mod cli;
pub mod curation;
pub mod device;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod generation;
pub mod model;
pub mod output;
pub mod progress;
pub mod recipe;
pub mod report;
pub mod slurm;
pub mod store;
pub mod synthesis;
pub mod terminal;

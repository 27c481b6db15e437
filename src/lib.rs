//! synth: data synthesis recipes → training datasets, with LLMs on your own hardware.
//!
//! Data flow: [`recipe`] (JSON → validated `Recipe`) → [`store`] (seed dataset on disk) →
//! [`model`] (registry, file resolution, tokenizer, chat template) → [`engine`] (batched
//! decoder, KV cache, scheduler, sampler) → [`synthesis`] (prompts in, rows out) →
//! [`output`] (splits, manifest, publish). [`evaluation`] grades a model on a dataset and turns
//! its failures into a dataset that synthesis can target.

pub mod cli;
pub mod device;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod model;
pub mod output;
pub mod progress;
pub mod recipe;
pub mod store;
pub mod synthesis;

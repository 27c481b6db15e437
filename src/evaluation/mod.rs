//! Evaluation: a model answers a dataset's prompts, evaluators grade the answers against the
//! references, and the failures become a failure-mode dataset that `synth run` can target.
//!
//! [`recipe`] (JSON → validated `EvalRecipe`) → [`evaluate`] (answers through
//! [`crate::generation`]) → [`evaluators`] and [`judge`] (verdicts) → [`failure_modes`] (failed
//! rows grouped and labelled) → [`runs`] (`evals/<run_id>/`) and the
//! `dataset_failure_modes_<run_id>` dataset, which [`crate::synthesis::targeted`] reads;
//! [`show`] prints a stored run.

pub mod evaluate;
pub mod evaluators;
pub mod failure_modes;
pub mod judge;
pub mod recipe;
pub mod runs;
pub mod show;

pub use evaluate::{evaluate, EvalOptions, EvalReport};

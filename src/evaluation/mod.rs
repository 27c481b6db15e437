//! Evaluation: a model answers a dataset's prompts, evaluators grade the answers against the
//! references, and the failures become a failure-mode dataset that `synth run` can target.
//!
//! [`recipe`] (JSON → validated `EvalRecipe`) → [`run`] (answers through
//! [`crate::synthesis::generate`]) → [`evaluators`] and [`judge`] (verdicts) →
//! [`failure_modes`] (failed rows grouped and labelled) → `evals/<run_id>/` and the
//! `dataset_failure_modes_<run_id>` dataset, which [`crate::synthesis::failure_modes`] reads.

pub mod evaluators;
pub mod failure_modes;
pub mod judge;
pub mod recipe;
pub mod run;

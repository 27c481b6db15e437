//! Synthesis pipelines: what to ask the model for each seed row, and what to make of its
//! answers. The generation itself (journal, retries, rate cap) is [`crate::generation`]'s.
//!
//! [`synthesize`] is `synth run`; [`pipeline`] is the contract a kind of synthesis fulfils;
//! [`general`] expands a seed dataset; [`targeted`] aims new examples at an evaluation's
//! failure modes.

pub mod general;
pub mod pipeline;
pub mod synthesize;
pub mod targeted;

pub use pipeline::{DropReason, Pipeline};
pub use synthesize::{synthesize, RunOptions, RunReport};

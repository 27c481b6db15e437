//! Synthesis pipelines: what to ask the model for each seed row, and what to make of its
//! answers. The generation itself (journal, retries, rate cap) is [`crate::generation`]'s.
//!
//! [`synthesize`] is `synth run`; [`candidates`] decides which (seed row, variant) pairs are
//! tried and runs their stages; [`diversity`] measures how alike the new requests are;
//! [`pipeline`] is the contract a kind of synthesis fulfils; [`shard`] splits a run over
//! processes and merges the shards;
//! [`general`] expands a seed dataset; [`targeted`] aims new examples at an evaluation's
//! failure modes.

pub mod candidates;
pub mod diversity;
pub mod general;
pub mod pipeline;
pub mod shard;
pub mod synthesize;
pub mod targeted;

pub use pipeline::{DropReason, Pipeline};
pub use shard::{merge, Shard};
pub use synthesize::{synthesize, RunOptions, RunReport};

//! Generation: conversations in, completions out, between the engine and the applications.
//!
//! [`batch`] runs work through one engine (chat template, engine sizing, rate cap, admission,
//! progress); [`journaled`] is the streaming generator `synth run` drives (a flow of
//! generations, journal, replay, retries with derived seeds); [`journal`] is its file; [`conversations`] is `synth generate`.

pub mod batch;
pub mod conversations;
pub mod engines;
pub mod journal;
pub mod journaled;

pub use batch::{check_context, generate, mix_seed, BatchContext, EngineOptions, Generated, Job, RateCap};
pub use journal::Candidate;
pub use journaled::{Ask, Flow, GenerationCounts, GeneratorSettings, JournaledGenerator, Rejection, Role};

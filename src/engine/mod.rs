//! The batched generation engine: many independent generations share each forward pass.
//!
//! [`scheduler::Scheduler`] owns the queue, the KV cache slots and the per-request samplers;
//! each step it asks a [`DecoderModel`] for one forward over a mixed batch (prefill chunks and
//! single decode tokens, each row at its own position) and samples one token per finished row.

//! Synthesis pipelines: seed rows in, generation requests out, new rows back.

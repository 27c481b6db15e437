//! Shared test helpers: where the fetched assets live, and a clear failure when they are absent.
#![allow(dead_code)]

use std::path::PathBuf;

/// `.cache/assets` in the repository, filled by `scripts/fetch-assets.sh`.
pub fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/assets")
}

pub fn smollm2_gguf() -> PathBuf {
    let path = assets().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-assets.sh first", path.display());
    path
}

/// Deterministic pseudo-random token ids (a small LCG), so tests need no tokenizer.
pub fn token_ids(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % vocab as u64) as u32
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

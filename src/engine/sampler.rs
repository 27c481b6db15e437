//! Per-request sampling. Every request owns its RNG, seeded from its own seed, and draws
//! exactly one number per generated token, so a row's output depends only on its logits and
//! its seed — never on which rows it was batched with or in what order they ran.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens whose probabilities sum to `top_p`; 1.0 = off.
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    pub max_new_tokens: usize,
    pub seed: u64,
}

/// Below this temperature sampling is greedy: dividing by it would overflow the logits.
pub(crate) const GREEDY_BELOW: f64 = 1e-5;

#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    // ChaCha: its output stream is specified, so the same seed gives the same tokens on every
    // platform and rand version (StdRng promises neither).
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    /// This token's random number: one per token whatever the settings, so the stream stays
    /// aligned; none when greedy. The device sampler takes it from here.
    pub fn draw(&mut self) -> Option<f64> {
        (self.params.temperature >= GREEDY_BELOW).then(|| self.rng.random())
    }

    /// This token's settings and draw for the device sampler.
    pub fn row_draw(&mut self) -> RowDraw {
        let uniform = self.draw().unwrap_or(0.0);
        RowDraw { temperature: self.params.temperature, top_k: self.params.top_k, top_p: self.params.top_p, uniform }
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let Some(draw) = self.draw() else { return argmax(logits) };
        let inv_t = 1.0 / self.params.temperature;

        let mut candidates: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, &l)| (i as u32, l)).collect();
        if candidates.is_empty() {
            return argmax(logits);
        }
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = self.params.top_k;
        if k > 0 && k < candidates.len() {
            candidates.select_nth_unstable_by(k - 1, by_logit_desc);
            candidates.truncate(k);
        }
        let top_p = self.params.top_p;
        if top_p < 1.0 {
            candidates.sort_unstable_by(by_logit_desc);
        }
        let max = candidates.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = candidates.iter().map(|c| ((c.1 - max) as f64 * inv_t).exp()).collect();
        let mut total: f64 = weights.iter().sum();
        let mut keep = candidates.len();
        if top_p < 1.0 {
            let mut cumulative = 0.0;
            for (i, w) in weights.iter().enumerate() {
                cumulative += w;
                if cumulative >= top_p * total {
                    keep = i + 1;
                    break;
                }
            }
            total = weights[..keep].iter().sum();
        }
        let mut target = draw * total;
        for (c, w) in candidates[..keep].iter().zip(&weights) {
            target -= w;
            if target < 0.0 {
                return c.0;
            }
        }
        candidates[keep - 1].0
    }
}

/// Index of the largest logit; the first one on ties. NaN never wins.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if l > best_value {
            best = i;
            best_value = l;
        }
    }
    best as u32
}

/// One row's settings for a step, for the device sampler ([`super::device_sampler`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowDraw {
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// The row's uniform draw in [0, 1); unused when greedy.
    pub uniform: f64,
}

impl RowDraw {
    pub(crate) fn greedy(&self) -> bool {
        self.temperature < GREEDY_BELOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_p: f64, top_k: usize, seed: u64) -> SamplingParams {
        SamplingParams { temperature, top_p, top_k, max_new_tokens: 8, seed }
    }

    #[test]
    fn greedy_takes_argmax_and_skips_nan() {
        let mut s = Sampler::new(params(0.0, 1.0, 0, 1));
        assert_eq!(s.sample(&[0.1, f32::NAN, 3.0, 2.0]), 2);
        assert_eq!(argmax(&[1.0, 1.0]), 0);
    }

    #[test]
    fn same_seed_same_stream_different_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(params(1.0, 1.0, 0, seed));
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits = [0.5, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(params(1.5, 1.0, 1, 3));
        for _ in 0..50 {
            assert_eq!(s.sample(&logits), 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities at T=1 roughly 0.64, 0.24, 0.09, 0.03: top_p 0.7 keeps the first two.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(params(1.0, 0.7, 0, 11));
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[s.sample(&logits) as usize] += 1;
        }
        assert_eq!(seen[2] + seen[3], 0, "{seen:?}");
        assert!(seen[0] > seen[1] && seen[1] > 200, "{seen:?}");
    }

    #[test]
    fn temperature_sampling_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75 at T=1
        let mut s = Sampler::new(params(1.0, 1.0, 0, 5));
        let ones = (0..4000).filter(|_| s.sample(&logits) == 1).count();
        assert!((2800..3200).contains(&ones), "{ones}");
    }
}

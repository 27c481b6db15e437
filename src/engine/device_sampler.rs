//! Sampling on the model's device (CUDA, Metal): the logits never leave it; only the chosen
//! token ids (4 bytes a row) come back to the host. The host draws each sampled row's one
//! uniform number from the row's own seeded RNG (see [`super::sampler::Sampler::draw`]), so
//! reproducibility and batch invariance work as on the CPU.
//!
//! Everything is fixed-count bisection over whole rows — no sort (candle's GPU sort does not
//! take a 128k-wide row) and no cumulative sum (candle builds it from a vocab × vocab matmul):
//! - top-k: the largest threshold `t` with at least `k` logits `≥ t`;
//! - top-p: the largest threshold `t` whose tokens with probability `≥ t` hold at least `p`;
//! - the draw: the first token index whose prefix sum of kept weights reaches `u · total`.
//!
//! The semantics are the CPU sampler's; the numbers are f32 sums in another order, so a draw that
//! falls within rounding of a boundary may pick the neighbouring token. Ties at a top-k or top-p
//! threshold are all kept (the CPU sampler breaks them by token id).

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

use super::sampler::RowDraw;

/// Bisection steps on a value: 40 halvings take a range of a few hundred below f32 resolution.
const VALUE_STEPS: usize = 40;

/// Picks one token per row of `logits` (`[rows, vocab]`, any float dtype, on any device).
pub fn sample(logits: &Tensor, rows: &[RowDraw]) -> Result<Vec<u32>> {
    let (n, vocab) = logits.dims2()?;
    anyhow::ensure!(n == rows.len(), "{n} logit rows for {} samplers", rows.len());
    let device = logits.device();
    let logits = logits.to_dtype(DType::F32)?;
    // NaN never wins, as on the CPU.
    let logits = logits.eq(&logits)?.where_cond(&logits, &Tensor::full(f32::NEG_INFINITY, (n, vocab), device)?)?;
    let greedy = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    if rows.iter().all(RowDraw::greedy) {
        return Ok(greedy.to_vec1()?);
    }

    let column =
        |f: &dyn Fn(&RowDraw) -> f32| Tensor::from_vec(rows.iter().map(f).collect::<Vec<f32>>(), (n, 1), device);
    let inv_t = column(&|r| if r.greedy() { 1.0 } else { (1.0 / r.temperature) as f32 })?;
    let max = logits.max_keepdim(D::Minus1)?;
    // exp((l - max) / T): 1 for the best token, 0 for -inf; the CPU sampler's weights.
    let weights = logits.broadcast_sub(&max)?.broadcast_mul(&inv_t)?.exp()?;
    let weights = weights.eq(&weights)?.where_cond(&weights, &weights.zeros_like()?)?;

    let mut keep = weights.ones_like()?;
    if rows.iter().any(|r| !r.greedy() && r.top_k > 0 && r.top_k < vocab) {
        let on = |r: &RowDraw| !r.greedy() && r.top_k > 0 && r.top_k < vocab;
        let k = column(&|r| if on(r) { r.top_k as f32 } else { 0.0 })?;
        // The largest t with count(w >= t) >= k: those w are the k largest (and their ties).
        let t = bisect_value(&weights, |t| {
            Ok(weights.broadcast_ge(t)?.to_dtype(DType::F32)?.sum_keepdim(D::Minus1)?.broadcast_ge(&k)?)
        })?;
        keep = (keep * only_where(&column(&|r| f32::from(u8::from(on(r))))?, &weights.broadcast_ge(&t)?)?)?;
    }
    if rows.iter().any(|r| !r.greedy() && r.top_p < 1.0) {
        let on = |r: &RowDraw| !r.greedy() && r.top_p < 1.0;
        let p = column(&|r| if on(r) { r.top_p as f32 } else { 0.0 })?;
        let kept = (&weights * &keep)?;
        let total = kept.sum_keepdim(D::Minus1)?;
        let goal = total.broadcast_mul(&p)?;
        // The largest t whose kept tokens with w >= t hold at least p of the kept mass.
        let t = bisect_value(&kept, |t| {
            Ok(kept.broadcast_ge(t)?.to_dtype(DType::F32)?.mul(&kept)?.sum_keepdim(D::Minus1)?.broadcast_ge(&goal)?)
        })?;
        keep = (keep * only_where(&column(&|r| f32::from(u8::from(on(r))))?, &kept.broadcast_ge(&t)?)?)?;
    }
    let kept = (&weights * &keep)?;
    let total = kept.sum_keepdim(D::Minus1)?;
    let target = total.broadcast_mul(&column(&|r| r.uniform as f32)?)?;

    // The first index whose prefix sum exceeds the target, by bisection on the index.
    let index = Tensor::arange(0u32, vocab as u32, device)?.to_dtype(DType::F32)?.reshape((1, vocab))?;
    let mut lo = Tensor::zeros((n, 1), DType::F32, device)?;
    let mut hi = Tensor::full((vocab - 1) as f32, (n, 1), device)?;
    let steps = usize::BITS - (vocab.max(2) - 1).leading_zeros();
    for _ in 0..steps {
        let mid = ((&lo + &hi)? * 0.5)?.floor()?;
        let prefix = index.broadcast_le(&mid)?.to_dtype(DType::F32)?.mul(&kept)?.sum_keepdim(D::Minus1)?;
        let past = prefix.gt(&target)?;
        hi = past.where_cond(&mid, &hi)?;
        lo = past.where_cond(&lo, &(mid + 1.0)?)?;
    }
    let drawn = lo.minimum(&hi)?.squeeze(1)?.to_dtype(DType::U32)?;
    let is_greedy = Tensor::from_vec(rows.iter().map(|r| u8::from(r.greedy())).collect::<Vec<u8>>(), n, device)?;
    Ok(is_greedy.where_cond(&greedy, &drawn)?.to_vec1()?)
}

/// `mask` (0/1) in the rows where `on` (a `[rows, 1]` column of 0/1) is 1, all ones elsewhere.
fn only_where(on: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    Ok(mask.broadcast_mul(on)?.broadcast_add(&(1.0 - on)?)?)
}

/// The largest threshold `t` in `[0, max of row]` for which `holds(t)` is true, per row, to
/// f32 resolution; `holds` must be true at 0 and monotone (true below some point, false above).
fn bisect_value(values: &Tensor, holds: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let top = values.max_keepdim(D::Minus1)?;
    let mut lo = Tensor::zeros((values.dim(0)?, 1), DType::F32, values.device())?;
    let mut hi = top.clone();
    // The top value itself may hold (the top token alone is enough): check it first.
    let top_holds = holds(&top)?;
    for _ in 0..VALUE_STEPS {
        let mid = ((&lo + &hi)? * 0.5)?;
        let ok = holds(&mid)?;
        lo = ok.where_cond(&mid, &lo)?;
        hi = ok.where_cond(&hi, &mid)?;
    }
    Ok(top_holds.where_cond(&top, &lo)?)
}

/// Whether a model on `device` should sample there rather than copy its logits to the host.
pub fn samples_on(device: &Device) -> bool {
    !device.is_cpu()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampler::{argmax, Sampler, SamplingParams};
    use rand::{Rng, SeedableRng};

    fn draw(temperature: f64, top_k: usize, top_p: f64, uniform: f64) -> RowDraw {
        RowDraw { temperature, top_k, top_p, uniform }
    }

    fn logits(rows: &[Vec<f32>]) -> Tensor {
        let vocab = rows[0].len();
        Tensor::from_vec(rows.concat(), (rows.len(), vocab), &Device::Cpu).unwrap()
    }

    fn random_rows(n: usize, vocab: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| (0..vocab).map(|_| rng.random_range(-8.0f32..8.0)).collect()).collect()
    }

    #[test]
    fn greedy_rows_take_the_argmax_and_skip_nan() {
        let rows = vec![vec![0.1, f32::NAN, 3.0, 2.0], vec![5.0, 1.0, 5.0, -1.0]];
        let got = sample(&logits(&rows), &[draw(0.0, 0, 1.0, 0.5), draw(0.0, 0, 1.0, 0.5)]).unwrap();
        assert_eq!(got, vec![2, 0]);
        let rows = random_rows(6, 1000, 1);
        let got = sample(&logits(&rows), &[draw(0.0, 0, 1.0, 0.0); 6]).unwrap();
        assert_eq!(got, rows.iter().map(|r| argmax(r)).collect::<Vec<_>>());
    }

    #[test]
    fn plain_temperature_matches_the_cpu_sampler_draw_for_draw() {
        // Without top-k/top-p both walk the vocabulary in index order, so the same uniform picks
        // the same token unless it falls within f32 rounding of a boundary.
        let rows = random_rows(8, 3000, 2);
        let tensor = logits(&rows);
        let mut agree = 0;
        let mut total = 0;
        for seed in 0..20u64 {
            let mut samplers: Vec<Sampler> = (0..8)
                .map(|r| {
                    Sampler::new(SamplingParams {
                        temperature: 0.9,
                        top_p: 1.0,
                        top_k: 0,
                        max_new_tokens: 1,
                        seed: seed * 8 + r,
                    })
                })
                .collect();
            let draws: Vec<RowDraw> = samplers.iter().map(|s| draw(0.9, 0, 1.0, s.clone().draw().unwrap())).collect();
            let got = sample(&tensor, &draws).unwrap();
            for (r, s) in samplers.iter_mut().enumerate() {
                total += 1;
                agree += usize::from(s.sample(&rows[r]) == got[r]);
            }
        }
        assert!(agree + 2 >= total, "{agree} of {total} draws agree");
    }

    #[test]
    fn top_k_and_top_p_keep_only_their_tokens_and_follow_the_distribution() {
        // Probabilities at T=1 roughly 0.64, 0.24, 0.09, 0.03 (then -inf): top_p 0.7 keeps two,
        // top_k 3 keeps three.
        let row = vec![3.0f32, 2.0, 1.0, 0.0, f32::NEG_INFINITY];
        let tensor = logits(&vec![row.clone(); 2]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut seen = [[0usize; 5]; 2];
        for _ in 0..600 {
            let draws = [draw(1.0, 0, 0.7, rng.random()), draw(1.0, 3, 1.0, rng.random())];
            let got = sample(&tensor, &draws).unwrap();
            seen[0][got[0] as usize] += 1;
            seen[1][got[1] as usize] += 1;
        }
        assert_eq!(seen[0][2] + seen[0][3] + seen[0][4], 0, "top-p: {:?}", seen[0]);
        assert!(seen[0][0] > 350 && seen[0][1] > 100, "top-p: {:?}", seen[0]);
        assert_eq!(seen[1][3] + seen[1][4], 0, "top-k: {:?}", seen[1]);
        assert!(seen[1][2] > 20 && seen[1][0] > seen[1][1], "top-k: {:?}", seen[1]);
        // top_k 1 is greedy whatever the draw.
        let got = sample(&tensor, &[draw(1.5, 1, 1.0, 0.99), draw(1.5, 1, 1.0, 0.01)]).unwrap();
        assert_eq!(got, vec![0, 0]);
    }
}

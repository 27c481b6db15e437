//! Attention on the CPU in one pass per token and kv head, straight from the KV cache: the
//! scores of the kv head's query heads, their softmax and the weighted sum of values, with no
//! intermediate tensors, one parallel region per layer whatever the number of rows.
//!
//! This is [`crate::engine::models::AttentionPath::Fused`], the CPU path for models whose
//! matmuls do not give candle's bits anyway (K-quant GGUF files, bf16 checkpoints): the per-row
//! path spends a gemm call per head and row (17 280 calls per step at 32 sequences on
//! SmolLM2) and runs them on one thread. A token's result depends only on its query and its
//! slot's cache, summed in a fixed order, and the AVX2 and scalar kernels do the same float
//! operations, so the bits do not depend on the batch, the thread count or the CPU's level.

use rayon::prelude::*;

/// The shapes [`attend`] needs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Positions per slot in the cache.
    pub max_len: usize,
}

/// Each token's attention over its slot's cached positions `0..=position`.
///
/// `q`: the step's queries after RoPE, `[tokens, heads, head_dim]`; `keys`, `values`: one
/// layer's cache, `[slots, kv_heads, max_len, head_dim]`, already holding this step's keys
/// and values; `rows[t]`: token t's (slot, position). Returns `[tokens, heads * head_dim]`.
pub fn attend(q: &[f32], keys: &[f32], values: &[f32], rows: &[(usize, usize)], shape: Shape, simd: bool) -> Vec<f32> {
    let Shape { heads, kv_heads, head_dim: hd, max_len } = shape;
    let group = heads / kv_heads;
    let tokens = rows.len();
    assert!(
        hd.is_multiple_of(LANES) && heads.is_multiple_of(kv_heads) && q.len() == heads * tokens * hd,
        "attention shapes"
    );
    #[cfg(target_arch = "x86_64")]
    let simd = simd && avx2::detected();
    let mut out = vec![0f32; tokens * heads * hd];
    // One work item per (token, kv head): its query heads' output columns, contiguous. Items
    // share out in tasks of about half a million multiply-adds (some 20 µs): a single
    // sequence's step runs on the calling thread instead of waking another for less.
    let macs: usize = rows.iter().map(|&(_, position)| (position + 1) * 2 * heads * hd).sum();
    let min_len = (tokens * kv_heads * (1 << 19)).div_ceil(macs.max(1)).max(1);
    let items = out.par_chunks_mut(group * hd).with_min_len(min_len).enumerate();
    items.for_each_init(Scratch::default, |scratch, (item, out)| {
        let (t, g) = (item / kv_heads, item % kv_heads);
        let (slot, position) = rows[t];
        let cache = ((slot * kv_heads + g) * max_len) * hd;
        let len = position + 1;
        let head = Head {
            q: &q[(t * heads + g * group) * hd..],
            keys: &keys[cache..cache + len * hd],
            values: &values[cache..cache + len * hd],
            hd,
        };
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: the CPU has AVX2 and FMA (checked before the loop).
            unsafe { avx2::head(&head, scratch, out) };
            return;
        }
        let _ = simd;
        head_with::<Scalar>(&head, scratch, out);
    });
    out
}

/// One (token, kv head) item: `group` query heads against `len` cached positions.
struct Head<'a> {
    /// The group's query heads, one after another (`hd` apart).
    q: &'a [f32],
    keys: &'a [f32],
    values: &'a [f32],
    hd: usize,
}

/// A task's buffers, reused from item to item: the group's scores (then softmax weights),
/// `[group, len]`, and each head's sum of weights.
#[derive(Default)]
struct Scratch {
    weights: Vec<f32>,
    sums: Vec<f32>,
}

const LANES: usize = 8;

/// The vector operations of one query head, in scalar and AVX2 versions that do the same float
/// operations in the same order (sums in eight lanes, then [`reduce`]), so they give the same bits.
///
/// The group's query heads go together through `scores` and `weighted`, so that each cached
/// key and value is read once per item, not once per head (a decode step streams the cache).
trait Kernel {
    /// `scores[j][p] = (q[j] · keys[p]) * scale` for each query head `j` (`q`: `[group, hd]`,
    /// `scores`: `[group, len]`) and the `hd`-wide rows `p` of `keys`.
    fn scores(q: &[f32], hd: usize, keys: &[f32], scale: f32, scores: &mut [f32]);
    /// The largest score.
    fn max(scores: &[f32]) -> f32;
    /// `scores[p] = exp(scores[p] - max)` (see [`exp`]); returns their sum.
    fn exp_sum(scores: &mut [f32], max: f32) -> f32;
    /// `out[j][d] = (Σ_p weights[j][p] values[p][d]) / sums[j]` for each query head `j`
    /// (`weights`: `[group, len]`, `out`: `[group, hd]`), the sum over p in order.
    fn weighted(weights: &[f32], values: &[f32], sums: &[f32], out: &mut [f32]);
}

/// The eight lane sums added in a fixed tree: (0+4)+(2+6) plus (1+5)+(3+7).
#[inline(always)]
fn reduce(l: [f32; LANES]) -> f32 {
    let s = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// `exp(x)` for `x <= 0` (a score minus the largest), to about 2 ulp: `x = n ln 2 + r`, a
/// degree-6 polynomial for `e^r`, then `n` added to the exponent. Inputs below -87 give
/// `exp(-87)` (1.6e-38, nothing next to the largest score's 1). The AVX2 version does these
/// operations lane by lane.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.max(EXP_MIN);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut y = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        y = y.mul_add(r, *c);
    }
    let y = y.mul_add(r * r, r) + 1.0;
    f32::from_bits((y.to_bits() as i32).wrapping_add((n as i32) << 23) as u32)
}

/// [`exp`] of every element (each at most 0), eight at a time with AVX2 where `simd` and the
/// CPU has it: the same bits either way.
pub(crate) fn exp_in_place(xs: &mut [f32], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd && avx2::detected() {
        // SAFETY: AVX2 and FMA were detected.
        unsafe { avx2::exp_in_place(xs) };
        return;
    }
    let _ = simd;
    xs.iter_mut().for_each(|x| *x = exp(*x));
}

const EXP_MIN: f32 = -87.0;
/// ln 2 in two parts: `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Taylor-like coefficients of `(e^r - 1 - r) / r^2`, highest degree first.
const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];

struct Scalar;

impl Kernel for Scalar {
    fn scores(q: &[f32], hd: usize, keys: &[f32], scale: f32, scores: &mut [f32]) {
        let len = keys.len() / hd;
        for (q, scores) in q.chunks_exact(hd).zip(scores.chunks_exact_mut(len)) {
            for (key, score) in keys.chunks_exact(hd).zip(scores) {
                let mut l = [0f32; LANES];
                for (a, b) in q.chunks_exact(LANES).zip(key.chunks_exact(LANES)) {
                    for i in 0..LANES {
                        l[i] = a[i].mul_add(b[i], l[i]);
                    }
                }
                *score = reduce(l) * scale;
            }
        }
    }

    fn max(scores: &[f32]) -> f32 {
        scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s))
    }

    fn exp_sum(scores: &mut [f32], max: f32) -> f32 {
        let mut l = [0f32; LANES];
        for chunk in scores.chunks_mut(LANES) {
            for (s, l) in chunk.iter_mut().zip(&mut l) {
                *s = exp(*s - max);
                *l += *s;
            }
        }
        reduce(l)
    }

    fn weighted(weights: &[f32], values: &[f32], sums: &[f32], out: &mut [f32]) {
        let (hd, len) = (out.len() / sums.len(), weights.len() / sums.len());
        for ((weights, sum), out) in weights.chunks_exact(len).zip(sums).zip(out.chunks_exact_mut(hd)) {
            for (d, o) in out.iter_mut().enumerate() {
                let mut acc = 0f32;
                for (w, value) in weights.iter().zip(values.chunks_exact(hd)) {
                    acc = w.mul_add(value[d], acc);
                }
                *o = acc / sum;
            }
        }
    }
}

/// Scores, softmax and weighted values of one item; `out`: `[group, hd]`.
#[inline(always)]
fn head_with<K: Kernel>(h: &Head, scratch: &mut Scratch, out: &mut [f32]) {
    let hd = h.hd;
    let len = h.keys.len() / hd;
    let (scale, group) = (1.0 / (hd as f32).sqrt(), out.len() / hd);
    let Scratch { weights, sums } = scratch;
    // `K::scores` writes every score: only a buffer that grows needs filling first.
    weights.resize(group * len, 0.0);
    K::scores(&h.q[..group * hd], hd, h.keys, scale, weights);
    sums.clear();
    sums.extend(weights.chunks_exact_mut(len).map(|w| {
        let max = K::max(w);
        K::exp_sum(w, max)
    }));
    K::weighted(weights, h.values, sums, out);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{head_with, Head, Kernel, Scratch, EXP_MIN, EXP_POLY, LANES, LN2_HI, LN2_LO};
    use crate::engine::kquant::by_rows;

    struct Avx2;

    pub(super) fn detected() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// Lanes (l0..l7) of four vectors to their four [`super::reduce`] sums.
    #[inline(always)]
    unsafe fn reduce4(v: [__m256; 4]) -> __m128 {
        // (l0+l4, l1+l5, l2+l6, l3+l7) of each.
        let h = v.map(|v| _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
        // (a0+a2, b0+b2, a1+a3, b1+b3) and the same of c, d.
        let ab = _mm_add_ps(_mm_unpacklo_ps(h[0], h[1]), _mm_unpackhi_ps(h[0], h[1]));
        let cd = _mm_add_ps(_mm_unpacklo_ps(h[2], h[3]), _mm_unpackhi_ps(h[2], h[3]));
        _mm_add_ps(_mm_movelh_ps(ab, cd), _mm_movehl_ps(cd, ab))
    }

    /// [`super::exp`] on eight lanes.
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_max_ps(x, _mm256_set1_ps(EXP_MIN));
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
        let mut y = _mm256_set1_ps(EXP_POLY[0]);
        for c in &EXP_POLY[1..] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(*c));
        }
        let y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
        let bits = _mm256_add_epi32(_mm256_castps_si256(y), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23));
        _mm256_castsi256_ps(bits)
    }

    // SAFETY (every method): only reached from `head`, which requires AVX2 and FMA; every
    // load and store stays inside the slices, whose lengths are multiples of 8 where noted.
    impl Kernel for Avx2 {
        #[inline(always)]
        fn scores(q: &[f32], hd: usize, keys: &[f32], scale: f32, scores: &mut [f32]) {
            let len = keys.len() / hd;
            debug_assert!(hd.is_multiple_of(LANES) && scores.len() * hd == q.len() * len);
            // Up to 4 heads at a time, each key row loaded once for all of them.
            for (q, scores) in q.chunks(4 * hd).zip(scores.chunks_mut(4 * len)) {
                unsafe { by_rows!(q.len() / hd, H in [4, 3, 2] => scores_heads::<H>(q, hd, keys, scale, scores)) }
            }
        }

        #[inline(always)]
        fn max(scores: &[f32]) -> f32 {
            let chunks = scores.chunks_exact(LANES);
            let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            unsafe {
                let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
                for c in chunks {
                    m = _mm256_max_ps(m, _mm256_loadu_ps(c.as_ptr()));
                }
                let mut lanes = [0f32; LANES];
                _mm256_storeu_ps(lanes.as_mut_ptr(), m);
                lanes.iter().fold(tail, |m, &s| m.max(s))
            }
        }

        #[inline(always)]
        fn exp_sum(scores: &mut [f32], max: f32) -> f32 {
            unsafe {
                let mut acc = _mm256_setzero_ps();
                let m = _mm256_set1_ps(max);
                let mut chunks = scores.chunks_exact_mut(LANES);
                for c in &mut chunks {
                    let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m));
                    _mm256_storeu_ps(c.as_mut_ptr(), e);
                    acc = _mm256_add_ps(acc, e);
                }
                // The tail in lanes 0..rem, as the scalar version adds it; adding 0 to the
                // other lanes changes nothing (the sums are positive).
                let tail = chunks.into_remainder();
                let mut lanes = [f32::NEG_INFINITY; LANES];
                lanes[..tail.len()].copy_from_slice(tail);
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(lanes.as_ptr()), m));
                _mm256_storeu_ps(lanes.as_mut_ptr(), e);
                tail.copy_from_slice(&lanes[..tail.len()]);
                let keep = _mm256_cmp_ps(
                    _mm256_loadu_ps(super::TAIL_MASK[tail.len()].as_ptr()),
                    _mm256_setzero_ps(),
                    _CMP_NEQ_OQ,
                );
                acc = _mm256_add_ps(acc, _mm256_and_ps(e, keep));
                _mm_cvtss_f32(reduce4([acc, _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()]))
            }
        }

        #[inline(always)]
        fn weighted(weights: &[f32], values: &[f32], sums: &[f32], out: &mut [f32]) {
            let (hd, len) = (out.len() / sums.len(), weights.len() / sums.len());
            debug_assert!(hd.is_multiple_of(LANES) && values.len() == len * hd);
            // Up to 4 heads at a time, each value row loaded once for all of them.
            for ((weights, sums), out) in weights.chunks(4 * len).zip(sums.chunks(4)).zip(out.chunks_mut(4 * hd)) {
                unsafe { by_rows!(sums.len(), H in [4, 3, 2] => weighted_heads::<H>(weights, values, sums, out)) }
            }
        }
    }

    /// [`Kernel::scores`] for `H` heads: two key rows at a time, each head's sum in its own
    /// register, reduced as [`super::reduce`] does.
    #[inline(always)]
    unsafe fn scores_heads<const H: usize>(q: &[f32], hd: usize, keys: &[f32], scale: f32, scores: &mut [f32]) {
        let len = keys.len() / hd;
        let (q, k) = (q.as_ptr(), keys.as_ptr());
        let mut p = 0;
        while p < len {
            // Two rows, or the last one alone (its second sum stays unused).
            let rows = if p + 2 <= len { 2 } else { 1 };
            let mut acc = [[_mm256_setzero_ps(); 2]; H];
            for i in (0..hd).step_by(LANES) {
                let k0 = _mm256_loadu_ps(k.add(p * hd + i));
                let k1 = if rows == 2 { _mm256_loadu_ps(k.add((p + 1) * hd + i)) } else { k0 };
                for (j, acc) in acc.iter_mut().enumerate() {
                    let qj = _mm256_loadu_ps(q.add(j * hd + i));
                    acc[0] = _mm256_fmadd_ps(qj, k0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(qj, k1, acc[1]);
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                let zero = _mm256_setzero_ps();
                let mut s = [0f32; 4];
                _mm_storeu_ps(s.as_mut_ptr(), _mm_mul_ps(reduce4([acc[0], acc[1], zero, zero]), _mm_set1_ps(scale)));
                scores[j * len..][p..p + rows].copy_from_slice(&s[..rows]);
            }
            p += rows;
        }
    }

    /// [`Kernel::weighted`] for `H` heads, 16 dims (or the last 8) at a time kept in registers
    /// over all positions.
    #[inline(always)]
    unsafe fn weighted_heads<const H: usize>(weights: &[f32], values: &[f32], sums: &[f32], out: &mut [f32]) {
        let hd = out.len() / H;
        let mut d = 0;
        while d < hd {
            if d + 2 * LANES <= hd {
                weighted_cols::<H, 2>(weights, values, hd, d, sums, out);
                d += 2 * LANES;
            } else {
                weighted_cols::<H, 1>(weights, values, hd, d, sums, out);
                d += LANES;
            }
        }
    }

    /// Dims `d..d + 8 W` of [`weighted_heads`].
    #[inline(always)]
    unsafe fn weighted_cols<const H: usize, const W: usize>(
        weights: &[f32],
        values: &[f32],
        hd: usize,
        d: usize,
        sums: &[f32],
        out: &mut [f32],
    ) {
        let len = weights.len() / H;
        let (v, w) = (values.as_ptr().add(d), weights.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); W]; H];
        for p in 0..len {
            let rows: [__m256; W] = std::array::from_fn(|i| _mm256_loadu_ps(v.add(p * hd + i * LANES)));
            for (j, acc) in acc.iter_mut().enumerate() {
                let wj = _mm256_set1_ps(*w.add(j * len + p));
                for (acc, row) in acc.iter_mut().zip(&rows) {
                    *acc = _mm256_fmadd_ps(wj, *row, *acc);
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            let s = _mm256_set1_ps(sums[j]);
            for (i, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(j * hd + d + i * LANES), _mm256_div_ps(*acc, s));
            }
        }
    }

    /// [`super::exp_in_place`]: whole vectors, then the tail one by one.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_in_place(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(LANES);
        for c in &mut chunks {
            _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr())));
        }
        chunks.into_remainder().iter_mut().for_each(|x| *x = super::exp(*x));
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head(h: &Head, scratch: &mut Scratch, out: &mut [f32]) {
        head_with::<Avx2>(h, scratch, out)
    }
}

/// Row r: 1 in lanes `0..r`, 0 after.
#[cfg(target_arch = "x86_64")]
const TAIL_MASK: [[f32; LANES]; LANES] = {
    let mut m = [[0f32; LANES]; LANES];
    let mut r = 0;
    while r < LANES {
        let mut i = 0;
        while i < r {
            m[r][i] = 1.0;
            i += 1;
        }
        r += 1;
    }
    m
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention in f64, straight from the definition.
    fn reference(q: &[f32], keys: &[f32], values: &[f32], rows: &[(usize, usize)], s: Shape) -> Vec<f32> {
        let (tokens, hd, group) = (rows.len(), s.head_dim, s.heads / s.kv_heads);
        let mut out = vec![0f32; tokens * s.heads * hd];
        for (t, &(slot, pos)) in rows.iter().enumerate() {
            for h in 0..s.heads {
                let base = (slot * s.kv_heads + h / group) * s.max_len * hd;
                let qv = &q[(t * s.heads + h) * hd..][..hd];
                let scores: Vec<f64> = (0..=pos)
                    .map(|p| {
                        let k = &keys[base + p * hd..][..hd];
                        qv.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let v: f64 = e.iter().enumerate().map(|(p, w)| w * values[base + p * hd + d] as f64).sum();
                    out[(t * s.heads + h) * hd + d] = (v / sum) as f32;
                }
            }
        }
        out
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    /// Within 2 ulp of f64's exp on the range the scores take.
    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            let ulp = f32::EPSILON as f64 * want;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    /// Against the f64 definition; the same bits from the AVX2 and scalar kernels; and a
    /// token's bits do not depend on which other tokens share the step.
    #[test]
    fn attends_like_the_definition_with_the_same_bits_in_any_batch() {
        for shape in [
            Shape { heads: 9, kv_heads: 3, head_dim: 64, max_len: 40 },
            Shape { heads: 8, kv_heads: 2, head_dim: 8, max_len: 33 },
            Shape { heads: 4, kv_heads: 4, head_dim: 128, max_len: 20 },
        ] {
            let slots = 3;
            let cache = slots * shape.kv_heads * shape.max_len * shape.head_dim;
            let (keys, values) = (random(cache, 1), random(cache, 2));
            // A prompt piece (slot 1, positions 5..9), decode rows, position 0, the last position.
            let rows = [(1, 5), (1, 6), (1, 7), (1, 8), (0, 17), (2, 0), (0, shape.max_len - 1)];
            let q = random(shape.heads * rows.len() * shape.head_dim, 3);
            let want = reference(&q, &keys, &values, &rows, shape);
            let got = attend(&q, &keys, &values, &rows, shape, true);
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{shape:?}: max abs diff {worst} from the f64 definition");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let scalar = attend(&q, &keys, &values, &rows, shape, false);
            assert_eq!(bits(&got), bits(&scalar), "{shape:?}: AVX2 vs scalar bits");
            // Each token alone: its row of `q`.
            let width = shape.heads * shape.head_dim;
            for (t, &row) in rows.iter().enumerate() {
                let alone = attend(&q[t * width..][..width], &keys, &values, &[row], shape, true);
                assert_eq!(bits(&alone), bits(&got[t * width..][..width]), "{shape:?}: token {t} alone");
            }
        }
    }
}

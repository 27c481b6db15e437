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
/// `q`: the step's queries after RoPE, `[heads, tokens, head_dim]`; `keys`, `values`: one
/// layer's cache, `[slots, kv_heads, max_len, head_dim]`, already holding this step's keys
/// and values; `rows[t]`: token t's (slot, position). Returns `[tokens, heads * head_dim]`.
pub fn attend(q: &[f32], keys: &[f32], values: &[f32], rows: &[(usize, usize)], shape: Shape, simd: bool) -> Vec<f32> {
    let Shape { heads, kv_heads, head_dim: hd, max_len } = shape;
    let group = heads / kv_heads;
    let tokens = rows.len();
    assert!(hd.is_multiple_of(LANES) && heads.is_multiple_of(kv_heads) && q.len() == heads * tokens * hd, "attention shapes");
    let mut out = vec![0f32; tokens * heads * hd];
    // One work item per (token, kv head): its query heads' output columns, contiguous.
    out.par_chunks_mut(group * hd).enumerate().for_each(|(item, out)| {
        let (t, g) = (item / kv_heads, item % kv_heads);
        let (slot, position) = rows[t];
        let cache = ((slot * kv_heads + g) * max_len) * hd;
        let len = position + 1;
        let head = Head {
            q: &q[(g * group * tokens + t) * hd..],
            q_stride: tokens * hd,
            keys: &keys[cache..cache + len * hd],
            values: &values[cache..cache + len * hd],
            group,
            hd,
        };
        #[cfg(target_arch = "x86_64")]
        if simd && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { avx2::head(&head, out) };
            return;
        }
        let _ = simd;
        head_with::<Scalar>(&head, out);
    });
    out
}

/// One (token, kv head) item: `group` query heads against `len` cached positions.
struct Head<'a> {
    /// Query head j of the group starts at `q[j * q_stride]`.
    q: &'a [f32],
    q_stride: usize,
    keys: &'a [f32],
    values: &'a [f32],
    group: usize,
    hd: usize,
}

const LANES: usize = 8;

/// The two vector operations, in scalar and AVX2 versions that round alike.
trait Kernel {
    /// `Σ a[i] b[i]`: eight lane sums by fused multiply-add, then [`reduce`].
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// `acc[i] += w * v[i]`, fused.
    fn axpy(acc: &mut [f32], w: f32, v: &[f32]);
}

/// The eight lane sums added in a fixed tree: (0+4)+(2+6) plus (1+5)+(3+7).
#[inline(always)]
fn reduce(l: [f32; LANES]) -> f32 {
    let s = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

struct Scalar;

impl Kernel for Scalar {
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut l = [0f32; LANES];
        for (a, b) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            for i in 0..LANES {
                l[i] = a[i].mul_add(b[i], l[i]);
            }
        }
        reduce(l)
    }

    fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
        for (a, v) in acc.iter_mut().zip(v) {
            *a = w.mul_add(*v, *a);
        }
    }
}

/// Scores, softmax and weighted values of one item; `out`: `[group, hd]`.
#[inline(always)]
fn head_with<K: Kernel>(h: &Head, out: &mut [f32]) {
    let hd = h.hd;
    let len = h.keys.len() / hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut weights = vec![0f32; h.group * len];
    for (p, key) in h.keys.chunks_exact(hd).enumerate() {
        for j in 0..h.group {
            weights[j * len + p] = K::dot(&h.q[j * h.q_stride..][..hd], key) * scale;
        }
    }
    let mut sums = vec![0f32; h.group];
    for (scores, sum) in weights.chunks_exact_mut(len).zip(sums.iter_mut()) {
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            *sum += *s;
        }
    }
    for (p, value) in h.values.chunks_exact(hd).enumerate() {
        for (j, out) in out.chunks_exact_mut(hd).enumerate() {
            K::axpy(out, weights[j * len + p], value);
        }
    }
    for (out, sum) in out.chunks_exact_mut(hd).zip(sums.iter()) {
        for o in out {
            *o /= sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{head_with, Head, Kernel, LANES};

    struct Avx2;

    impl Kernel for Avx2 {
        #[inline(always)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            debug_assert!(a.len() >= b.len() && b.len().is_multiple_of(LANES));
            // SAFETY: only reached from `head`, which requires AVX2 and FMA; every load reads
            // 8 floats inside `b` (and `a`, at least as long).
            unsafe {
                let mut acc = _mm256_setzero_ps();
                for i in (0..b.len()).step_by(LANES) {
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc);
                }
                // Lanes l0..l7: (l0+l4, l1+l5, l2+l6, l3+l7), then as `reduce`.
                let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                _mm_cvtss_f32(s)
            }
        }

        #[inline(always)]
        fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
            debug_assert!(acc.len() == v.len() && v.len().is_multiple_of(LANES));
            // SAFETY: as in `dot`; loads and stores stay inside `acc` and `v`.
            unsafe {
                let w = _mm256_set1_ps(w);
                for i in (0..v.len()).step_by(LANES) {
                    let a = acc.as_mut_ptr().add(i);
                    _mm256_storeu_ps(a, _mm256_fmadd_ps(w, _mm256_loadu_ps(v.as_ptr().add(i)), _mm256_loadu_ps(a)));
                }
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head(h: &Head, out: &mut [f32]) {
        head_with::<Avx2>(h, out)
    }
}

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
                let qv = &q[(h * tokens + t) * hd..][..hd];
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
            let scalar = attend(&q, &keys, &values, &rows, shape, false);
            assert!(got.iter().zip(&scalar).all(|(a, b)| a.to_bits() == b.to_bits()), "{shape:?}: AVX2 vs scalar bits");

            // Each token alone: its query columns of `q`, one row.
            let width = shape.heads * shape.head_dim;
            for (t, &row) in rows.iter().enumerate() {
                let q1: Vec<f32> = (0..shape.heads)
                    .flat_map(|h| q[(h * rows.len() + t) * shape.head_dim..][..shape.head_dim].to_vec())
                    .collect();
                let alone = attend(&q1, &keys, &values, &[row], shape, true);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&alone), bits(&got[t * width..][..width]), "{shape:?}: token {t} alone");
            }
        }
    }
}

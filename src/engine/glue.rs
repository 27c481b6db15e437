//! The element-wise work between the matmuls of a CPU step
//! ([`crate::engine::models::AttentionPath::Fused`]), on
//! plain row-major buffers: the residual add fused with the next RMS norm, RoPE on
//! token-major heads, and SiLU(gate) · up.
//!
//! Through candle each of these is an op of its own: a fresh tensor, often a transposed copy,
//! and a hand-off to its thread pool (about a dozen per layer). Here a step's rows are a few
//! thousand floats, so each function is one pass on the calling thread, split over rayon only
//! when the buffer is large (prefill). Every value is computed from its own row in a fixed
//! order, so the bits do not depend on the batch or the thread count; the one vector kernel
//! (`exp`, from `attention.rs`) gives the scalar version's bits.

use rayon::prelude::*;

/// Rows of at least this many floats in all go to rayon; fewer run on the calling thread.
const PARALLEL_FLOATS: usize = 1 << 16;

/// For each row of `x` (`[rows, width]`): `x += residual` (when given), then `out = x / rms(x) ·
/// weight`, `rms(x) = sqrt(mean(x²) + eps)`.
pub fn add_rms_norm(x: &mut [f32], residual: Option<&[f32]>, weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    let row = |(i, (x, out)): (usize, (&mut [f32], &mut [f32]))| {
        if let Some(r) = residual {
            x.iter_mut().zip(&r[i * width..(i + 1) * width]).for_each(|(x, r)| *x += r);
        }
        let scale = inverse_rms(x, eps);
        out.iter_mut().zip(x.iter()).zip(weight).for_each(|((o, x), w)| *o = x * scale * w);
    };
    if x.len() >= PARALLEL_FLOATS {
        x.par_chunks_mut(width).zip(out.par_chunks_mut(width)).enumerate().for_each(row);
    } else {
        x.chunks_mut(width).zip(out.chunks_mut(width)).enumerate().for_each(row);
    }
}

/// `x += residual`, element by element.
pub fn add(x: &mut [f32], residual: &[f32]) {
    x.iter_mut().zip(residual).for_each(|(x, r)| *x += r);
}

/// RMS norm of every `weight.len()`-wide row of `x`, in place (Qwen3's per-head norms).
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    for x in x.chunks_mut(weight.len()) {
        let scale = inverse_rms(x, eps);
        x.iter_mut().zip(weight).for_each(|(x, w)| *x = *x * scale * w);
    }
}

/// `1 / sqrt(mean(x²) + eps)`, the squares summed in eight lanes and then added in a fixed tree.
fn inverse_rms(x: &[f32], eps: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v * v;
        }
    }
    let sum = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7])) + tail;
    1.0 / (sum / x.len() as f32 + eps).sqrt()
}

/// Rotary embedding of `x`, `[tokens, heads, head_dim]`, token `t` at `positions[t]`; `cos` and
/// `sin` are the tables `[positions, head_dim / 2]`. `interleaved`: pairs `(2i, 2i + 1)`, else
/// halves `(i, i + head_dim / 2)`. The products and sums of candle's `rope`/`rope_i`, so the same
/// bits.
pub fn rope(x: &mut [f32], head_dim: usize, positions: &[usize], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = head_dim / 2;
    let token = x.len() / positions.len().max(1);
    for (x, &p) in x.chunks_mut(token).zip(positions) {
        let (cos, sin) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                let (x1, x2) = (head[a], head[b]);
                head[a] = x1 * cos[i] - x2 * sin[i];
                head[b] = x1 * sin[i] + x2 * cos[i];
            }
        }
    }
}

/// `gate = silu(gate) · up`, `silu(g) = g · sigmoid(g)`, with `sigmoid` from `exp(−|g|)` (so
/// the exponential only sees `x ≤ 0`, where `attention.rs`'s is accurate).
pub fn silu_mul(gate: &mut [f32], up: &[f32], simd: bool) {
    const CHUNK: usize = 64;
    let run = |(gate, up): (&mut [f32], &[f32])| {
        let mut e = [0f32; CHUNK];
        for (gate, up) in gate.chunks_mut(CHUNK).zip(up.chunks(CHUNK)) {
            let e = &mut e[..gate.len()];
            e.iter_mut().zip(gate.iter()).for_each(|(e, g)| *e = -g.abs());
            crate::engine::attention::exp_in_place(e, simd);
            for ((g, u), e) in gate.iter_mut().zip(up).zip(e.iter()) {
                let sigmoid = if *g >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
                *g = *g * sigmoid * u;
            }
        }
    };
    if gate.len() >= PARALLEL_FLOATS {
        gate.par_chunks_mut(PARALLEL_FLOATS / 16).zip(up.par_chunks(PARALLEL_FLOATS / 16)).for_each(run);
    } else {
        run((gate, up));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    }

    #[test]
    fn add_rms_norm_matches_candle() {
        let (rows, width) = (5, 100);
        let (x0, r, w) = (random(rows * width, 1), random(rows * width, 2), random(width, 3));
        let dev = Device::Cpu;
        let sum = (Tensor::from_slice(&x0, (rows, width), &dev).unwrap()
            + Tensor::from_slice(&r, (rows, width), &dev).unwrap())
        .unwrap();
        let want = candle_nn::ops::rms_norm(&sum, &Tensor::from_slice(&w, width, &dev).unwrap(), 1e-5).unwrap();
        let mut x = x0.clone();
        let mut out = vec![0f32; rows * width];
        add_rms_norm(&mut x, Some(&r), &w, 1e-5, &mut out);
        assert_eq!(x, sum.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "the residual sum");
        assert!(worst(&out, &want.flatten_all().unwrap().to_vec1::<f32>().unwrap()) < 1e-5);
    }

    #[test]
    fn rope_gives_candles_bits_in_both_layouts() {
        let (tokens, heads, hd, table) = (3, 4, 16, 10);
        let x = random(tokens * heads * hd, 4);
        let positions = [7usize, 0, 9];
        let (cos, sin) = (random(table * hd / 2, 5), random(table * hd / 2, 6));
        let dev = Device::Cpu;
        let pick = |t: &[f32]| {
            let rows: Vec<f32> = positions.iter().flat_map(|&p| t[p * hd / 2..(p + 1) * hd / 2].to_vec()).collect();
            Tensor::from_vec(rows, (tokens, hd / 2), &dev).unwrap()
        };
        for interleaved in [false, true] {
            // candle's layout: [1, heads, tokens, hd].
            let xt = Tensor::from_slice(&x, (tokens, heads, hd), &dev).unwrap();
            let xt = xt.transpose(0, 1).unwrap().unsqueeze(0).unwrap().contiguous().unwrap();
            let f = if interleaved { candle_nn::rotary_emb::rope_i } else { candle_nn::rotary_emb::rope };
            let want = f(&xt, &pick(&cos), &pick(&sin)).unwrap();
            let want = want.squeeze(0).unwrap().transpose(0, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>();
            let mut got = x.clone();
            rope(&mut got, hd, &positions, &cos, &sin, interleaved);
            assert_eq!(got, want.unwrap(), "interleaved: {interleaved}");
        }
    }

    #[test]
    fn silu_mul_matches_the_definition_with_the_same_bits_at_every_level() {
        let n = 1000;
        let (g, u) = (random(n, 7), random(n, 8));
        let mut got = g.clone();
        silu_mul(&mut got, &u, true);
        let want: Vec<f32> =
            g.iter().zip(&u).map(|(&g, &u)| ((g as f64 / (1.0 + (-g as f64).exp())) * u as f64) as f32).collect();
        assert!(worst(&got, &want) < 1e-5);
        let mut scalar = g.clone();
        silu_mul(&mut scalar, &u, false);
        assert_eq!(got, scalar);
        // Large magnitudes: no overflow to NaN.
        let mut big = vec![-200.0, 200.0, -88.0, 88.0];
        silu_mul(&mut big, &[1.0; 4], true);
        assert!(big[0].abs() < 1e-30 && big[1] == 200.0, "{big:?}");
        assert!(big.iter().all(|v| v.is_finite()));
    }
}

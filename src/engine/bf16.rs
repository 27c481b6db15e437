//! A CPU matmul over bf16 weights with f32 activations and f32 accumulation, so a bf16
//! safetensors checkpoint takes 2 bytes per parameter in memory instead of f32's 4.
//!
//! The weights are tiled like `quant.rs`'s: 8 columns side by side, so one 128-bit load holds
//! element `i` of all 8 and widens to one 256-bit register (a bf16 is the top half of an f32);
//! each load serves 4 activation rows. Every row's sums are its own, in a fixed order, so a
//! row's result does not depend on which rows it is batched with.

use super::kquant::COLS;

/// `[n, k]` bf16 weights (as raw bits) as tiles: tile `t`, element `i` at `[t * k + i]`, the
/// last tile padded with zero columns.
pub fn pack(bits: &[u16], n: usize, k: usize) -> Vec<[u16; COLS]> {
    assert_eq!(bits.len(), n * k, "bf16 tensor size");
    let mut tiles = vec![[0u16; COLS]; n.div_ceil(COLS) * k];
    for col in 0..n {
        for (i, &b) in bits[col * k..(col + 1) * k].iter().enumerate() {
            tiles[col / COLS * k + i][col % COLS] = b;
        }
    }
    tiles
}

/// Dots of one tile's 8 columns (`w`, `k` elements) with `out.len()` rows of `x` (`k` floats
/// each), any number: the kernel takes them `ROWS` at a time in one call.
pub fn tile(w: &[[u16; COLS]], x: &[f32], out: &mut [[f32; COLS]], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only set when the CPU has AVX2 and FMA.
        unsafe { avx2::rows(w, x, out) };
        return;
    }
    let _ = simd;
    for (x, out) in x.chunks_exact(w.len()).zip(out) {
        for (c, out) in out.iter_mut().enumerate() {
            // Two interleaved sums, as the vector kernel keeps them.
            let mut acc = [0f32; 2];
            for (i, (wi, xi)) in w.iter().zip(x).enumerate() {
                acc[i % 2] = f32::from_bits((wi[c] as u32) << 16).mul_add(*xi, acc[i % 2]);
            }
            *out = acc[0] + acc[1];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::COLS;
    use crate::engine::kquant::in_row_groups;

    #[inline(always)]
    unsafe fn widen(w: &[u16; COLS]) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(
            w.as_ptr() as *const __m128i
        ))))
    }

    /// [`tile`] on every row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows(w: &[[u16; COLS]], x: &[f32], out: &mut [[f32; COLS]]) {
        in_row_groups!(w, x, out, R => |x, out| tile::<R>(w, x, out))
    }

    /// `R` rows of `x` against one tile.
    #[inline(always)]
    unsafe fn tile<const R: usize>(w: &[[u16; COLS]], x: &[f32], out: &mut [[f32; COLS]]) {
        let k = w.len();
        // Two accumulators per row (even and odd elements) to hide the fma latency.
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (i, wi) in w.iter().enumerate() {
            let wv = widen(wi);
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*x.get_unchecked(r * k + i));
                acc[i % 2] = _mm256_fmadd_ps(wv, xv, acc[i % 2]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(out[r].as_mut_ptr(), _mm256_add_ps(acc[0], acc[1]));
        }
    }
}

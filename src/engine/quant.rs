//! CPU matmuls for GGUF Q4_1 and Q8_0 weights that give the same f32 bits as candle's
//! `QMatMul::forward`, but reuse each weight block across several activation rows.
//!
//! candle 0.11 computes every (row, column) dot on its own, and Q4_1's without SIMD, so a batch
//! of rows costs as much per row as one row. Here the weights are repacked at load into tiles of
//! 8 columns whose bytes interleave so that one 256-bit register holds 4 elements of each of the
//! 8 columns: one load of a weight tile serves several rows, and the 8 columns' dots land in the
//! 8 lanes of one register with no horizontal sums.
//!
//! Why bit-identical: on Q4_1 models a one-ulp change anywhere flips an 8-bit activation
//! quantization step and moves logits by ~0.5 (tests/oracle_gguf.rs). So the activations are
//! quantized exactly as candle's `BlockQ8_1::from_float` (or `BlockQ8_0`'s), the per-block
//! integer dots are exact, and the f32 accumulation repeats candle's operations in candle's
//! order: for Q4_1 its scalar `vec_dot_unopt` (the only path it has), for Q8_0 its AVX2
//! `vec_dot_q8_0_q8_0` (8 lane accumulators, fma, then `hsum_float_8`).
//!
//! The other GGUF types users download (K-quants, Q4_0, Q5_0/Q5_1, Q8_0 where the above does
//! not apply) go through `kquant.rs`'s kernels in the same tiles and parallel region: not
//! bit-identical to candle, but within the activations' rounding of the exact f32 product.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use half::f16;
use rayon::prelude::*;

// QK: elements per block (Q4_1, Q8_0, Q8_1 alike); COLS: columns per weight tile, one per
// 32-bit lane of a 256-bit register; ROWS: activation rows each weight tile is loaded for.
use super::bf16;
use super::kquant::{self, KTiles, COLS, QK, ROWS, ROWS2};

/// One Q4_1 block of 8 columns. `qs[g][4 * c + i]` is column `c`'s byte `4 * g + i`, whose low
/// nibble is element `4 * g + i` and high nibble element `16 + 4 * g + i` (GGUF's layout).
#[derive(Clone, Copy)]
#[repr(C)]
struct Q4_1x8 {
    qs: [[u8; 32]; 4],
    d: [f16; COLS],
    m: [f16; COLS],
}

/// One Q8_0 block of 8 columns. `qs[g][4 * c + i]` is column `c`'s element `4 * g + i`.
#[derive(Clone, Copy)]
#[repr(C)]
struct Q8_0x8 {
    qs: [[i8; 32]; 8],
    d: [f16; COLS],
}

/// One block of an activation row, quantized as candle's `BlockQ8_1::from_float`; Q8_0 uses
/// the same `qs` and `d` and ignores `s`. The scales are kept as the f32 values of candle's f16s.
#[derive(Clone, Copy)]
#[repr(C)]
struct ActBlock {
    qs: [i8; QK],
    /// `qs + 128` as unsigned bytes, for `vpdpbusd` against signed Q8_0 weights.
    qu: [u8; QK],
    d: f32,
    s: f32,
}

enum Tiles {
    Q4_1(Vec<Q4_1x8>),
    Q8_0(Vec<Q8_0x8>),
    /// kquant.rs's tiles, tagged with their GGUF type.
    K(GgmlDType, KTiles),
    /// bf16.rs's tiles of dense bf16 weights (safetensors on CPU).
    Bf16(Vec<[u16; COLS]>),
}

/// A linear layer `x @ wᵀ` over repacked GGUF weights, on CPU. Tile `t`, block `b` is at
/// `tiles[t * blocks + b]`; the last tile is padded with zero columns.
pub struct PackedLinear {
    tiles: Tiles,
    /// Output columns (the weight's rows) and input size.
    n: usize,
    k: usize,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dtype = match self.tiles {
            Tiles::Q4_1(_) => GgmlDType::Q4_1,
            Tiles::Q8_0(_) => GgmlDType::Q8_0,
            Tiles::K(dtype, _) => dtype,
            Tiles::Bf16(_) => GgmlDType::BF16,
        };
        write!(f, "PackedLinear({dtype:?}, exact={}, n={}, k={})", self.is_exact(), self.n, self.k)
    }
}

impl PackedLinear {
    /// Repacks `w` (`[n, k]`) on CPU: bit for bit candle's result, faster, for Q4_1 always and,
    /// with `exact`, for Q8_0 where [`exact_capable`] says so; kquant.rs's kernels (faster, within
    /// the activations' rounding) for Q4_0, Q5_0, Q5_1, other Q8_0, Q4_K, Q5_K and Q6_K; `None`
    /// for any other type.
    pub fn new(w: &QTensor, exact: bool) -> Result<Option<Self>> {
        if !matches!(w.device(), Device::Cpu) {
            return Ok(None);
        }
        let (n, k) = w.shape().dims2()?;
        if k % QK != 0 {
            return Ok(None);
        }
        let tiles = match w.dtype() {
            GgmlDType::Q4_1 => Tiles::Q4_1(pack_q4_1(&w.data()?, n, k)),
            GgmlDType::Q8_0 if exact && exact_capable(GgmlDType::Q8_0, k) => Tiles::Q8_0(pack_q8_0(&w.data()?, n, k)),
            dtype => match KTiles::pack(dtype, &w.data()?, n, k) {
                Some(tiles) => Tiles::K(dtype, tiles),
                None => return Ok(None),
            },
        };
        Ok(Some(Self { tiles, n, k }))
    }

    /// Tiles a dense `[n, k]` bf16 weight for bf16.rs's kernel (f32 activations and sums).
    pub fn from_bf16(w: &Tensor) -> Result<Self> {
        let (n, k) = w.dims2()?;
        let bits: Vec<u16> = w.flatten_all()?.to_vec1::<half::bf16>()?.into_iter().map(|b| b.to_bits()).collect();
        Ok(Self { tiles: Tiles::Bf16(bf16::pack(&bits, n, k)), n, k })
    }

    /// Whether [`Self::forward`] gives candle's QMatMul bits (else kquant.rs's tolerance, or
    /// bf16.rs's f32 sums).
    pub fn is_exact(&self) -> bool {
        matches!(self.tiles, Tiles::Q4_1(_) | Tiles::Q8_0(_))
    }

    fn is_k(&self) -> bool {
        matches!(self.tiles, Tiles::K(..))
    }

    /// `x`: `[..., k]` f32 on CPU; returns `[..., n]` (see [`Self::is_exact`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(Self::forward_shared(&[self], x)?.pop().expect("one layer"))
    }

    /// [`Self::forward`] for several layers that read the same `x` (q, k, v; gate, up): `x` is
    /// quantized once and all their tiles share one parallel region.
    pub fn forward_shared(layers: &[&Self], x: &Tensor) -> Result<Vec<Tensor>> {
        Self::forward_at(layers, x, kernel_level())
    }

    fn forward_at(layers: &[&Self], x: &Tensor, level: Level) -> Result<Vec<Tensor>> {
        let Some(k) = layers.first().map(|l| l.k) else {
            return Ok(Vec::new());
        };
        if layers.iter().any(|l| l.k != k) {
            candle_core::bail!("layers sharing an input must have the same input size");
        }
        let x = x.contiguous()?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&k) {
            candle_core::bail!("input {:?} does not end in the weight's input size {k}", x.shape());
        }
        if x.dtype() != DType::F32 {
            candle_core::bail!("packed quantized matmul takes f32 input, got {:?}", x.dtype());
        }
        let m = x.elem_count() / k;
        let out_dims = |n: usize| [&dims[..dims.len() - 1], &[n]].concat();
        let outs = {
            let (storage, layout) = x.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("packed quantized matmul runs on CPU");
            };
            Self::forward_rows_at(layers, &cpu.as_slice::<f32>()?[layout.start_offset()..][..m * k], level)
        };
        outs.into_iter().zip(layers).map(|(out, l)| Tensor::from_vec(out, out_dims(l.n), &Device::Cpu)).collect()
    }

    /// [`Self::forward_shared`] on plain buffers: `xs` is `[m, k]` row-major (`k` the layers'
    /// shared input size); returns each layer's `[m, n]`.
    pub fn forward_rows(layers: &[&Self], xs: &[f32]) -> Result<Vec<Vec<f32>>> {
        if let Some(k) = layers.first().map(|l| l.k) {
            if layers.iter().any(|l| l.k != k) || !xs.len().is_multiple_of(k) {
                candle_core::bail!("packed matmul: {} inputs are not rows of every layer's input size {k}", xs.len());
            }
        }
        Ok(Self::forward_rows_at(layers, xs, kernel_level()))
    }

    /// [`Self::forward_rows`] at `level`; `xs` holds whole rows of the layers' one input size.
    fn forward_rows_at(layers: &[&Self], xs: &[f32], level: Level) -> Vec<Vec<f32>> {
        let Some(k) = layers.first().map(|l| l.k) else {
            return Vec::new();
        };
        let m = xs.len() / k;
        if m == 0 {
            return layers.iter().map(|_| Vec::new()).collect();
        }
        let acts = Acts {
            exact: if layers.iter().any(|l| l.is_exact()) { quantize(xs, level, ActBlock::new) } else { Vec::new() },
            k: if layers.iter().any(|l| l.is_k()) { quantize(xs, level, kquant::Act::new) } else { Vec::new() },
            raw: if layers.iter().any(|l| matches!(l.tiles, Tiles::Bf16(_))) { xs.to_vec() } else { Vec::new() },
        };
        let mut outs: Vec<Vec<f32>> = layers.iter().map(|l| vec![0f32; m * l.n]).collect();
        let jobs: Vec<(&Self, usize)> =
            layers.iter().zip(&mut outs).map(|(l, o)| (*l, o.as_mut_ptr() as usize)).collect();
        let items = |l: &Self| l.n.div_ceil(COLS * l.tiles_per_item(level, m));
        let starts: Vec<usize> =
            layers.iter().scan(0, |acc, l| Some(std::mem::replace(acc, *acc + items(l)))).collect();
        let total = starts.last().expect("at least one layer") + items(layers.last().expect("at least one layer"));
        // Rayon rather than candle's spinning barrier pool: a work item nobody has stolen yet is
        // run by the caller, so a worker the OS has descheduled (a loaded machine) delays the
        // step by its current item at most, not by a whole time slice per matmul. Decoder::forward
        // runs inside candle's rayon pool, so this is that pool.
        // At least 256 block dots per task (some 65 thousand multiply-adds). Rayon halves a range
        // only while each half keeps that many, so this is what lets a single sequence's small
        // matmuls (SmolLM2: 72 tiles of 18 blocks) reach every thread: at 1024 they stayed whole,
        // on one thread (SmolLM2 Q4_K_M, 1 sequence, AVX2: 110-141 -> 152-168 tok/s).
        let tiles_per_item = layers.iter().map(|l| l.tiles_per_item(level, m)).max().unwrap_or(1);
        let min_len = 256usize.div_ceil((m * k.div_ceil(QK) * tiles_per_item).max(1));
        (0..total).into_par_iter().with_min_len(min_len).for_each_init(TileBuf::new, |buf, item| {
            let j = starts.partition_point(|&s| s <= item) - 1;
            let (layer, out) = jobs[j];
            // SAFETY: `out` holds m * n floats and only work item `item - starts[j]` of layer j
            // writes its columns; no two work items share a tile.
            unsafe { layer.tile(item - starts[j], &acts, m, out as *mut f32, level, buf) };
        });
        outs
    }

    /// Tiles per work item for `m` activation rows: kquant.rs's take two at a time with 512-bit
    /// kernels from 4 rows on (measured: a single row runs faster on 256-bit registers, 142 vs
    /// 97–107 tok/s on SmolLM2 Q4_K_M); both give the same bits.
    fn tiles_per_item(&self, level: Level, m: usize) -> usize {
        match self.tiles {
            Tiles::K(..) if level.isa() == kquant::Isa::Vnni512 && m >= ROWS => 2,
            _ => 1,
        }
    }

    /// Computes work item `item`'s columns of `out` (`[m, n]`, row-major) for all rows: tile
    /// `item` (columns `8 item..8 item + 8`), or tiles `2 item` and `2 item + 1` (see
    /// [`Self::tiles_per_item`]).
    ///
    /// # Safety
    /// `out` must point to `m * n` writable floats that nobody else writes in those columns.
    unsafe fn tile(&self, item: usize, acts: &Acts, m: usize, out: *mut f32, level: Level, buf: &mut TileBuf) {
        let (n, blocks) = (self.n, self.k / QK);
        let per_item = self.tiles_per_item(level, m);
        // The item's first tile, and how many it has (the last item may have one of two).
        let t = item * per_item;
        let count = per_item.min(n.div_ceil(COLS) - t);
        let span = t * blocks..(t + 1) * blocks;
        // A single tile's kernels take up to CHUNK rows per call: the dispatch costs about as
        // much as a few sub-blocks (SmolLM2's tiles have 18).
        // SAFETY (every in_chunks): the caller's.
        match &self.tiles {
            Tiles::K(_, w) if count == 1 => unsafe {
                in_chunks(&acts.k, blocks, out, n, t, &mut buf.rows, |a, tile| {
                    w.tile(t, blocks, a, tile, level.isa(), &mut buf.scales)
                })
            },
            Tiles::Q4_1(w) => unsafe {
                in_chunks(&acts.exact, blocks, out, n, t, &mut buf.rows, |a, tile| {
                    q4_1_tile(&w[span.clone()], a, tile, level)
                })
            },
            Tiles::Q8_0(w) => unsafe {
                in_chunks(&acts.exact, blocks, out, n, t, &mut buf.rows, |a, tile| {
                    q8_0_tile(&w[span.clone()], a, tile, level)
                })
            },
            // Two tiles at once, twice the rows per call (see `KTiles::tile2`).
            #[cfg(target_arch = "x86_64")]
            Tiles::K(_, w) => {
                for row in (0..m).step_by(ROWS2) {
                    let rows = ROWS2.min(m - row);
                    // SAFETY: two tiles per item only at Level::Vnni512 (tiles_per_item), which
                    // levels() offers only when the CPU has AVX-512 F, BW, VL and VNNI.
                    unsafe { w.tile2(t, blocks, &acts.k[row * blocks..(row + rows) * blocks], rows, &mut buf.pair) };
                    for (i, tile) in buf.pair.iter().take(count).enumerate() {
                        // SAFETY: the caller's.
                        unsafe { copy_out(&tile[..rows], out, n, row, (t + i) * COLS) };
                    }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            Tiles::K(..) => unreachable!("two tiles per item only at Level::Vnni512"),
            Tiles::Bf16(w) => unsafe {
                in_chunks(&acts.raw, self.k, out, n, t, &mut buf.rows, |x, tile| {
                    bf16::tile(&w[t * self.k..(t + 1) * self.k], x, tile, level != Level::Scalar)
                })
            },
        }
    }
}

/// Rows of one tile per kernel call (see [`in_chunks`]).
const CHUNK: usize = 32;

/// A rayon task's buffers for its tiles' results on their way to [`copy_out`], reused from
/// work item to work item: every kernel writes each row it is given, so they are not cleared
/// (clearing the 1 KB one per tile was a per-tile `memset`).
struct TileBuf {
    /// Up to [`CHUNK`] rows of one tile.
    rows: [[f32; COLS]; CHUNK],
    /// Up to [`ROWS2`] rows of two tiles ([`KTiles::tile2`]).
    pair: [[[f32; COLS]; ROWS2]; 2],
    /// A K tile's scales for its row groups ([`KTiles::tile`]).
    scales: kquant::ScaleCache,
}

impl TileBuf {
    fn new() -> Self {
        Self { rows: [[0.0; COLS]; CHUNK], pair: [[[0.0; COLS]; ROWS2]; 2], scales: Default::default() }
    }
}

/// One step's input, quantized for the exact kernels and for kquant.rs's (each only if needed).
struct Acts {
    exact: Vec<ActBlock>,
    k: Vec<kquant::Act>,
    /// The f32 input itself, for bf16 weights.
    raw: Vec<f32>,
}

/// Quantizes `xs` (rows whose width is a multiple of 32) block by block: each block rounded by
/// [`round_block`], then made into `T` (`ActBlock::new` for the exact kernels,
/// `kquant::Act::new` for kquant.rs's).
fn quantize<T: Send>(xs: &[f32], level: Level, make: impl Fn(f32, [i8; QK]) -> T + Sync) -> Vec<T> {
    // Shared out from a few hundred blocks on (a batch's step), where one thread would keep the
    // others waiting; each block is rounded on its own, so the result does not depend on it.
    xs.par_chunks_exact(QK)
        .with_min_len(256)
        .map(|x| {
            let (d, qs) = round_block(x.try_into().expect("chunks of QK"), level);
            make(d, qs)
        })
        .collect()
}

impl ActBlock {
    /// A block rounded to `qs` with scale `d`, as candle's `BlockQ8_1::from_float`.
    fn new(d: f32, qs: [i8; QK]) -> Self {
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        let d = f16::from_f32(d);
        // candle multiplies the two f16s (half rounds the f32 product back to f16).
        let s = (f16::from_f32(sum as f32) * d).to_f32();
        Self { qs, qu: qs.map(|q| (q as u8) ^ 0x80), d: d.to_f32(), s }
    }
}

/// The step both activation formats share: scale `d = amax / 127` and `(x / d).round() as i8`
/// (round half away from zero), the same bits on every level.
fn round_block(x: &[f32; QK], level: Level) -> (f32, [i8; QK]) {
    let amax = match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Level::Avx2 is only chosen when the CPU has AVX2.
        Level::Avx2 | Level::Vnni | Level::Vnni512 => unsafe { avx2::amax(x) },
        Level::Scalar => x.iter().fold(0f32, |a, v| a.max(v.abs())),
    };
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx2 | Level::Vnni | Level::Vnni512 => unsafe { avx2::round_to_i8(x, id, &mut qs) },
        Level::Scalar => {
            for (q, v) in qs.iter_mut().zip(x) {
                *q = (v * id).round() as i8;
            }
        }
    }
    (d, qs)
}

fn pack_q4_1(data: &[u8], n: usize, k: usize) -> Vec<Q4_1x8> {
    const BYTES: usize = 20; // d: f16, m: f16, qs: [u8; 16]
    let blocks = k / QK;
    assert_eq!(data.len(), n * blocks * BYTES, "Q4_1 tensor size");
    let zero = Q4_1x8 { qs: [[0; 32]; 4], d: [f16::ZERO; COLS], m: [f16::ZERO; COLS] };
    let mut tiles = vec![zero; n.div_ceil(COLS) * blocks];
    for col in 0..n {
        let (t, c) = (col / COLS, col % COLS);
        for b in 0..blocks {
            let src = &data[(col * blocks + b) * BYTES..][..BYTES];
            let dst = &mut tiles[t * blocks + b];
            dst.d[c] = f16::from_le_bytes([src[0], src[1]]);
            dst.m[c] = f16::from_le_bytes([src[2], src[3]]);
            for g in 0..4 {
                dst.qs[g][4 * c..4 * c + 4].copy_from_slice(&src[4 + 4 * g..][..4]);
            }
        }
    }
    tiles
}

fn pack_q8_0(data: &[u8], n: usize, k: usize) -> Vec<Q8_0x8> {
    const BYTES: usize = 34; // d: f16, qs: [i8; 32]
    let blocks = k / QK;
    assert_eq!(data.len(), n * blocks * BYTES, "Q8_0 tensor size");
    let zero = Q8_0x8 { qs: [[0; 32]; 8], d: [f16::ZERO; COLS] };
    let mut tiles = vec![zero; n.div_ceil(COLS) * blocks];
    for col in 0..n {
        let (t, c) = (col / COLS, col % COLS);
        for b in 0..blocks {
            let src = &data[(col * blocks + b) * BYTES..][..BYTES];
            let dst = &mut tiles[t * blocks + b];
            dst.d[c] = f16::from_le_bytes([src[0], src[1]]);
            for g in 0..8 {
                for i in 0..4 {
                    dst.qs[g][4 * c + i] = src[2 + 4 * g + i] as i8;
                }
            }
        }
    }
    tiles
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Level::Vnni => "vnni",
            #[cfg(target_arch = "x86_64")]
            Level::Vnni512 => "vnni512",
        }
    }

    /// The same CPU features for kquant.rs's kernels.
    fn isa(self) -> kquant::Isa {
        match self {
            Level::Scalar => kquant::Isa::Scalar,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => kquant::Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            Level::Vnni => kquant::Isa::Vnni,
            #[cfg(target_arch = "x86_64")]
            Level::Vnni512 => kquant::Isa::Vnni512,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 plus AVX-512 VNNI on 256-bit registers: `vpdpbusd` does a 4-byte dot and its
    /// accumulation in one instruction (the integers are exact either way).
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// [`Level::Vnni`], and kquant.rs's kernels two tiles at a time on 512-bit registers (AVX-512
    /// F and BW too); the exact kernels stay on 256 bits.
    #[cfg(target_arch = "x86_64")]
    Vnni512,
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The fastest kernels this CPU runs, or slower ones named by `SYNTH_CPU_KERNELS` (`scalar`,
/// `avx2`, `vnni`): how an AVX-512 machine measures the AVX2 path that CPUs without AVX-512 run.
fn kernel_level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let levels = levels();
        let fastest = *levels.last().expect("scalar is always there");
        let Ok(wanted) = std::env::var(CAP_ENV) else {
            return fastest;
        };
        let named = levels.iter().copied().find(|l| l.name() == wanted.trim());
        named.unwrap_or_else(|| {
            let names: Vec<&str> = levels.iter().map(|l| l.name()).collect();
            eprintln!(
                "warning: {CAP_ENV}=`{wanted}` is not a kernel level this CPU runs ({}); using `{}`",
                names.join(", "),
                fastest.name()
            );
            fastest
        })
    })
}

/// Whether the CPU kernels run with AVX2 and FMA (the CPU has them and `SYNTH_CPU_KERNELS` does
/// not say `scalar`): for kernels outside this file that have AVX2 and scalar versions.
pub fn simd_kernels() -> bool {
    kernel_level() != Level::Scalar
}

/// Whether a `[_, k]` weight of `dtype` can be multiplied with candle's bits: Q4_1 always, Q8_0
/// with AVX2 and FMA (candle's path there) when `k` is not a multiple of 256 (with AVX-512 VNNI
/// candle repacks those itself, with other math), dense weights (candle's own matmul).
pub fn exact_capable(dtype: GgmlDType, k: usize) -> bool {
    match dtype {
        GgmlDType::Q4_1 | GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => true,
        GgmlDType::Q8_0 => avx2() && !k.is_multiple_of(256),
        _ => false,
    }
}

/// Caps the CPU kernel level (see [`kernel_level`]).
const CAP_ENV: &str = "SYNTH_CPU_KERNELS";

/// The kernels this CPU can run, slowest first.
fn levels() -> Vec<Level> {
    let mut levels = vec![Level::Scalar];
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        levels.push(Level::Avx2);
        if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
            levels.push(Level::Vnni);
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                levels.push(Level::Vnni512);
            }
        }
    }
    levels
}

/// Tile `t` for all rows of `a` (`m` rows of `per_row` items: activation blocks, or floats
/// for bf16) into `out` (`[m, n]`, row-major): `kernel` on up to [`CHUNK`] rows at a time,
/// into `tile`.
///
/// # Safety
/// As [`copy_out`]'s, for every row of `a`.
unsafe fn in_chunks<A>(
    a: &[A],
    per_row: usize,
    out: *mut f32,
    n: usize,
    t: usize,
    tile: &mut [[f32; COLS]; CHUNK],
    mut kernel: impl FnMut(&[A], &mut [[f32; COLS]]),
) {
    for (chunk, a) in a.chunks(CHUNK * per_row).enumerate() {
        let rows = a.len() / per_row;
        kernel(a, &mut tile[..rows]);
        // SAFETY: the caller's.
        unsafe { copy_out(&tile[..rows], out, n, chunk * CHUNK, t * COLS) };
    }
}

/// Writes `tile`'s rows (8 columns each, `row..` of the output) to columns `col..` of `out`
/// (`[m, n]`, row-major), as many as the layer has (the last tile may be padded).
///
/// # Safety
/// `out` must point to `m * n` writable floats, `row + tile.len() <= m` and `col < n`.
unsafe fn copy_out(tile: &[[f32; COLS]], out: *mut f32, n: usize, row: usize, col: usize) {
    let width = COLS.min(n - col);
    for (r, vals) in tile.iter().enumerate() {
        // SAFETY: the caller's.
        let at = unsafe { out.add((row + r) * n + col) };
        if width == COLS {
            // A whole row of the tile as one fixed-size store: the variable-length copy below
            // is a call to memmove per 32 bytes.
            // SAFETY: the caller's; `write_unaligned` takes any alignment.
            unsafe { at.cast::<[f32; COLS]>().write_unaligned(*vals) };
        } else {
            // SAFETY: the caller's.
            unsafe { std::ptr::copy_nonoverlapping(vals.as_ptr(), at, width) };
        }
    }
}

/// Dots of the 8 columns of `w` (one tile, all blocks) with `out.len()` activation rows of
/// `a`, any number: the kernels take them [`ROWS`] at a time in one call.
#[inline(never)]
fn q4_1_tile(w: &[Q4_1x8], a: &[ActBlock], out: &mut [[f32; COLS]], level: Level) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Level::Avx2 is only chosen when the CPU has AVX2, FMA and F16C.
        Level::Avx2 => unsafe { avx2::q4_1_rows(w, a, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Level::Vnni is only chosen when the CPU also has AVX-512 VNNI and VL.
        Level::Vnni | Level::Vnni512 => unsafe { avx2::q4_1_vnni_rows(w, a, out) },
        Level::Scalar => {
            let blocks = w.len();
            for (r, out) in out.iter_mut().enumerate() {
                let a = &a[r * blocks..(r + 1) * blocks];
                for (c, out) in out.iter_mut().enumerate() {
                    let mut sumf = 0f32;
                    for (wb, ab) in w.iter().zip(a) {
                        let mut sumi = 0i32;
                        for g in 0..4 {
                            for i in 0..4 {
                                let q = wb.qs[g][4 * c + i] as i32;
                                sumi += (q & 0x0F) * ab.qs[4 * g + i] as i32 + (q >> 4) * ab.qs[16 + 4 * g + i] as i32;
                            }
                        }
                        // candle's BlockQ4_1::vec_dot_unopt, operation for operation.
                        sumf += sumi as f32 * wb.d[c].to_f32() * ab.d + wb.m[c].to_f32() * ab.s;
                    }
                    *out = sumf;
                }
            }
        }
    }
}

/// Like [`q4_1_tile`] for Q8_0. Only reached with AVX2 (see [`PackedLinear::new`]); the scalar
/// arm emulates candle's AVX2 kernel for tests and other targets' builds.
#[inline(never)]
fn q8_0_tile(w: &[Q8_0x8], a: &[ActBlock], out: &mut [[f32; COLS]], level: Level) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Level::Avx2 is only chosen when the CPU has AVX2, FMA and F16C.
        Level::Avx2 => unsafe { avx2::q8_0_rows(w, a, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Level::Vnni is only chosen when the CPU also has AVX-512 VNNI and VL.
        Level::Vnni | Level::Vnni512 => unsafe { avx2::q8_0_vnni_rows(w, a, out) },
        Level::Scalar => {
            let blocks = w.len();
            for (r, out) in out.iter_mut().enumerate() {
                let a = &a[r * blocks..(r + 1) * blocks];
                for (c, out) in out.iter_mut().enumerate() {
                    let mut acc = [0f32; 8];
                    for (wb, ab) in w.iter().zip(a) {
                        let d = wb.d[c].to_f32() * ab.d;
                        for (g, acc) in acc.iter_mut().enumerate() {
                            let q: i32 = (0..4).map(|i| wb.qs[g][4 * c + i] as i32 * ab.qs[4 * g + i] as i32).sum();
                            *acc = d.mul_add(q as f32, *acc);
                        }
                    }
                    // candle's hsum_float_8.
                    let h: Vec<f32> = (0..4).map(|i| acc[4 + i] + acc[i]).collect();
                    *out = (h[0] + h[2]) + (h[1] + h[3]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ActBlock, Q4_1x8, Q8_0x8, COLS};
    use crate::engine::kquant::{in_row_groups, prefetch_ahead};

    /// Elements `at..at + 4` of an activation block, in every 32-bit lane.
    #[inline(always)]
    unsafe fn broadcast4(a: &ActBlock, at: usize) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(a.qs.as_ptr().add(at) as *const i32))
    }

    /// The largest |x|: max is exact, so the order does not matter.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn amax(x: &[f32; 32]) -> f32 {
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut m = _mm256_setzero_ps();
        for i in 0..4 {
            m = _mm256_max_ps(m, _mm256_and_ps(abs, _mm256_loadu_ps(x.as_ptr().add(8 * i))));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
    }

    /// `(x * id).round() as i8` per element: round half away from zero, as `f32::round`, built
    /// from truncation (the fraction `v - trunc(v)` is exact).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn round_to_i8(x: &[f32; 32], id: f32, qs: &mut [i8; 32]) {
        let id = _mm256_set1_ps(id);
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        let mut ints = [_mm256_setzero_si256(); 4];
        for (i, out) in ints.iter_mut().enumerate() {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(8 * i)), id);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
            let up = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_and_ps(_mm256_sub_ps(v, t), abs), half);
            let step = _mm256_or_ps(_mm256_and_ps(up, one), _mm256_and_ps(v, sign));
            let r = _mm256_add_ps(t, _mm256_and_ps(up, step));
            *out = _mm256_cvttps_epi32(r);
        }
        // Saturating packs, like `as i8`; they interleave 128-bit lanes, which the permute undoes.
        let w = _mm256_packs_epi16(_mm256_packs_epi32(ints[0], ints[1]), _mm256_packs_epi32(ints[2], ints[3]));
        let w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, w);
    }

    /// [`q4_1`] on every row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q4_1_rows(w: &[Q4_1x8], a: &[ActBlock], out: &mut [[f32; COLS]]) {
        in_row_groups!(w, a, out, R => |a, out| q4_1::<R>(w, a, out))
    }

    /// [`q4_1_vnni`] on every row.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn q4_1_vnni_rows(w: &[Q4_1x8], a: &[ActBlock], out: &mut [[f32; COLS]]) {
        in_row_groups!(w, a, out, R => |a, out| q4_1_vnni::<R>(w, a, out))
    }

    /// [`q8_0`] on every row, one at a time (each row's 8 sums take half the registers).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q8_0_rows(w: &[Q8_0x8], a: &[ActBlock], out: &mut [[f32; COLS]]) {
        for (a, out) in a.chunks_exact(w.len()).zip(out) {
            q8_0(w, a, out)
        }
    }

    /// [`q8_0_vnni`] on every row.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn q8_0_vnni_rows(w: &[Q8_0x8], a: &[ActBlock], out: &mut [[f32; COLS]]) {
        in_row_groups!(w, a, out, R => |a, out| q8_0_vnni::<R>(w, a, out))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q4_1<const R: usize>(w: &[Q4_1x8], a: &[ActBlock], out: &mut [[f32; COLS]]) {
        let blocks = w.len();
        let nibble = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, wb) in w.iter().enumerate() {
            prefetch_ahead::<R, _>(wb);
            // Unsigned nibbles times signed bytes: maddubs is exact here (|pair| ≤ 2·15·128),
            // and 8 of its i16 results still fit in i16, so one madd per block widens them.
            let mut sumi16 = [_mm256_setzero_si256(); R];
            for g in 0..4 {
                let raw = _mm256_loadu_si256(wb.qs[g].as_ptr() as *const __m256i);
                let lo = _mm256_and_si256(raw, nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                for r in 0..R {
                    let ab = &a[r * blocks + b];
                    let s = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, broadcast4(ab, 4 * g)),
                        _mm256_maddubs_epi16(hi, broadcast4(ab, 16 + 4 * g)),
                    );
                    sumi16[r] = _mm256_add_epi16(sumi16[r], s);
                }
            }
            let wd = _mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr() as *const __m128i));
            let wm = _mm256_cvtph_ps(_mm_loadu_si128(wb.m.as_ptr() as *const __m128i));
            for r in 0..R {
                let ab = &a[r * blocks + b];
                let sumi = _mm256_cvtepi32_ps(_mm256_madd_epi16(sumi16[r], ones));
                // sumf += sumi * x.d * y.d + x.m * y.s, as separate roundings (no fma).
                let t = _mm256_mul_ps(_mm256_mul_ps(sumi, wd), _mm256_set1_ps(ab.d));
                let u = _mm256_mul_ps(wm, _mm256_set1_ps(ab.s));
                acc[r] = _mm256_add_ps(acc[r], _mm256_add_ps(t, u));
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q8_0(w: &[Q8_0x8], a: &[ActBlock], out: &mut [f32; COLS]) {
        let ones = _mm256_set1_epi16(1);
        // acc[g] lane c: column c's accumulator for the block's elements 4g..4g + 4, which is
        // lane g of candle's single accumulator register for that column.
        let mut acc = [_mm256_setzero_ps(); 8];
        for (wb, ab) in w.iter().zip(a) {
            let d =
                _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr() as *const __m128i)), _mm256_set1_ps(ab.d));
            for (g, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_si256(wb.qs[g].as_ptr() as *const __m256i);
                let y = broadcast4(ab, 4 * g);
                let dot = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
                let q = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, ones));
                *acc = _mm256_fmadd_ps(d, q, *acc);
            }
        }
        // candle's hsum_float_8: (a4 + a0), ... then (h0 + h2) + (h1 + h3).
        let h: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(acc[4 + i], acc[i]));
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(_mm256_add_ps(h[0], h[2]), _mm256_add_ps(h[1], h[3])));
    }

    /// [`q4_1`] with `vpdpbusd` for the integer dots.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn q4_1_vnni<const R: usize>(w: &[Q4_1x8], a: &[ActBlock], out: &mut [[f32; COLS]]) {
        let blocks = w.len();
        let nibble = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, wb) in w.iter().enumerate() {
            let mut sumi = [_mm256_setzero_si256(); R];
            for g in 0..4 {
                let raw = _mm256_loadu_si256(wb.qs[g].as_ptr() as *const __m256i);
                let lo = _mm256_and_si256(raw, nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                for r in 0..R {
                    let ab = &a[r * blocks + b];
                    sumi[r] = _mm256_dpbusd_epi32(sumi[r], lo, broadcast4(ab, 4 * g));
                    sumi[r] = _mm256_dpbusd_epi32(sumi[r], hi, broadcast4(ab, 16 + 4 * g));
                }
            }
            let wd = _mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr() as *const __m128i));
            let wm = _mm256_cvtph_ps(_mm_loadu_si128(wb.m.as_ptr() as *const __m128i));
            for r in 0..R {
                let ab = &a[r * blocks + b];
                let t = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sumi[r]), wd), _mm256_set1_ps(ab.d));
                let u = _mm256_mul_ps(wm, _mm256_set1_ps(ab.s));
                acc[r] = _mm256_add_ps(acc[r], _mm256_add_ps(t, u));
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
        }
    }

    /// [`q8_0`] for `R` rows at once (AVX-512 has 32 vector registers) with `vpdpbusd`, which
    /// takes unsigned bytes on one side: Σ a·w = Σ (a + 128)·w − 128·Σ w, the last term once per
    /// weight tile (all exact in i32).
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn q8_0_vnni<const R: usize>(w: &[Q8_0x8], a: &[ActBlock], out: &mut [[f32; COLS]]) {
        let blocks = w.len();
        let zero = _mm256_setzero_si256();
        let bias = _mm256_set1_epi8(-128);
        let mut acc = [[_mm256_setzero_ps(); 8]; R];
        for (b, wb) in w.iter().enumerate() {
            let wd = _mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr() as *const __m128i));
            let d: [__m256; R] = std::array::from_fn(|r| _mm256_mul_ps(wd, _mm256_set1_ps(a[r * blocks + b].d)));
            for (g, qs) in wb.qs.iter().enumerate() {
                let x = _mm256_loadu_si256(qs.as_ptr() as *const __m256i);
                let corr = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, bias, x));
                for r in 0..R {
                    let ab = &a[r * blocks + b];
                    let y = _mm256_set1_epi32(std::ptr::read_unaligned(ab.qu.as_ptr().add(4 * g) as *const i32));
                    let q = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(corr, y, x));
                    acc[r][g] = _mm256_fmadd_ps(d[r], q, acc[r][g]);
                }
            }
        }
        for r in 0..R {
            let h: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(acc[r][4 + i], acc[r][i]));
            _mm256_storeu_ps(out[r].as_mut_ptr(), _mm256_add_ps(_mm256_add_ps(h[0], h[2]), _mm256_add_ps(h[1], h[3])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::Module;

    /// Bitwise comparison with candle on random weights and activations.
    fn check(dtype: GgmlDType, n: usize, k: usize, ms: &[usize]) {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let packed = PackedLinear::new(&q, true).unwrap().expect("packable");
        let reference = QMatMul::from_qtensor(q).unwrap();
        for &m in ms {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let want = reference.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let got = packed.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(&want) == bits(&got), "{dtype:?} n={n} k={k} m={m}: not bit-identical");
            // Every kernel this CPU can run is the same math.
            for level in levels() {
                let got = PackedLinear::forward_at(&[&packed], &x, level).unwrap().pop().unwrap();
                assert!(
                    bits(&want) == bits(&got.to_vec2::<f32>().unwrap()),
                    "{dtype:?} n={n} k={k} m={m}: {level:?} not bit-identical"
                );
            }
        }
    }

    #[test]
    fn vector_quantization_rounds_like_f32_round() {
        // amax 127 makes the scale exactly 1, so these hit every rounding tie.
        let mut xs: Vec<f32> = (0..32).map(|i| i as f32 - 15.5).collect();
        xs[0] = 127.0;
        xs[1] = -126.5;
        xs[2] = 0.5;
        xs[3] = -0.49999997;
        xs.extend((0..32).map(|i| (i as f32 * 0.37).sin() * 3.0));
        xs.extend([0f32; 32]);
        let scalar = quantize(&xs, Level::Scalar, ActBlock::new);
        let vector = quantize(&xs, *levels().last().unwrap(), ActBlock::new);
        for (s, v) in scalar.iter().zip(&vector) {
            assert_eq!((s.qs, s.d.to_bits(), s.s.to_bits()), (v.qs, v.d.to_bits(), v.s.to_bits()));
        }
        assert_eq!(scalar[0].qs[1], -127);
        assert_eq!(scalar[0].qs[2], 1);
    }

    #[test]
    fn q4_1_is_bit_identical_to_candle() {
        check(GgmlDType::Q4_1, 1536, 576, &[1, 3, 8, 33, 256]);
        check(GgmlDType::Q4_1, 576, 1536, &[1, 5]);
        // A last tile with padding columns.
        check(GgmlDType::Q4_1, 61, 64, &[1, 7, 0]);
    }

    #[test]
    fn q8_0_is_bit_identical_to_candle() {
        if !avx2() {
            return;
        }
        check(GgmlDType::Q8_0, 1000, 576, &[1, 3, 8, 33, 256]);
        check(GgmlDType::Q8_0, 13, 96, &[2]);
    }

    /// Element `i` of `w`'s row `col` as kquant.rs unpacked it.
    fn unpacked(w: &QTensor, col: usize) -> Vec<f32> {
        let (n, k) = w.shape().dims2().unwrap();
        let data = w.data().unwrap();
        let row = &data[col * data.len() / n..(col + 1) * data.len() / n];
        let subs = kquant::decode(w.dtype(), row);
        assert_eq!(subs.len() * QK, k);
        subs.iter().flat_map(|s| (0..QK).map(move |i| s.d[i / 16] * s.q[i] as f32 + s.m)).collect()
    }

    const K_TYPES: [GgmlDType; 7] = [
        GgmlDType::Q4_0,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];

    #[test]
    fn kquant_unpacking_matches_candles_dequantize() {
        for dtype in K_TYPES {
            let w = Tensor::randn(0f32, 1.0, (5, 512), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let want = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            for (col, want) in want.iter().enumerate() {
                let got = unpacked(&q, col);
                for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                    // The same products in another order: a few ulps apart at most.
                    assert!((a - b).abs() <= 4e-7 * a.abs().max(1e-3), "{dtype:?} [{col}, {i}]: {a} vs {b}");
                }
            }
        }
    }

    /// kquant.rs's matmuls against the f64 product of candle's dequantized weights. The only
    /// error allowed is the activations' rounding (half a quantization step, amax / 254 per
    /// 32-element block, times the weights' magnitude there) plus f32 summation (2e-5 relative).
    fn check_k(dtype: GgmlDType, n: usize, k: usize, ms: &[usize]) {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let packed = PackedLinear::new(&q, false).unwrap().expect("packable");
        assert!(!packed.is_exact(), "{dtype:?} k={k} goes to kquant.rs");
        let wd = q.dequantize(&dev).unwrap().to_vec2::<f32>().unwrap();
        for &m in ms {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let xs = x.to_vec2::<f32>().unwrap();
            for level in levels() {
                let got = PackedLinear::forward_at(&[&packed], &x, level).unwrap().pop().unwrap();
                let got = got.to_vec2::<f32>().unwrap();
                for (i, (x, got)) in xs.iter().zip(&got).enumerate() {
                    for (j, (w, &got)) in wd.iter().zip(got).enumerate() {
                        let exact: f64 = x.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let magnitude: f64 = x.iter().zip(w).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                        let rounding: f64 = x
                            .chunks(QK)
                            .zip(w.chunks(QK))
                            .map(|(x, w)| {
                                let amax = x.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                                amax / 254.0 * w.iter().map(|v| v.abs() as f64).sum::<f64>()
                            })
                            .sum();
                        let bound = 1.001 * rounding + 2e-5 * magnitude;
                        let err = (got as f64 - exact).abs();
                        assert!(
                            err <= bound,
                            "{dtype:?} n={n} k={k} m={m} {level:?} [{i}, {j}]: {got} vs {exact} (bound {bound})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kquant_matmuls_are_within_activation_rounding_of_the_f32_product() {
        for dtype in K_TYPES {
            // Odd column counts (a padded last tile), 1..9 rows and none.
            check_k(dtype, 37, 512, &[0, 1, 3, 4, 5, 9]);
            check_k(dtype, 8, 768, &[2]);
            if !matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K) {
                // 32-element types at a row size no multiple of 256 (3 blocks).
                check_k(dtype, 13, 96, &[1, 6]);
            }
        }
    }

    /// `packed`'s result for `x` (at least 6 rows) has the same bits on every kernel level, and
    /// row 5 alone gives the bits it gets in the batch.
    fn assert_same_bits_on_every_level_and_batch(packed: &PackedLinear, x: &Tensor, what: &str) {
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        };
        let all = PackedLinear::forward_at(&[packed], x, Level::Scalar).unwrap().pop().unwrap();
        for level in levels() {
            let got = PackedLinear::forward_at(&[packed], x, level).unwrap().pop().unwrap();
            assert_eq!(bits(&got), bits(&all), "{what} {level:?}");
            let one = PackedLinear::forward_at(&[packed], &x.narrow(0, 5, 1).unwrap(), level).unwrap().pop().unwrap();
            assert_eq!(bits(&one), bits(&all.narrow(0, 5, 1).unwrap()), "{what} {level:?} alone");
        }
    }

    #[test]
    fn kquant_matmuls_give_the_same_bits_on_every_level_and_batch() {
        // The kernels do the same float operations in the same order (the integer dots are
        // exact), so a row's result depends neither on the CPU's level nor on its batch.
        let dev = Device::Cpu;
        for dtype in K_TYPES {
            let q = QTensor::quantize(&Tensor::randn(0f32, 1.0, (21, 512), &dev).unwrap(), dtype).unwrap();
            let packed = PackedLinear::new(&q, false).unwrap().expect("packable");
            // 9 rows: the 512-bit kernels take 8 and then 1.
            let x = Tensor::randn(0f32, 1.0, (9, 512), &dev).unwrap();
            assert_same_bits_on_every_level_and_batch(&packed, &x, &format!("{dtype:?}"));
        }
    }

    #[test]
    fn kquant_matmuls_are_exact_up_to_f32_summation_when_activations_quantize_exactly() {
        // Integer activations with ±127 in every 32-block quantize with scale 1 and no rounding,
        // so only f32 summation separates the result from the exact product.
        let dev = Device::Cpu;
        let (m, n, k) = (3, 19, 512);
        let xs: Vec<f32> = (0..m * k)
            .map(|i| match i / k {
                0 if i % QK != 5 => ((i * 7919) % 255) as f32 - 127.0,
                1 => -127.0,
                _ => 127.0,
            })
            .collect();
        let x = Tensor::from_vec(xs.clone(), (m, k), &dev).unwrap();
        // Random weights, and weights at the ends of every type's range against activations
        // at ±127 (the largest integer sums the kernels' narrow sums must hold).
        let extremes: Vec<f32> = (0..n * k)
            .map(|i| match (i / k % 3, i % k / 3 % 2) {
                (0, _) | (2, 0) => 1.0,
                _ => -1.0,
            })
            .collect();
        let weights =
            [Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap(), Tensor::from_vec(extremes, (n, k), &dev).unwrap()];
        for (dtype, w) in K_TYPES.into_iter().flat_map(|t| weights.iter().map(move |w| (t, w))) {
            let q = QTensor::quantize(w, dtype).unwrap();
            let packed = PackedLinear::new(&q, false).unwrap().expect("packable");
            let wd = q.dequantize(&dev).unwrap().to_vec2::<f32>().unwrap();
            for level in levels() {
                let got = PackedLinear::forward_at(&[&packed], &x, level).unwrap().pop().unwrap();
                for (i, got) in got.to_vec2::<f32>().unwrap().iter().enumerate() {
                    for (j, (&got, w)) in got.iter().zip(&wd).enumerate() {
                        let x = &xs[i * k..(i + 1) * k];
                        let exact: f64 = x.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let magnitude: f64 = x.iter().zip(w).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                        let err = (got as f64 - exact).abs();
                        assert!(err <= 2e-6 * magnitude, "{dtype:?} {level:?} [{i}, {j}]: {got} vs {exact}");
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_matmul_sums_in_f32_the_same_on_every_level_and_batch() {
        let dev = Device::Cpu;
        let (n, k) = (21, 300);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let packed = PackedLinear::from_bf16(&w).unwrap();
        let wf = w.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
        let x = Tensor::randn(0f32, 1.0, (7, k), &dev).unwrap();
        let xs = x.to_vec2::<f32>().unwrap();
        assert_same_bits_on_every_level_and_batch(&packed, &x, "bf16");
        let all = PackedLinear::forward_at(&[&packed], &x, Level::Scalar).unwrap().pop().unwrap();
        for (x, got) in xs.iter().zip(all.to_vec2::<f32>().unwrap()) {
            for (w, got) in wf.iter().zip(got) {
                let exact: f64 = x.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum();
                let magnitude: f64 = x.iter().zip(w).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                assert!((got as f64 - exact).abs() <= 1e-5 * magnitude, "{got} vs {exact}");
            }
        }
    }
}

//! Batched CPU matmul kernels for the GGUF block types users download: the K-quants (Q4_K, Q5_K,
//! Q6_K) and the types llama.cpp writes where a K-quant does not fit (Q4_0, Q5_0, Q5_1, Q8_0).
//!
//! candle 0.11 dots each (row, column) pair on its own for most of these (it repacks only Q4_K,
//! Q6_K and Q8_0, and only on x86), so a batch of rows costs as much per row as one row. Here
//! every weight is unpacked at load into 32-element sub-blocks `value = d · q + m` (`d` per 16
//! elements for Q6_K's scales) and tiled as in `quant.rs`: 8 columns interleaved so one 256-bit
//! register holds 4 elements of each column, one load of a tile serving [`super::quant`]'s 4
//! activation rows.
//!
//! Not bit-identical to candle (unlike `quant.rs`): activations are quantized per 32 elements
//! with an f32 scale (candle uses one scale per 256 for K-quants, an f16 one per 32 otherwise),
//! and sub-block scales are applied in f32 per sub-block. The integer dots are exact, so the
//! result differs from the dequantized f32 matmul only by the activations' rounding (half a
//! step, `amax / 254`, per element) and f32 summation; the tests bound exactly that. Every
//! kernel (scalar, AVX2, VNNI) does the same float operations in the same order, so a row's
//! result has the same bits on any x86 CPU and in any batch.
//!
//! Two tile kinds: [`NibX8`] keeps 4-bit weights (Q4_0, Q4_K) as nibbles, [`ByteX8`] keeps the
//! 5-, 6- and 8-bit ones as bytes ([`ByteCode`]). The scales stay as compact as in the file
//! ([`Scales`]: f16, or 6/8-bit codes with an f32 factor per 256 elements), so a tile element
//! takes 0.58 bytes for Q4_K (file: 0.56), 0.63 for Q4_0 (0.56), 1.06–1.13 for Q5/Q6/Q8 (0.69–1.06).

use candle_core::quantized::GgmlDType;
use half::f16;

/// `$call` with the const `$r` set to `$rows`: one of the listed counts, else 1 (so each row
/// count gets its own kernel); without a list, 1 to [`ROWS`].
macro_rules! by_rows {
    ($rows:expr, $r:ident => $call:expr) => {
        $crate::engine::kquant::by_rows!($rows, $r in [4, 3, 2] => $call)
    };
    ($rows:expr, $r:ident in [$($n:literal),+] => $call:expr) => {
        match $rows {
            $($n => {
                const $r: usize = $n;
                $call
            })+
            _ => {
                const $r: usize = 1;
                $call
            }
        }
    };
}

pub(crate) use by_rows;

/// `$call` (a kernel for `$R` rows, given that many rows of `a` and `out`) on all `out.len()`
/// rows of `$a` (rows of `$w.len()` items: activation blocks, or floats for bf16): [`ROWS`] at
/// a time, then the rest (each row count its own kernel), in the caller's one call.
macro_rules! in_row_groups {
    ($w:expr, $a:expr, $out:expr, $R:ident => $call:expr) => {{
        let per_row = $w.len();
        for (a, out) in $a.chunks($crate::engine::kquant::ROWS * per_row).zip($out.chunks_mut($crate::engine::kquant::ROWS)) {
            $crate::engine::kquant::by_rows!(out.len(), $R => $call(a, out))
        }
    }};
}

pub(crate) use in_row_groups;

/// Elements per sub-block and per activation block.
pub const QK: usize = 32;
/// Columns per weight tile: one per 32-bit lane of a 256-bit register.
pub const COLS: usize = 8;
/// Activation rows per kernel call: each weight tile is loaded once for this many rows.
pub const ROWS: usize = 4;
/// Activation rows per [`KTiles::tile2`] call: AVX-512's 32 registers hold twice [`ROWS`]' sums.
pub const ROWS2: usize = 8;

/// 32 elements of one activation row: `x ≈ d · qs`, `|qs| ≤ 127`; `ds = d · Σ qs` carries the
/// sub-blocks' offsets `m`.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Act {
    qs: [i8; QK],
    /// `Σ qs` over each half of the block: weights stored as unsigned bytes `w + o` (see
    /// [`ByteCode`]) dot to `Σ a·(w + o) − o Σ a` (exact in i32).
    sums: [i32; 2],
    d: f32,
    ds: f32,
}

impl Act {
    /// A block of 32 activations rounded to `qs` with scale `d` (see `quant.rs`'s `round_block`).
    pub fn new(d: f32, qs: [i8; QK]) -> Self {
        let half = |h: usize| qs[16 * h..16 * h + 16].iter().map(|&q| q as i32).sum::<i32>();
        let (low, high) = (half(0), half(1));
        Self { qs, sums: [low, high], d, ds: d * (low + high) as f32 }
    }
}

/// The kernels a CPU can run (chosen at run time by `quant.rs`'s feature detection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Isa {
    Scalar,
    /// AVX2 and FMA.
    Avx2,
    /// AVX2 plus AVX-512 VNNI on 256-bit registers (`vpdpbusd`).
    Vnni,
    /// [`Isa::Vnni`], and AVX-512 F and BW: two tiles at once, 16 columns per 512-bit register
    /// ([`KTiles::tile2`]).
    Vnni512,
}

/// One sub-block of 8 columns of 4-bit weights. `qs[g][4 c + i]` is column `c`'s byte `4 g + i`,
/// whose low nibble is element `4 g + i` and high nibble element `16 + 4 g + i`.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct NibX8 {
    qs: [[u8; 32]; 4],
}

/// One sub-block of 8 columns of byte weights, coded as [`ByteCode`] says. `qs[g][4 c + i]` is
/// column `c`'s element `4 g + i`.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ByteX8 {
    qs: [[u8; 32]; 8],
}

/// How a layer's [`ByteX8`] bytes hold its weights `w`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ByteCode {
    /// Q8_0: `w` as a signed byte (±127). The AVX2 kernel multiplies `|w|` by `a · sign(w)` and
    /// widens every product pair to i32; VNNI flips the sign bit, so the byte is `w + 128`.
    Signed,
    /// Q5_0, Q5_1, Q5_K (`w + offset` at most `max` = 31), Q6_K (at most 63): multiplied as
    /// unsigned bytes (`maddubs` and `vpdpbusd` both take one unsigned operand) with
    /// `offset · Σ a` subtracted.
    Unsigned { offset: u8, max: u8 },
}

impl ByteCode {
    fn of(dtype: GgmlDType) -> Self {
        match dtype {
            GgmlDType::Q8_0 => ByteCode::Signed,
            GgmlDType::Q5_0 => ByteCode::Unsigned { offset: 16, max: 31 },
            GgmlDType::Q6K => ByteCode::Unsigned { offset: 32, max: 63 },
            _ => ByteCode::Unsigned { offset: 0, max: 31 },
        }
    }

    /// How many `maddubs` pair sums of unsigned bytes (each at most `2 · max · 127`) add up in
    /// i16 before widening: 4 for bytes up to 31, 2 up to 63.
    fn pairs_in_i16(self) -> usize {
        match self {
            ByteCode::Unsigned { max, .. } if 4 * 2 * max as i32 * 127 <= i16::MAX as i32 => 4,
            _ => 2,
        }
    }

    /// The byte that holds `w`.
    fn byte(self, w: i8) -> u8 {
        match self {
            ByteCode::Signed => w as u8,
            ByteCode::Unsigned { offset, .. } => (w as i32 + offset as i32) as u8,
        }
    }

    /// The weight a byte holds.
    fn weight(self, b: u8) -> i32 {
        match self {
            ByteCode::Signed => b as i8 as i32,
            ByteCode::Unsigned { offset, .. } => b as i32 - offset as i32,
        }
    }

    /// What the byte adds to `w` when read as unsigned (Q8_0 after VNNI's sign flip).
    fn unsigned_offset(self) -> i32 {
        match self {
            ByteCode::Signed => 128,
            ByteCode::Unsigned { offset, .. } => offset as i32,
        }
    }
}

/// The f32 scales of one sub-block of 8 columns, as the kernels take them: `d[h]` scales
/// elements `16 h..16 h + 16`, `m` is the offset.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Scale8 {
    d: [[f32; COLS]; 2],
    m: [f32; COLS],
}

/// A layer's sub-block scales as stored: as compact as the file's (a decode step streams every
/// weight once, so its speed is the bytes it reads); the kernels turn them into f32 per
/// sub-block as they go (see [`Source`]).
/// Sub-block `b` of tile `t` is at `[t * blocks + b]`.
enum Scales {
    /// The file's own f16 `d` per sub-block (Q4_0, Q5_0, Q5_1, Q8_0), with the offset `m`.
    Half { d: Vec<[f16; COLS]>, m: Offset },
    /// K-quants: 6-bit (Q4_K, Q5_K) or 8-bit (Q6_K) codes per sub-block and the file's f16
    /// factors per super-block of 8 sub-blocks (`sup[t * blocks / 8 + b / 8]`, taken to f32,
    /// which is exact). Q4_K/Q5_K: `d = sup[0] · codes[0]`,
    /// `m = −(sup[1] · codes[1])`; Q6_K (`halves`): `d[h] = sup[0] · codes[h]`, `m = 0`. The
    /// products are the ones ggml's dequantization computes, so the values are the same bits.
    Coded { codes: Vec<[[i8; COLS]; 2]>, sup: Vec<[[f16; COLS]; 2]>, halves: bool },
}

/// The offset of a [`Scales::Half`] type.
enum Offset {
    Zero,
    /// Q4_0: `m = −8 d`.
    MinusEightD,
    /// Q5_1's f16 `m`.
    Half(Vec<[f16; COLS]>),
}

/// Weight tiles of one layer: tile `t`, sub-block `b` at `[t * (k / 32) + b]`; the last tile is
/// padded with zero columns.
pub struct KTiles {
    weights: Weights,
    scales: Scales,
}

enum Weights {
    Nib(Vec<NibX8>),
    Byte { tiles: Vec<ByteX8>, code: ByteCode },
}

impl KTiles {
    /// Unpacks and tiles `data`, a `[n, k]` tensor of `dtype` in GGUF's layout; `None` for a
    /// type these kernels do not cover.
    pub fn pack(dtype: GgmlDType, data: &[u8], n: usize, k: usize) -> Option<Self> {
        let (bytes, elems) = block_size(dtype)?;
        if !k.is_multiple_of(elems) || data.len() != n * k / elems * bytes {
            return None;
        }
        let blocks = k / QK;
        let row = |col: usize| &data[col * k / elems * bytes..(col + 1) * k / elems * bytes];
        let weights = match dtype {
            GgmlDType::Q4_0 | GgmlDType::Q4K => {
                let mut tiles = vec![NibX8 { qs: [[0; 32]; 4] }; n.div_ceil(COLS) * blocks];
                for col in 0..n {
                    for (b, s) in decode(dtype, row(col)).iter().enumerate() {
                        nib_put(&mut tiles[col / COLS * blocks + b], col % COLS, s);
                    }
                }
                Weights::Nib(tiles)
            }
            _ => {
                let code = ByteCode::of(dtype);
                // Zero columns of the padded tile hold the byte of a zero weight.
                let mut tiles = vec![ByteX8 { qs: [[code.byte(0); 32]; 8] }; n.div_ceil(COLS) * blocks];
                for col in 0..n {
                    for (b, s) in decode(dtype, row(col)).iter().enumerate() {
                        byte_put(&mut tiles[col / COLS * blocks + b], col % COLS, s, code);
                    }
                }
                Weights::Byte { tiles, code }
            }
        };
        let scales = Scales::pack(dtype, n, blocks, bytes, row);
        Some(Self { weights, scales })
    }

    /// Dots of tile `t`'s 8 columns (all `blocks` sub-blocks) with `out.len()` rows of `a`, any
    /// number: the kernels take them [`ROWS`] at a time in one call. `cache` holds the tile's
    /// scales in f32 while it runs, when more than one group of rows reads them.
    pub fn tile(&self, t: usize, blocks: usize, a: &[Act], out: &mut [[f32; COLS]], isa: Isa, cache: &mut ScaleCache) {
        let span = t * blocks..(t + 1) * blocks;
        match &self.scales {
            Scales::Half { d, m } => {
                let source = HalfSource { d: &d[span.clone()], m: m.at(span.clone()) };
                self.dots(span, source, a, out, isa)
            }
            Scales::Coded { codes, sup, halves } => {
                let sup = &sup[t * blocks / 8..(t + 1) * blocks / 8];
                let source = CodedSource { codes: &codes[span.clone()], sup, halves: *halves };
                if out.len() > ROWS {
                    self.dots(span, cache.fill(source, blocks, isa), a, out, isa)
                } else {
                    self.dots(span, source, a, out, isa)
                }
            }
        }
    }

    /// [`Self::tile`] for tiles `t` and `t + 1` and `rows` (1 to [`ROWS2`]) rows at once, 16
    /// columns per 512-bit register; each lane does what it does in the 256-bit kernels, so the
    /// same bits.
    ///
    /// # Safety
    /// The CPU must have what [`Isa::Vnni512`] stands for: AVX2, FMA, F16C and AVX-512 F, BW, VL
    /// and VNNI.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn tile2(&self, t: usize, blocks: usize, a: &[Act], rows: usize, out: &mut [[[f32; COLS]; ROWS2]; 2]) {
        let spans = [t * blocks..(t + 1) * blocks, (t + 1) * blocks..(t + 2) * blocks];
        match &self.scales {
            Scales::Half { d, m } => {
                let sources = spans.clone().map(|span| HalfSource { d: &d[span.clone()], m: m.at(span) });
                self.dots2(spans, sources, a, rows, out)
            }
            Scales::Coded { codes, sup, halves } => {
                let sources = [t, t + 1].map(|t| CodedSource {
                    codes: &codes[t * blocks..(t + 1) * blocks],
                    sup: &sup[t * blocks / 8..(t + 1) * blocks / 8],
                    halves: *halves,
                });
                self.dots2(spans, sources, a, rows, out)
            }
        }
    }

    /// [`Self::tile2`]'s 512-bit kernels, for the sub-blocks `spans` with their scales.
    ///
    /// # Safety
    /// As [`Self::tile2`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn dots2<S: Source>(
        &self,
        spans: [std::ops::Range<usize>; 2],
        s: [S; 2],
        a: &[Act],
        rows: usize,
        out: &mut [[[f32; COLS]; ROWS2]; 2],
    ) {
        // SAFETY: the caller's (see tile2).
        unsafe {
            match &self.weights {
                Weights::Nib(w) => {
                    let w = spans.map(|span| &w[span]);
                    by_rows!(rows, R in [8, 7, 6, 5, 4, 3, 2] => avx512::nib::<R, S>(w, s, a, out))
                }
                Weights::Byte { tiles, code } => {
                    let (w, offset) = (spans.map(|span| &tiles[span]), code.unsigned_offset());
                    match (*code == ByteCode::Signed, s[0].halves()) {
                        (true, false) => {
                            by_rows!(rows, R in [8, 7, 6, 5, 4, 3, 2] => avx512::byte::<R, true, false, S>(w, s, a, offset, out))
                        }
                        (true, true) => {
                            by_rows!(rows, R in [8, 7, 6, 5, 4, 3, 2] => avx512::byte::<R, true, true, S>(w, s, a, offset, out))
                        }
                        (false, false) => {
                            by_rows!(rows, R in [8, 7, 6, 5, 4, 3, 2] => avx512::byte::<R, false, false, S>(w, s, a, offset, out))
                        }
                        (false, true) => {
                            by_rows!(rows, R in [8, 7, 6, 5, 4, 3, 2] => avx512::byte::<R, false, true, S>(w, s, a, offset, out))
                        }
                    }
                }
            }
        }
    }

    /// [`Self::tile`] for the sub-blocks `span` with their scales from `s`.
    fn dots<S: Source>(&self, span: std::ops::Range<usize>, s: S, a: &[Act], out: &mut [[f32; COLS]], isa: Isa) {
        match &self.weights {
            Weights::Nib(w) => nib_tile(&w[span], s, a, out, isa),
            Weights::Byte { tiles, code } => byte_tile(&tiles[span], s, a, out, isa, *code),
        }
    }
}

impl Scales {
    /// The scales of `n` rows of `blocks` sub-blocks each; `row(col)` is a column's GGUF bytes.
    fn pack<'a>(dtype: GgmlDType, n: usize, blocks: usize, bytes: usize, row: impl Fn(usize) -> &'a [u8]) -> Self {
        let tiles = n.div_ceil(COLS);
        if let GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K = dtype {
            let halves = dtype == GgmlDType::Q6K;
            let mut codes = vec![[[0i8; COLS]; 2]; tiles * blocks];
            let mut sup = vec![[[f16::ZERO; COLS]; 2]; tiles * blocks / 8];
            for col in 0..n {
                let (t, c) = (col / COLS, col % COLS);
                for (s, b) in row(col).chunks_exact(bytes).enumerate() {
                    let at = t * blocks / 8 + s;
                    if halves {
                        sup[at][0][c] = half_at(b, 208);
                    } else {
                        sup[at][0][c] = half_at(b, 0);
                        sup[at][1][c] = half_at(b, 2);
                    }
                    for j in 0..8 {
                        let code = &mut codes[t * blocks + 8 * s + j];
                        let pair = if halves {
                            q6k_scales(j, b)
                        } else {
                            let (sc, mn) = scale_min(j, &b[4..16]);
                            [sc as i8, mn as i8]
                        };
                        code[0][c] = pair[0];
                        code[1][c] = pair[1];
                    }
                }
            }
            return Self::Coded { codes, sup, halves };
        }
        let field = |at: usize| {
            let mut v = vec![[f16::ZERO; COLS]; tiles * blocks];
            for col in 0..n {
                for (b, block) in row(col).chunks_exact(bytes).enumerate() {
                    v[col / COLS * blocks + b][col % COLS] = half_at(block, at);
                }
            }
            v
        };
        let m = match dtype {
            GgmlDType::Q4_0 => Offset::MinusEightD,
            GgmlDType::Q5_1 => Offset::Half(field(2)),
            _ => Offset::Zero,
        };
        Self::Half { d: field(0), m }
    }
}

impl Offset {
    fn at(&self, span: std::ops::Range<usize>) -> OffsetOf<'_> {
        match self {
            Offset::Zero => OffsetOf::Zero,
            Offset::MinusEightD => OffsetOf::MinusEightD,
            Offset::Half(m) => OffsetOf::Half(&m[span]),
        }
    }
}

/// One tile's sub-block scales, read by the kernels as they go: sub-block `b`'s `d[0]`, `d[1]`
/// and `m` for 8 columns. Every way gives the f32 values [`decode`] gives.
trait Source: Copy {
    fn scalar(&self, b: usize) -> Scale8;
    /// Whether the two halves of a sub-block have scales of their own (Q6_K); otherwise
    /// `d[0] == d[1]` and a kernel may sum the whole sub-block's dot before scaling it.
    fn halves(&self) -> bool;
    /// Whether `m` can be non-zero: where it cannot, the byte kernels skip the offset terms,
    /// which would add `0 · ds` (a `+0`) to a sum that starts at `+0`, so the bits are the same.
    fn offsets(&self) -> bool;
    /// The same values in 3 registers.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn simd(&self, b: usize) -> [std::arch::x86_64::__m256; 3];
}

/// A tile's scales taken to f32 once for all its groups of rows: sub-block `b`'s `d[0]`, and
/// its `d[1]` where the halves have scales of their own (Q6_K), else its `m`. Every K-quant
/// kernel turns the coded scales into these values per sub-block and row group (a code
/// conversion, an f16 one and a product each, for `d` and again for `m`); with 32 rows that
/// was 8 times per tile. The values are the ones [`Source::simd`] gives, so the same bits.
#[derive(Default)]
pub struct ScaleCache(Vec<[[f32; COLS]; 2]>);

impl ScaleCache {
    /// `s`'s scales for sub-blocks `0..blocks`, as a source the kernels read.
    fn fill<S: Source>(&mut self, s: S, blocks: usize, isa: Isa) -> CachedSource<'_> {
        let halves = s.halves();
        let pick = move |[d0, d1, m]: [[f32; COLS]; 3]| [d0, if halves { d1 } else { m }];
        self.0.clear();
        match isa {
            // SAFETY: every Isa but Scalar is chosen only on a CPU with AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Vnni | Isa::Vnni512 => unsafe { avx2::fill(s, blocks, &mut self.0, pick) },
            _ => self.0.extend((0..blocks).map(|b| s.scalar(b)).map(|s8| pick([s8.d[0], s8.d[1], s8.m]))),
        }
        CachedSource { v: &self.0, halves, offsets: s.offsets() }
    }
}

#[derive(Clone, Copy)]
struct CachedSource<'a> {
    v: &'a [[[f32; COLS]; 2]],
    halves: bool,
    offsets: bool,
}

impl Source for CachedSource<'_> {
    fn halves(&self) -> bool {
        self.halves
    }

    fn offsets(&self) -> bool {
        self.offsets
    }

    fn scalar(&self, b: usize) -> Scale8 {
        let [x, y] = self.v[b];
        if self.halves {
            Scale8 { d: [x, y], m: [0.0; COLS] }
        } else {
            Scale8 { d: [x, x], m: y }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn simd(&self, b: usize) -> [std::arch::x86_64::__m256; 3] {
        use std::arch::x86_64::*;
        let [x, y] = &self.v[b];
        let (x, y) = (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()));
        if self.halves {
            [x, y, _mm256_setzero_ps()]
        } else {
            [x, x, y]
        }
    }
}

#[derive(Clone, Copy)]
enum OffsetOf<'a> {
    Zero,
    MinusEightD,
    Half(&'a [[f16; COLS]]),
}

#[derive(Clone, Copy)]
struct HalfSource<'a> {
    d: &'a [[f16; COLS]],
    m: OffsetOf<'a>,
}

#[derive(Clone, Copy)]
struct CodedSource<'a> {
    codes: &'a [[[i8; COLS]; 2]],
    sup: &'a [[[f16; COLS]; 2]],
    halves: bool,
}

impl Source for HalfSource<'_> {
    fn halves(&self) -> bool {
        false
    }

    fn offsets(&self) -> bool {
        !matches!(self.m, OffsetOf::Zero)
    }

    fn scalar(&self, b: usize) -> Scale8 {
        let d = self.d[b].map(f16::to_f32);
        let m = match self.m {
            OffsetOf::Zero => [0.0; COLS],
            OffsetOf::MinusEightD => d.map(|d| -8.0 * d),
            OffsetOf::Half(m) => m[b].map(f16::to_f32),
        };
        Scale8 { d: [d, d], m }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn simd(&self, b: usize) -> [std::arch::x86_64::__m256; 3] {
        use std::arch::x86_64::*;
        let halfs = |h: &[f16; COLS]| _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i));
        let d = halfs(&self.d[b]);
        let m = match self.m {
            OffsetOf::Zero => _mm256_setzero_ps(),
            OffsetOf::MinusEightD => _mm256_mul_ps(d, _mm256_set1_ps(-8.0)),
            OffsetOf::Half(m) => halfs(&m[b]),
        };
        [d, d, m]
    }
}

impl Source for CodedSource<'_> {
    fn halves(&self) -> bool {
        self.halves
    }

    fn offsets(&self) -> bool {
        !self.halves
    }

    fn scalar(&self, b: usize) -> Scale8 {
        let (code, sup) = (&self.codes[b], &self.sup[b / 8]);
        let scaled =
            |h: usize, f: usize| -> [f32; COLS] { std::array::from_fn(|c| sup[f][c].to_f32() * code[h][c] as f32) };
        if self.halves {
            Scale8 { d: [scaled(0, 0), scaled(1, 0)], m: [0.0; COLS] }
        } else {
            Scale8 { d: [scaled(0, 0); 2], m: scaled(1, 1).map(|m| -m) }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn simd(&self, b: usize) -> [std::arch::x86_64::__m256; 3] {
        use std::arch::x86_64::*;
        let (code, sup) = (&self.codes[b], &self.sup[b / 8]);
        let codes =
            |c: &[i8; COLS]| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(c.as_ptr() as *const __m128i)));
        let halfs = |h: &[f16; COLS]| _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i));
        let d = halfs(&sup[0]);
        let d0 = _mm256_mul_ps(d, codes(&code[0]));
        if self.halves {
            [d0, _mm256_mul_ps(d, codes(&code[1])), _mm256_setzero_ps()]
        } else {
            let m = _mm256_mul_ps(halfs(&sup[1]), codes(&code[1]));
            [d0, d0, _mm256_xor_ps(m, _mm256_set1_ps(-0.0))]
        }
    }
}

/// Bytes and elements per GGUF block of the types packed here.
fn block_size(dtype: GgmlDType) -> Option<(usize, usize)> {
    Some(match dtype {
        GgmlDType::Q4_0 => (18, 32),
        GgmlDType::Q5_0 => (22, 32),
        GgmlDType::Q5_1 => (24, 32),
        GgmlDType::Q8_0 => (34, 32),
        GgmlDType::Q4K => (144, 256),
        GgmlDType::Q5K => (176, 256),
        GgmlDType::Q6K => (210, 256),
        _ => return None,
    })
}

/// One 32-element sub-block: element `i` is `d[i / 16] · q[i] + m`.
#[derive(Clone, Copy, Debug)]
pub struct Sub {
    pub q: [i8; QK],
    pub d: [f32; 2],
    pub m: f32,
}

fn half_at(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half_at(b, at).to_f32()
}

/// One weight row (all its blocks) of `dtype` as sub-blocks, following ggml's `dequantize_row_*`.
pub fn decode(dtype: GgmlDType, row: &[u8]) -> Vec<Sub> {
    let (bytes, _) = block_size(dtype).expect("a packed type");
    let mut out = Vec::new();
    for b in row.chunks_exact(bytes) {
        match dtype {
            GgmlDType::Q4_0 => out.push(nibbles(&b[2..18], |_| 0, f16_at(b, 0), -8.0 * f16_at(b, 0))),
            GgmlDType::Q5_0 => {
                let qh = u32::from_le_bytes(b[2..6].try_into().expect("4 bytes"));
                let d = f16_at(b, 0);
                let mut s = nibbles(&b[6..22], |i| ((qh >> i) & 1) as i8 * 16, d, 0.0);
                s.q.iter_mut().for_each(|q| *q -= 16);
                out.push(s);
            }
            GgmlDType::Q5_1 => {
                let qh = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
                out.push(nibbles(&b[8..24], |i| ((qh >> i) & 1) as i8 * 16, f16_at(b, 0), f16_at(b, 2)));
            }
            GgmlDType::Q8_0 => {
                let q = std::array::from_fn(|i| b[2 + i] as i8);
                out.push(Sub { q, d: [f16_at(b, 0); 2], m: 0.0 });
            }
            GgmlDType::Q4K => out.extend(decode_q4k(b)),
            GgmlDType::Q5K => out.extend(decode_q5k(b)),
            _ => out.extend(decode_q6k(b)),
        }
    }
    out
}

/// A 32-element block stored as 16 bytes of nibbles (elements `i` and `16 + i` in byte `i`),
/// plus `high(i)` for element `i`.
fn nibbles(qs: &[u8], high: impl Fn(usize) -> i8, d: f32, m: f32) -> Sub {
    let q = std::array::from_fn(|i| if i < 16 { (qs[i] & 0xF) as i8 } else { (qs[i - 16] >> 4) as i8 } + high(i));
    Sub { q, d: [d; 2], m }
}

/// ggml's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min.
fn scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

fn decode_q4k(b: &[u8]) -> Vec<Sub> {
    let (d, dmin, scales, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..144]);
    (0..8)
        .map(|j| {
            let (sc, mn) = scale_min(j, scales);
            let bytes = &qs[32 * (j / 2)..][..32];
            let q = std::array::from_fn(|l| (if j % 2 == 0 { bytes[l] & 0xF } else { bytes[l] >> 4 }) as i8);
            Sub { q, d: [d * sc as f32; 2], m: -(dmin * mn as f32) }
        })
        .collect()
}

fn decode_q5k(b: &[u8]) -> Vec<Sub> {
    let (d, dmin, scales, qh, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..48], &b[48..176]);
    (0..8)
        .map(|j| {
            let (sc, mn) = scale_min(j, scales);
            let bytes = &qs[32 * (j / 2)..][..32];
            let q = std::array::from_fn(|l| {
                let low = if j % 2 == 0 { bytes[l] & 0xF } else { bytes[l] >> 4 };
                (low + ((qh[l] >> j) & 1) * 16) as i8
            });
            Sub { q, d: [d * sc as f32; 2], m: -(dmin * mn as f32) }
        })
        .collect()
}

/// Q6_K sub-block `j`'s two signed scales (one per 16 elements).
fn q6k_scales(j: usize, b: &[u8]) -> [i8; 2] {
    let at = 192 + 8 * (j / 4) + 2 * (j % 4);
    [b[at] as i8, b[at + 1] as i8]
}

fn decode_q6k(b: &[u8]) -> Vec<Sub> {
    let (ql, qh, d) = (&b[0..128], &b[128..192], f16_at(b, 208));
    (0..8)
        .map(|j| {
            // Sub-block j of half `n`: its low nibbles and 2-bit highs, as ggml's q1..q4.
            let (n, part) = (j / 4, j % 4);
            let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
            let q = std::array::from_fn(|l| {
                let byte = ql[l + 32 * (part & 1)];
                let low = if part < 2 { byte & 0xF } else { byte >> 4 };
                ((low | (((qh[l] >> (2 * part)) & 3) << 4)) as i8) - 32
            });
            Sub { q, d: q6k_scales(j, b).map(|sc| d * sc as f32), m: 0.0 }
        })
        .collect()
}

fn nib_put(tile: &mut NibX8, c: usize, s: &Sub) {
    for g in 0..4 {
        for i in 0..4 {
            let j = 4 * g + i;
            tile.qs[g][4 * c + i] = (s.q[j] as u8) | ((s.q[16 + j] as u8) << 4);
        }
    }
}

fn byte_put(tile: &mut ByteX8, c: usize, s: &Sub, code: ByteCode) {
    for g in 0..8 {
        for i in 0..4 {
            tile.qs[g][4 * c + i] = code.byte(s.q[4 * g + i]);
        }
    }
}

/// In the one-row kernels (a decode step of one sequence, which reads every weight once),
/// asks for the weights [`AHEAD`] sub-blocks after `wb`: the tiles lie one after another,
/// so this runs on into the next tile. It keeps more of them in flight than the CPU's own
/// prefetcher does (random 1B Q4_K_M, 1 sequence, AVX2, alternated pairs: 31.2/30.1/32.1
/// -> 35.5/35.4/33.1 tok/s; SmolLM2 Q4_K_M 159/145 -> 184/180). Kernels for more rows
/// spend longer per sub-block and read a tile again for each 4 rows; prefetching there
/// measured no gain (SmolLM2 Q4_K_M, 32 sequences, 4 pairs: 543/456/468/416 ->
/// 404/438/411/387), so they do not. quant.rs's exact Q4_1 kernel takes it too.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn prefetch_ahead<const R: usize, T>(wb: &T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    if R == 1 {
        let at = (wb as *const T).wrapping_add(AHEAD) as *const i8;
        for line in (0..std::mem::size_of::<T>()).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line));
        }
    }
}

/// Sub-blocks ahead (1 KB of 4-bit tiles, 2 KB of byte tiles); 16 measured the same.
#[cfg(target_arch = "x86_64")]
const AHEAD: usize = 8;

#[inline(never)]
fn nib_tile<S: Source>(w: &[NibX8], s: S, a: &[Act], out: &mut [[f32; COLS]], isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: Isa::Avx2 is only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe {
            return avx2::nib_avx2::<S>(w, s, a, out);
        },
        // SAFETY: Isa::Vnni is only chosen when the CPU also has AVX-512 VNNI and VL.
        Isa::Vnni | Isa::Vnni512 => unsafe {
            return avx2::nib_vnni::<S>(w, s, a, out);
        },
        Isa::Scalar => {}
    }
    let _ = isa;
    let blocks = w.len();
    for (r, out) in out.iter_mut().enumerate() {
        for (c, out) in out.iter_mut().enumerate() {
            // The SIMD kernels' order: scale terms and offset terms in two sums, added at the end.
            let (mut scaled, mut offset) = (0f32, 0f32);
            for (b, (wb, ab)) in w.iter().zip(&a[r * blocks..(r + 1) * blocks]).enumerate() {
                let sb = s.scalar(b);
                let sumi: i32 = (0..16)
                    .map(|j| {
                        let q = wb.qs[j / 4][4 * c + j % 4];
                        (q & 0xF) as i32 * ab.qs[j] as i32 + (q >> 4) as i32 * ab.qs[16 + j] as i32
                    })
                    .sum();
                scaled = (sb.d[0][c] * ab.d).mul_add(sumi as f32, scaled);
                offset = sb.m[c].mul_add(ab.ds, offset);
            }
            *out = scaled + offset;
        }
    }
}

#[inline(never)]
fn byte_tile<S: Source>(w: &[ByteX8], s: S, a: &[Act], out: &mut [[f32; COLS]], isa: Isa, code: ByteCode) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        use avx2::{byte_avx2, byte_vnni, Signed, Unsigned, Vnni};
        let offset = code.unsigned_offset();
        let split = s.halves();
        // SAFETY: Isa::Vnni is only chosen when the CPU has AVX2, FMA, AVX-512 VNNI and VL,
        // Isa::Avx2 when it has AVX2 and FMA.
        unsafe {
            match (isa, code, split) {
                (Isa::Vnni | Isa::Vnni512, ByteCode::Signed, false) => {
                    byte_vnni::<false, Vnni<true>, S>(w, s, a, offset, out)
                }
                (Isa::Vnni | Isa::Vnni512, ByteCode::Signed, true) => {
                    byte_vnni::<true, Vnni<true>, S>(w, s, a, offset, out)
                }
                (Isa::Vnni | Isa::Vnni512, _, false) => byte_vnni::<false, Vnni<false>, S>(w, s, a, offset, out),
                (Isa::Vnni | Isa::Vnni512, _, true) => byte_vnni::<true, Vnni<false>, S>(w, s, a, offset, out),
                (_, ByteCode::Signed, false) => byte_avx2::<false, Signed, S>(w, s, a, 0, out),
                (_, ByteCode::Signed, true) => byte_avx2::<true, Signed, S>(w, s, a, 0, out),
                (_, ByteCode::Unsigned { .. }, _) => match (code.pairs_in_i16(), split) {
                    (4, false) => byte_avx2::<false, Unsigned<4>, S>(w, s, a, offset, out),
                    (4, true) => byte_avx2::<true, Unsigned<4>, S>(w, s, a, offset, out),
                    (_, false) => byte_avx2::<false, Unsigned<2>, S>(w, s, a, offset, out),
                    (_, true) => byte_avx2::<true, Unsigned<2>, S>(w, s, a, offset, out),
                },
            }
        }
        return;
    }
    let _ = isa;
    let blocks = w.len();
    for (r, out) in out.iter_mut().enumerate() {
        for (c, out) in out.iter_mut().enumerate() {
            // The SIMD kernels' order: scale terms and offset terms in two sums, added at the end.
            let (mut scaled, mut offset) = (0f32, 0f32);
            for (b, (wb, ab)) in w.iter().zip(&a[r * blocks..(r + 1) * blocks]).enumerate() {
                let sb = s.scalar(b);
                let dot = |j: std::ops::Range<usize>| -> i32 {
                    j.map(|j| code.weight(wb.qs[j / 4][4 * c + j % 4]) * ab.qs[j] as i32).sum()
                };
                if s.halves() {
                    for h in 0..2 {
                        scaled = (sb.d[h][c] * ab.d).mul_add(dot(16 * h..16 * h + 16) as f32, scaled);
                    }
                } else {
                    scaled = (sb.d[0][c] * ab.d).mul_add(dot(0..QK) as f32, scaled);
                }
                offset = sb.m[c].mul_add(ab.ds, offset);
            }
            *out = scaled + offset;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{prefetch_ahead, Act, ByteX8, NibX8, Source, COLS};

    /// [`super::ScaleCache::fill`]'s values: `s`'s registers for each sub-block, stored.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn fill<S: Source>(
        s: S,
        blocks: usize,
        into: &mut Vec<[[f32; COLS]; 2]>,
        pick: impl Fn([[f32; COLS]; 3]) -> [[f32; COLS]; 2],
    ) {
        let stored = |v: __m256| {
            let mut x = [0.0; COLS];
            _mm256_storeu_ps(x.as_mut_ptr(), v);
            x
        };
        into.extend((0..blocks).map(|b| pick(s.simd(b).map(stored))));
    }

    /// Elements `at..at + 4` of an activation block, in every 32-bit lane.
    #[inline(always)]
    unsafe fn broadcast4(a: &Act, at: usize) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(a.qs.as_ptr().add(at) as *const i32))
    }

    /// Ends a tile: each row's scale terms plus its offset terms ([`offsets`]).
    #[inline(always)]
    unsafe fn store<const R: usize, S: Source>(
        acc: &[__m256; R],
        s: &S,
        a: &[Act],
        blocks: usize,
        out: &mut [[f32; COLS]],
    ) {
        let offsets = offsets::<R, S>(s, a, blocks);
        for r in 0..R {
            _mm256_storeu_ps(out[r].as_mut_ptr(), _mm256_add_ps(acc[r], offsets[r]));
        }
    }

    // Every kernel keeps two float sums per row, the sub-blocks' scaled integer dots and their
    // offsets, and adds them at the end: the same float operations in the same order on every
    // kernel, whatever the row count. The offsets go in a pass of their own after the dots, so
    // that the dots' loop holds one sum per row in registers, not two (16 registers, 4 rows).

    /// Each row's offset terms `Σ m · ds` over the sub-blocks, in order; zero where `s` has no
    /// offsets (which skips `+0` terms only, see [`Source::offsets`]).
    #[inline(always)]
    unsafe fn offsets<const R: usize, S: Source>(s: &S, a: &[Act], blocks: usize) -> [__m256; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        if s.offsets() {
            for b in 0..blocks {
                let [_, _, wm] = s.simd(b);
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(wm, _mm256_set1_ps(a[r * blocks + b].ds), *acc);
                }
            }
        }
        acc
    }

    /// [`nib`] on every row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn nib_avx2<S: Source>(w: &[NibX8], s: S, a: &[Act], out: &mut [[f32; COLS]]) {
        in_row_groups!(w, a, out, R => |a, out| nib::<R, S>(w, s, a, out))
    }

    /// The 4-bit kernel for `R` rows: `maddubs` of nibbles and activation bytes.
    #[inline(always)]
    unsafe fn nib<const R: usize, S: Source>(w: &[NibX8], s: S, a: &[Act], out: &mut [[f32; COLS]]) {
        let blocks = w.len();
        let nibble = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, wb) in w.iter().enumerate() {
            prefetch_ahead::<R, _>(wb);
            let [d0, _, _] = s.simd(b);
            // Nibbles (≤ 15) times bytes (|a| ≤ 127): 8 pair sums of ≤ 3810 each fit in i16.
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
            let wd = d0;
            for r in 0..R {
                let ab = &a[r * blocks + b];
                let sumi = _mm256_cvtepi32_ps(_mm256_madd_epi16(sumi16[r], ones));
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(wd, _mm256_set1_ps(ab.d)), sumi, acc[r]);
            }
        }
        store(&acc, &s, a, blocks, out);
    }

    /// [`nib_dpbusd`] on every row.
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    pub(super) unsafe fn nib_vnni<S: Source>(w: &[NibX8], s: S, a: &[Act], out: &mut [[f32; COLS]]) {
        in_row_groups!(w, a, out, R => |a, out| nib_dpbusd::<R, S>(w, s, a, out))
    }

    /// [`nib`] with `vpdpbusd` (unsigned nibbles times signed bytes, summed in i32). It takes
    /// several cycles, so each row sums into independent registers.
    #[inline(always)]
    unsafe fn nib_dpbusd<const R: usize, S: Source>(w: &[NibX8], s: S, a: &[Act], out: &mut [[f32; COLS]]) {
        let blocks = w.len();
        let nibble = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, wb) in w.iter().enumerate() {
            prefetch_ahead::<R, _>(wb);
            let [d0, _, _] = s.simd(b);
            // Independent vpdpbusd chains per row: 4 for one row, 2 each for more (as many in
            // flight, fewer sums to add); integer sums are exact in any grouping.
            let chains = if R == 1 { 4 } else { 2 };
            let mut sumi = [[_mm256_setzero_si256(); 4]; R];
            for (g, qs) in wb.qs.iter().enumerate() {
                let raw = _mm256_loadu_si256(qs.as_ptr() as *const __m256i);
                let lo = _mm256_and_si256(raw, nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                for r in 0..R {
                    let ab = &a[r * blocks + b];
                    let c = g % chains;
                    sumi[r][c] = _mm256_dpbusd_epi32(sumi[r][c], lo, broadcast4(ab, 4 * g));
                    sumi[r][c] = _mm256_dpbusd_epi32(sumi[r][c], hi, broadcast4(ab, 16 + 4 * g));
                }
            }
            let wd = d0;
            for r in 0..R {
                let ab = &a[r * blocks + b];
                let q = &sumi[r];
                let sum = if chains == 4 {
                    _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]))
                } else {
                    _mm256_add_epi32(q[0], q[1])
                };
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(wd, _mm256_set1_ps(ab.d)), _mm256_cvtepi32_ps(sum), acc[r]);
            }
        }
        store(&acc, &s, a, blocks, out);
    }

    /// The byte kernels, one per instruction set (see [`ByteDot`]). Per sub-block and row: the
    /// integer dot of each half (Q6_K, `SPLIT`, whose halves have scales of their own) or of
    /// the whole sub-block, less `offset · Σ a` over the same elements (the bytes hold
    /// `w + offset`), scaled in f32.
    #[inline(always)]
    unsafe fn byte<const R: usize, const SPLIT: bool, D: ByteDot, S: Source>(
        w: &[ByteX8],
        s: S,
        a: &[Act],
        offset: i32,
        out: &mut [[f32; COLS]],
    ) {
        // A constant 0 where there is no offset, so the bias subtraction folds away.
        let offset = if D::OFFSET { offset } else { 0 };
        let blocks = w.len();
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, wb) in w.iter().enumerate() {
            prefetch_ahead::<R, _>(wb);
            let [d0, d1, _] = s.simd(b);
            let rows: [&Act; R] = std::array::from_fn(|r| &a[r * blocks + b]);
            if SPLIT {
                let low = D::dots::<R>(wb, &rows, 0..4);
                scale_rows(&mut acc, low, d0, &rows, |a| offset * a.sums[0]);
                let high = D::dots::<R>(wb, &rows, 4..8);
                scale_rows(&mut acc, high, d1, &rows, |a| offset * a.sums[1]);
            } else {
                let whole = D::dots::<R>(wb, &rows, 0..8);
                scale_rows(&mut acc, whole, d0, &rows, |a| offset * (a.sums[0] + a.sums[1]));
            }
        }
        store(&acc, &s, a, blocks, out);
    }

    /// Each row's scale term: `acc += (d · a.d) · (dot − bias(a))`.
    #[inline(always)]
    unsafe fn scale_rows<const R: usize>(
        acc: &mut [__m256; R],
        dots: [__m256i; R],
        d: __m256,
        rows: &[&Act; R],
        bias: impl Fn(&Act) -> i32,
    ) {
        for r in 0..R {
            let sumi = _mm256_cvtepi32_ps(_mm256_sub_epi32(dots[r], _mm256_set1_epi32(bias(rows[r]))));
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(rows[r].d)), sumi, acc[r]);
        }
    }

    /// Each row's integer dot (8 i32 lanes, one per column) over weight groups `gs` (4 elements
    /// each) of one sub-block. Every way gives the exact sum, so the same bits follow.
    pub(super) trait ByteDot {
        /// Whether the dot is of the bytes as unsigned (`w + offset`), so that `offset · Σ a`
        /// is to be taken off; [`Signed`]'s is of `w` itself.
        const OFFSET: bool = true;

        /// # Safety
        /// The CPU must have the instructions the implementation uses.
        unsafe fn dots<const R: usize>(wb: &ByteX8, rows: &[&Act; R], gs: std::ops::Range<usize>) -> [__m256i; R];
    }

    /// `vpdpbusd` with the weights' bytes as the unsigned side (`FLIP`: Q8_0's signed bytes with
    /// the sign bit flipped, `w + 128`) and each row's activation bytes as the broadcast operand;
    /// two chains per row, as it takes several cycles.
    pub(super) struct Vnni<const FLIP: bool>;

    impl<const FLIP: bool> ByteDot for Vnni<FLIP> {
        #[inline(always)]
        unsafe fn dots<const R: usize>(wb: &ByteX8, rows: &[&Act; R], gs: std::ops::Range<usize>) -> [__m256i; R] {
            let flip = _mm256_set1_epi8(-128);
            let mut sum = [[_mm256_setzero_si256(); 2]; R];
            for g in gs {
                let x = _mm256_loadu_si256(wb.qs[g].as_ptr() as *const __m256i);
                let x = if FLIP { _mm256_xor_si256(x, flip) } else { x };
                for r in 0..R {
                    sum[r][g % 2] = _mm256_dpbusd_epi32(sum[r][g % 2], x, broadcast4(rows[r], 4 * g));
                }
            }
            sum.map(|[a, b]| _mm256_add_epi32(a, b))
        }
    }

    /// AVX2 on unsigned bytes (`w + offset`): `maddubs` straight on the bytes and the signed
    /// activations; `PAIRS` of its pair sums (each at most `2 · max · 127`) add up in i16 before
    /// widening.
    pub(super) struct Unsigned<const PAIRS: usize>;

    impl<const PAIRS: usize> ByteDot for Unsigned<PAIRS> {
        #[inline(always)]
        unsafe fn dots<const R: usize>(wb: &ByteX8, rows: &[&Act; R], gs: std::ops::Range<usize>) -> [__m256i; R] {
            let ones = _mm256_set1_epi16(1);
            let mut sum = [_mm256_setzero_si256(); R];
            for g0 in gs.step_by(PAIRS) {
                let x: [__m256i; PAIRS] =
                    std::array::from_fn(|i| _mm256_loadu_si256(wb.qs[g0 + i].as_ptr() as *const __m256i));
                for r in 0..R {
                    let mut pairs = _mm256_maddubs_epi16(x[0], broadcast4(rows[r], 4 * g0));
                    for (i, x) in x.iter().enumerate().skip(1) {
                        pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(*x, broadcast4(rows[r], 4 * (g0 + i))));
                    }
                    sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(pairs, ones));
                }
            }
            sum
        }
    }

    /// `a + b` in i32 lanes, in an instruction LLVM cannot reassociate: left to itself it turns
    /// a row's chain of sums into a tree, which keeps every group's weights live at once and
    /// spills them (16 registers).
    #[inline(always)]
    unsafe fn add_in_order(mut a: __m256i, b: __m256i) -> __m256i {
        std::arch::asm!("vpaddd {a}, {a}, {b}", a = inout(ymm_reg) a, b = in(ymm_reg) b, options(pure, nomem, nostack, preserves_flags));
        a
    }

    /// AVX2 on Q8_0's signed bytes (±127): `maddubs(|w|, a · sign(w))`, every pair sum widened
    /// to i32 (two would overflow i16).
    pub(super) struct Signed;

    impl ByteDot for Signed {
        const OFFSET: bool = false;

        #[inline(always)]
        unsafe fn dots<const R: usize>(wb: &ByteX8, rows: &[&Act; R], gs: std::ops::Range<usize>) -> [__m256i; R] {
            let ones = _mm256_set1_epi16(1);
            let mut sum = [_mm256_setzero_si256(); R];
            for g in gs {
                let x = _mm256_loadu_si256(wb.qs[g].as_ptr() as *const __m256i);
                let ax = _mm256_sign_epi8(x, x);
                for r in 0..R {
                    let y = _mm256_sign_epi8(broadcast4(rows[r], 4 * g), x);
                    sum[r] = add_in_order(sum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, y), ones));
                }
            }
            sum
        }
    }

    /// [`byte`] with AVX2 ([`Unsigned`], [`Signed`]) on every row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn byte_avx2<const SPLIT: bool, D: ByteDot, S: Source>(
        w: &[ByteX8],
        s: S,
        a: &[Act],
        offset: i32,
        out: &mut [[f32; COLS]],
    ) {
        in_row_groups!(w, a, out, R => |a, out| byte::<R, SPLIT, D, S>(w, s, a, offset, out))
    }

    /// [`byte`] with AVX-512 VNNI ([`Vnni`]) on every row.
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    pub(super) unsafe fn byte_vnni<const SPLIT: bool, D: ByteDot, S: Source>(
        w: &[ByteX8],
        s: S,
        a: &[Act],
        offset: i32,
        out: &mut [[f32; COLS]],
    ) {
        in_row_groups!(w, a, out, R => |a, out| byte::<R, SPLIT, D, S>(w, s, a, offset, out))
    }
}

/// [`KTiles::tile2`]'s kernels: two tiles side by side in 512-bit registers (the first tile's 8
/// columns in the low half), each lane doing the float operations of `avx2::nib_vnni` and
/// `avx2::byte` with [`avx2::Vnni`], so the same bits; half the instructions per column.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Act, ByteX8, NibX8, Source, COLS, ROWS2};

    /// Two tiles' 8-lane values as one 16-lane register.
    #[inline(always)]
    unsafe fn join(low: __m256, high: __m256) -> __m512 {
        _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(low)), _mm256_castps_pd(high), 1))
    }

    /// The same 32 bytes of both tiles' group.
    #[inline(always)]
    unsafe fn load2(low: &[u8; 32], high: &[u8; 32]) -> __m512i {
        let low = _mm256_loadu_si256(low.as_ptr() as *const __m256i);
        _mm512_inserti64x4(_mm512_castsi256_si512(low), _mm256_loadu_si256(high.as_ptr() as *const __m256i), 1)
    }

    /// Both tiles' scales for sub-block `b`: `[d0, d1, m]`.
    #[inline(always)]
    unsafe fn scales<S: Source>(s: &[S; 2], b: usize) -> [__m512; 3] {
        let (low, high) = (s[0].simd(b), s[1].simd(b));
        [join(low[0], high[0]), join(low[1], high[1]), join(low[2], high[2])]
    }

    /// Elements `at..at + 4` of an activation block, in every 32-bit lane.
    #[inline(always)]
    unsafe fn broadcast4(a: &Act, at: usize) -> __m512i {
        _mm512_set1_epi32(std::ptr::read_unaligned(a.qs.as_ptr().add(at) as *const i32))
    }

    #[inline(always)]
    unsafe fn store<const R: usize>(acc: &[[__m512; 2]; R], out: &mut [[[f32; COLS]; ROWS2]; 2]) {
        for r in 0..R {
            let v = _mm512_add_ps(acc[r][0], acc[r][1]);
            _mm256_storeu_ps(out[0][r].as_mut_ptr(), _mm512_castps512_ps256(v));
            _mm256_storeu_ps(out[1][r].as_mut_ptr(), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        }
    }

    /// Independent `vpdpbusd` chains per row (it takes several cycles): two for up to 4 rows, one
    /// from 5 on, where the rows' chains are enough and 32 registers do not hold two per row.
    /// Integer sums are exact in any grouping.
    const fn chains<const R: usize>() -> usize {
        if R > 4 {
            1
        } else {
            2
        }
    }

    /// Each row's scale term: `acc += (d · a.d) · (dot − bias)`.
    #[inline(always)]
    unsafe fn scale_row(acc: &mut __m512, dot: __m512i, d: __m512, a: &Act, bias: i32) {
        let sumi = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, _mm512_set1_epi32(bias)));
        *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(a.d)), sumi, *acc);
    }

    /// `avx2::nib_vnni` on two tiles.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn nib<const R: usize, S: Source>(
        w: [&[NibX8]; 2],
        s: [S; 2],
        a: &[Act],
        out: &mut [[[f32; COLS]; ROWS2]; 2],
    ) {
        let blocks = w[0].len();
        let nibble = _mm512_set1_epi8(0x0F);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for b in 0..blocks {
            let [d0, _, wm] = scales(&s, b);
            let mut sumi = [[_mm512_setzero_si512(); 2]; R];
            let chains = chains::<R>();
            for g in 0..4 {
                let raw = load2(&w[0][b].qs[g], &w[1][b].qs[g]);
                let lo = _mm512_and_si512(raw, nibble);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), nibble);
                for r in 0..R {
                    let ab = &a[r * blocks + b];
                    let c = &mut sumi[r][g % chains];
                    *c = _mm512_dpbusd_epi32(*c, lo, broadcast4(ab, 4 * g));
                    *c = _mm512_dpbusd_epi32(*c, hi, broadcast4(ab, 16 + 4 * g));
                }
            }
            for r in 0..R {
                let ab = &a[r * blocks + b];
                scale_row(&mut acc[r][0], _mm512_add_epi32(sumi[r][0], sumi[r][1]), d0, ab, 0);
                acc[r][1] = _mm512_fmadd_ps(wm, _mm512_set1_ps(ab.ds), acc[r][1]);
            }
        }
        store(&acc, out);
    }

    /// Each row's integer dot over groups `gs` of sub-block `b` of both tiles: `avx2::Vnni`'s.
    #[inline(always)]
    unsafe fn dots<const R: usize, const FLIP: bool>(
        w: [&[ByteX8]; 2],
        b: usize,
        rows: &[&Act; R],
        gs: std::ops::Range<usize>,
    ) -> [__m512i; R] {
        let flip = _mm512_set1_epi8(-128);
        let mut sum = [[_mm512_setzero_si512(); 2]; R];
        let chains = chains::<R>();
        for g in gs {
            let x = load2(&w[0][b].qs[g], &w[1][b].qs[g]);
            let x = if FLIP { _mm512_xor_si512(x, flip) } else { x };
            for r in 0..R {
                sum[r][g % chains] = _mm512_dpbusd_epi32(sum[r][g % chains], x, broadcast4(rows[r], 4 * g));
            }
        }
        sum.map(|[a, b]| _mm512_add_epi32(a, b))
    }

    /// `avx2::byte` with `avx2::Vnni<FLIP>` on two tiles.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn byte<const R: usize, const FLIP: bool, const SPLIT: bool, S: Source>(
        w: [&[ByteX8]; 2],
        s: [S; 2],
        a: &[Act],
        offset: i32,
        out: &mut [[[f32; COLS]; ROWS2]; 2],
    ) {
        let blocks = w[0].len();
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for b in 0..blocks {
            let [d0, d1, wm] = scales(&s, b);
            let rows: [&Act; R] = std::array::from_fn(|r| &a[r * blocks + b]);
            if SPLIT {
                let low = dots::<R, FLIP>(w, b, &rows, 0..4);
                for r in 0..R {
                    scale_row(&mut acc[r][0], low[r], d0, rows[r], offset * rows[r].sums[0]);
                }
                let high = dots::<R, FLIP>(w, b, &rows, 4..8);
                for r in 0..R {
                    scale_row(&mut acc[r][0], high[r], d1, rows[r], offset * rows[r].sums[1]);
                }
            } else {
                let whole = dots::<R, FLIP>(w, b, &rows, 0..8);
                for r in 0..R {
                    scale_row(&mut acc[r][0], whole[r], d0, rows[r], offset * (rows[r].sums[0] + rows[r].sums[1]));
                }
            }
            if s[0].offsets() {
                for r in 0..R {
                    acc[r][1] = _mm512_fmadd_ps(wm, _mm512_set1_ps(rows[r].ds), acc[r][1]);
                }
            }
        }
        store(&acc, out);
    }
}

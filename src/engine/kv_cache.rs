//! Preallocated KV cache: one tensor per layer for keys and one for values, `[slots, kv_heads,
//! max_len, head_dim]`, a slot per concurrent sequence. New keys and values are written in
//! place (no per-step concatenation or reallocation): a prompt piece with one strided copy,
//! all of a step's single tokens with one scatter; a finished sequence's slot is handed to
//! the next one, which simply overwrites it from position 0. Keeping a layer's slots in one
//! tensor lets attention read many slots in one batched matmul (see `AttentionPath::Batched`
//! in the decoder).

use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor};

#[derive(Debug)]
pub struct KvCache {
    /// `keys[layer]`, `[slots, kv_heads, max_len, head_dim]`.
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    slots: usize,
    kv_heads: usize,
    max_len: usize,
    head_dim: usize,
}

impl KvCache {
    pub fn new(
        n_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        slots: usize,
        max_len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if slots.checked_mul(kv_heads).and_then(|n| n.checked_mul(max_len)).is_none_or(|rows| rows > u32::MAX as usize)
        {
            candle_core::bail!(
                "a KV cache of {slots} slots x {kv_heads} heads x {max_len} positions is too large to index"
            );
        }
        let alloc = || -> Result<Vec<Tensor>> {
            (0..n_layers).map(|_| Tensor::zeros((slots, kv_heads, max_len, head_dim), dtype, device)).collect()
        };
        Ok(Self { keys: alloc()?, values: alloc()?, slots, kv_heads, max_len, head_dim })
    }

    /// Bytes one cached token takes across all layers (keys and values).
    pub fn bytes_per_token(n_layers: usize, n_kv_heads: usize, head_dim: usize, dtype: DType) -> usize {
        2 * n_layers * n_kv_heads * head_dim * dtype.size_in_bytes()
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Makes every slot `max_len` positions long, keeping what the slots hold.
    pub fn grow(&mut self, max_len: usize) -> Result<()> {
        if max_len <= self.max_len {
            return Ok(());
        }
        for cache in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let grown =
                Tensor::zeros((self.slots, self.kv_heads, max_len, self.head_dim), cache.dtype(), cache.device())?;
            grown.slice_set(cache, 2, 0)?;
            *cache = grown;
        }
        self.max_len = max_len;
        Ok(())
    }

    /// Stores one row's `k`, `v` (`[kv_heads, n, head_dim]`) at positions `start..start + n`
    /// of its slot: one strided copy each.
    pub fn write(&mut self, layer: usize, slot: usize, start: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let end = start + k.dim(1)?;
        if slot >= self.slots || end > self.max_len {
            candle_core::bail!("KV cache write outside the cache: slot {slot}, positions {start}..{end}");
        }
        self.keys[layer].get(slot)?.slice_set(&k.contiguous()?, 1, start)?;
        self.values[layer].get(slot)?.slice_set(&v.contiguous()?, 1, start)
    }

    /// Stores one token for each of slots `first..first + count` at once: `k`, `v` are
    /// `[count, kv_heads, head_dim]`, `positions` `[count * kv_heads, 1, head_dim]` u32 (from
    /// [`KvCache::single_positions`]), `u32::MAX` where a slot gets nothing. One scatter each,
    /// a thread per element, whatever the number of rows.
    pub fn write_single(
        &mut self,
        layer: usize,
        first: usize,
        count: usize,
        positions: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<()> {
        let shape = (count * self.kv_heads, 1, self.head_dim);
        for (cache, new) in [(&self.keys[layer], k), (&self.values[layer], v)] {
            let view = cache.narrow(0, first, count)?.reshape((count * self.kv_heads, self.max_len, self.head_dim))?;
            view.scatter_set(positions, &new.contiguous()?.reshape(shape)?, 1)?;
        }
        Ok(())
    }

    /// Stores each token's keys and values (`[tokens, kv_heads, head_dim]`, f32, CPU) at its
    /// `(slot, position)` in `rows`: one pass over each of the layer's two tensors, in place.
    pub fn write_rows(&mut self, layer: usize, rows: &[(usize, usize)], k: &[f32], v: &[f32]) -> Result<()> {
        let width = self.kv_heads * self.head_dim;
        if let Some(&(slot, position)) = rows.iter().find(|&&(s, p)| s >= self.slots || p >= self.max_len) {
            candle_core::bail!("KV cache write outside the cache: slot {slot}, position {position}");
        }
        if k.len() != rows.len() * width || v.len() != k.len() {
            candle_core::bail!("KV cache write of {} keys and {} values for {} tokens", k.len(), v.len(), rows.len());
        }
        for (cache, new) in [(&self.keys[layer], k), (&self.values[layer], v)] {
            cache.inplace_op1(&RowWrite {
                rows,
                new,
                kv_heads: self.kv_heads,
                max_len: self.max_len,
                hd: self.head_dim,
            })?;
        }
        Ok(())
    }

    /// The `positions` of [`KvCache::write_single`]: `position[i]` for slot `first + i`, or
    /// `None` for a slot that gets nothing this step.
    pub fn single_positions(&self, position: &[Option<usize>], device: &Device) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(position.len() * self.kv_heads);
        for p in position {
            let id = match p {
                Some(p) if *p < self.max_len => *p as u32,
                Some(p) => candle_core::bail!("KV cache write at position {p}, past the cache ({})", self.max_len),
                None => u32::MAX,
            };
            ids.extend(std::iter::repeat_n(id, self.kv_heads));
        }
        let n = ids.len();
        Tensor::from_vec(ids, (n, 1, 1), device)?.broadcast_as((n, 1, self.head_dim))?.contiguous()
    }

    /// A slot's whole keys and values, `[kv_heads, max_len, head_dim]`, contiguous views.
    pub fn slot(&self, layer: usize, slot: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.keys[layer].get(slot)?, self.values[layer].get(slot)?))
    }

    /// One layer's keys and values, `[slots, kv_heads, max_len, head_dim]`.
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Views of slots `first..first + count`, positions `0..len`: keys and values `[count,
    /// kv_heads, len, head_dim]`. Strided (rows of `max_len`), in the layout cuBLAS and
    /// candle's CPU matmul take without a copy.
    pub fn read_slots(&self, layer: usize, first: usize, count: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let view = |t: &Tensor| t.narrow(0, first, count)?.narrow(2, 0, len);
        Ok((view(&self.keys[layer])?, view(&self.values[layer])?))
    }
}

/// [`KvCache::write_rows`] on one of a layer's tensors.
struct RowWrite<'a> {
    rows: &'a [(usize, usize)],
    new: &'a [f32],
    kv_heads: usize,
    max_len: usize,
    hd: usize,
}

impl candle_core::InplaceOp1 for RowWrite<'_> {
    fn name(&self) -> &'static str {
        "kv-cache-row-write"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("the CPU's fused step keeps an f32 KV cache");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the KV cache is not contiguous");
        };
        let data = &mut data[start..end];
        let Self { rows, new, kv_heads, max_len, hd } = *self;
        for (t, &(slot, position)) in rows.iter().enumerate() {
            for g in 0..kv_heads {
                let at = ((slot * kv_heads + g) * max_len + position) * hd;
                data[at..at + hd].copy_from_slice(&new[(t * kv_heads + g) * hd..][..hd]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row writes and the one-scatter write of single tokens put each key and value at its
    /// slot and position, and leave everything else untouched.
    #[test]
    fn writes_put_each_token_at_its_slot_and_position() {
        let dev = Device::Cpu;
        let (kv, hd, slots, max_len) = (2, 3, 4, 8);
        let mut cache = KvCache::new(1, kv, hd, slots, max_len, DType::F32, &dev).unwrap();
        // Value of (head h, token t, dim d) = 100h + 10t + d + 1; tokens 0..3 of a prompt
        // piece go to slot 2 at positions 4..7.
        let value = |h: usize, t: usize, d: usize| (100 * h + 10 * t + d + 1) as f32;
        let piece: Vec<f32> =
            (0..kv).flat_map(|h| (0..3).flat_map(move |t| (0..hd).map(move |d| value(h, t, d)))).collect();
        let k = Tensor::from_vec(piece, (kv, 3, hd), &dev).unwrap();
        cache.write(0, 2, 4, &k, &(&k * 2.0).unwrap()).unwrap();
        // Single tokens 5 and 6 go to slots 1 (position 2) and 3 (position 0); slot 2, in the
        // range, gets nothing.
        let single: Vec<f32> =
            [5usize, 6].iter().flat_map(|&t| (0..kv).flat_map(move |h| (0..hd).map(move |d| value(h, t, d)))).collect();
        let single = Tensor::from_vec(single, (2, kv, hd), &dev).unwrap();
        let zeros = Tensor::zeros((1, kv, hd), DType::F32, &dev).unwrap();
        let ks = Tensor::cat(&[&single.narrow(0, 0, 1).unwrap(), &zeros, &single.narrow(0, 1, 1).unwrap()], 0).unwrap();
        let positions = cache.single_positions(&[Some(2), None, Some(0)], &dev).unwrap();
        cache.write_single(0, 1, 3, &positions, &ks, &(&ks * 2.0).unwrap()).unwrap();

        for slot in 0..slots {
            let (keys, values) = cache.slot(0, slot).unwrap();
            let (keys, values) = (keys.to_vec3::<f32>().unwrap(), values.to_vec3::<f32>().unwrap());
            for h in 0..kv {
                for p in 0..max_len {
                    let token = match (slot, p) {
                        (2, 4..=6) => Some(p - 4),
                        (1, 2) => Some(5),
                        (3, 0) => Some(6),
                        _ => None,
                    };
                    let want: Vec<f32> = match token {
                        Some(t) => (0..hd).map(|d| value(h, t, d)).collect(),
                        None => vec![0.0; hd],
                    };
                    assert_eq!(keys[h][p], want, "keys slot {slot} head {h} pos {p}");
                    assert_eq!(
                        values[h][p],
                        want.iter().map(|x| x * 2.0).collect::<Vec<_>>(),
                        "values slot {slot} head {h} pos {p}"
                    );
                }
            }
        }
        let before: Vec<_> = (0..slots).map(|s| cache.slot(0, s).unwrap().0.to_vec3::<f32>().unwrap()).collect();
        cache.grow(max_len + 5).unwrap();
        for (slot, before) in before.iter().enumerate() {
            let after = cache.slot(0, slot).unwrap().0.to_vec3::<f32>().unwrap();
            for h in 0..kv {
                assert_eq!(after[h][..max_len], before[h][..], "grown slot {slot} keeps its keys");
                assert!(after[h][max_len..].iter().flatten().all(|&x| x == 0.0));
            }
        }
        assert!(cache.write(0, 0, max_len + 2, &k, &k).is_ok(), "the grown positions take writes");
        assert!(cache.write(0, 4, 0, &k, &k).is_err());
        assert!(cache.write(0, 0, max_len + 3, &k, &k).is_err());
        assert!(cache.single_positions(&[Some(max_len + 5)], &dev).is_err());
    }
}

//! Preallocated KV cache: one tensor per layer for keys and one for values, `[slots, kv_heads,
//! max_len, head_dim]`, a slot per concurrent sequence. A step writes all its new keys and
//! values in place with one scatter per layer (no per-step concatenation, reallocation, or
//! per-row copy launch); a finished sequence's slot is handed to the next one, which simply
//! overwrites it from position 0. Keeping a layer's slots in one tensor lets attention read
//! many slots in one batched matmul (see `AttentionPath::Batched` in the decoder).

use candle_core::{DType, Device, Result, Tensor};

use super::models::SeqStep;

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
    pub fn new(n_layers: usize, kv_heads: usize, head_dim: usize, slots: usize, max_len: usize, dtype: DType, device: &Device) -> Result<Self> {
        if slots.checked_mul(kv_heads).and_then(|n| n.checked_mul(max_len)).is_none_or(|rows| rows > u32::MAX as usize) {
            candle_core::bail!("a KV cache of {slots} slots x {kv_heads} heads x {max_len} positions is too large to index");
        }
        let alloc = || -> Result<Vec<Tensor>> { (0..n_layers).map(|_| Tensor::zeros((slots, kv_heads, max_len, head_dim), dtype, device)).collect() };
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

    /// Where a step's new keys and values go, for [`KvCache::write`]: the row of the cache
    /// (flattened to `[slots * kv_heads * max_len, head_dim]`) of every (kv head, token), in the
    /// order of the `[kv_heads, tokens, head_dim]` tensors the decoder writes. The same index
    /// serves every layer of the step.
    pub fn write_index(&self, batch: &[SeqStep], device: &Device) -> Result<Tensor> {
        let tokens: usize = batch.iter().map(|s| s.tokens.len()).sum();
        let mut rows = Vec::with_capacity(self.kv_heads * tokens);
        for head in 0..self.kv_heads {
            for s in batch {
                if s.slot >= self.slots || s.start + s.tokens.len() > self.max_len {
                    candle_core::bail!("KV cache write outside the cache: slot {} positions {}..{}", s.slot, s.start, s.start + s.tokens.len());
                }
                let base = (s.slot * self.kv_heads + head) * self.max_len;
                rows.extend((s.start..s.start + s.tokens.len()).map(|p| (base + p) as u32));
            }
        }
        let n = rows.len();
        Tensor::from_vec(rows, (n, 1), device)?.broadcast_as((n, self.head_dim))?.contiguous()
    }

    /// Stores a step's `k`, `v` (`[kv_heads, tokens, head_dim]`) where `index` (from
    /// [`KvCache::write_index`]) says.
    pub fn write(&mut self, layer: usize, index: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
        let rows = self.slots * self.kv_heads * self.max_len;
        for (cache, new) in [(&self.keys[layer], k), (&self.values[layer], v)] {
            let new = new.contiguous()?;
            let flat = new.reshape((new.elem_count() / self.head_dim, self.head_dim))?;
            cache.reshape((rows, self.head_dim))?.scatter_set(index, &flat, 0)?;
        }
        Ok(())
    }

    /// A slot's whole keys and values, `[kv_heads, max_len, head_dim]`, contiguous views.
    pub fn slot(&self, layer: usize, slot: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.keys[layer].get(slot)?, self.values[layer].get(slot)?))
    }

    /// Views of the first `len` cached positions of a slot: keys and values `[kv_heads, len, head_dim]`.
    pub fn read(&self, layer: usize, slot: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.slot(layer, slot)?;
        Ok((k.narrow(1, 0, len)?, v.narrow(1, 0, len)?))
    }

    /// Views of slots `first..first + count`, positions `0..len`: keys and values `[count,
    /// kv_heads, len, head_dim]`. Strided (rows of `max_len`), in the layout cuBLAS and
    /// candle's CPU matmul take without a copy.
    pub fn read_slots(&self, layer: usize, first: usize, count: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let view = |t: &Tensor| t.narrow(0, first, count)?.narrow(2, 0, len);
        Ok((view(&self.keys[layer])?, view(&self.values[layer])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One scatter per layer puts every token's key and value at its slot and position, and
    /// leaves everything else untouched.
    #[test]
    fn write_puts_each_token_at_its_slot_and_position() {
        let dev = Device::Cpu;
        let (kv, hd, slots, max_len) = (2, 3, 3, 8);
        let mut cache = KvCache::new(1, kv, hd, slots, max_len, DType::F32, &dev).unwrap();
        let (a, b) = ([7u32, 8, 9], [5u32]);
        let batch = [SeqStep { slot: 2, start: 4, tokens: &a, logits: false }, SeqStep { slot: 0, start: 1, tokens: &b, logits: true }];
        // Value of (head h, token t, dim d) = 100h + 10t + d + 1.
        let tokens = 4;
        let data: Vec<f32> = (0..kv).flat_map(|h| (0..tokens).flat_map(move |t| (0..hd).map(move |d| (100 * h + 10 * t + d + 1) as f32))).collect();
        let k = Tensor::from_vec(data, (kv, tokens, hd), &dev).unwrap();
        let v = (&k * 2.0).unwrap();
        let index = cache.write_index(&batch, &dev).unwrap();
        cache.write(0, &index, &k, &v).unwrap();

        for slot in 0..slots {
            let (ks, vs) = cache.slot(0, slot).unwrap();
            let ks = ks.to_vec3::<f32>().unwrap();
            let vs = vs.to_vec3::<f32>().unwrap();
            for h in 0..kv {
                for p in 0..max_len {
                    let token = match (slot, p) {
                        (2, 4..=6) => Some(p - 4),
                        (0, 1) => Some(3),
                        _ => None,
                    };
                    let want: Vec<f32> = match token {
                        Some(t) => (0..hd).map(|d| (100 * h + 10 * t + d + 1) as f32).collect(),
                        None => vec![0.0; hd],
                    };
                    assert_eq!(ks[h][p], want, "keys slot {slot} head {h} pos {p}");
                    assert_eq!(vs[h][p], want.iter().map(|x| x * 2.0).collect::<Vec<_>>(), "values slot {slot} head {h} pos {p}");
                }
            }
        }
        let bad = [SeqStep { slot: 3, start: 0, tokens: &b, logits: true }];
        assert!(cache.write_index(&bad, &dev).is_err());
        let bad = [SeqStep { slot: 0, start: 6, tokens: &a, logits: true }];
        assert!(cache.write_index(&bad, &dev).is_err());
    }
}

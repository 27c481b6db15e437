//! Preallocated KV cache: one fixed slot per concurrent sequence, each `[kv_heads, max_len,
//! head_dim]` per layer. A step writes its new keys and values in place (no per-step
//! concatenation or reallocation); a finished sequence's slot is handed to the next one,
//! which simply overwrites it from position 0.

use candle_core::{DType, Device, Result, Tensor};

#[derive(Debug)]
pub struct KvCache {
    /// `keys[layer][slot]`, `[kv_heads, max_len, head_dim]`.
    keys: Vec<Vec<Tensor>>,
    values: Vec<Vec<Tensor>>,
    max_len: usize,
}

impl KvCache {
    pub fn new(n_layers: usize, n_kv_heads: usize, head_dim: usize, slots: usize, max_len: usize, dtype: DType, device: &Device) -> Result<Self> {
        let alloc = || -> Result<Vec<Vec<Tensor>>> {
            (0..n_layers)
                .map(|_| (0..slots).map(|_| Tensor::zeros((n_kv_heads, max_len, head_dim), dtype, device)).collect())
                .collect()
        };
        Ok(Self { keys: alloc()?, values: alloc()?, max_len })
    }

    /// Bytes one cached token takes across all layers (keys and values).
    pub fn bytes_per_token(n_layers: usize, n_kv_heads: usize, head_dim: usize, dtype: DType) -> usize {
        2 * n_layers * n_kv_heads * head_dim * dtype.size_in_bytes()
    }

    pub fn slots(&self) -> usize {
        self.keys.first().map_or(0, |l| l.len())
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Stores `k`, `v` (`[kv_heads, n, head_dim]`, contiguous) at positions `start..start + n`.
    pub fn write(&mut self, layer: usize, slot: usize, start: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = k.dim(1)?;
        if start + n > self.max_len {
            candle_core::bail!("KV cache slot overflow: {} > {}", start + n, self.max_len);
        }
        self.keys[layer][slot].slice_set(k, 1, start)?;
        self.values[layer][slot].slice_set(v, 1, start)
    }

    /// A slot's whole keys and values tensors, `[kv_heads, max_len, head_dim]`, contiguous.
    pub fn slot(&self, layer: usize, slot: usize) -> (&Tensor, &Tensor) {
        (&self.keys[layer][slot], &self.values[layer][slot])
    }

    /// Views of the first `len` cached positions of a slot: keys and values `[kv_heads, len, head_dim]`.
    pub fn read(&self, layer: usize, slot: usize, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.keys[layer][slot].narrow(1, 0, len)?, self.values[layer][slot].narrow(1, 0, len)?))
    }
}

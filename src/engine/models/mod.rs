//! Model families. Each file reads one family's weights (GGUF or Hugging Face safetensors)
//! into the shared batched [`decoder::Decoder`].

pub mod decoder;
pub mod llama;
pub mod qwen3;

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use decoder::{Decoder, SeqStep};

/// Loads a GGUF file, picking the family from `general.architecture`.
pub fn load_gguf(path: &Path, device: &Device) -> Result<Decoder> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| anyhow::anyhow!("`{}` is not a readable GGUF file: {e}", path.display()))?;
    let mut gguf = Gguf { content, file, device: device.clone() };
    let arch = gguf.string("general.architecture")?;
    match arch.as_str() {
        "llama" => llama::from_gguf(&mut gguf),
        "qwen3" => qwen3::from_gguf(&mut gguf),
        other => bail!("`{}`: architecture `{other}` is not supported (supported: `llama`, `qwen3`)", path.display()),
    }
    .with_context(|| format!("loading `{}`", path.display()))
}

/// Loads a Hugging Face checkpoint: `config.json` picks the family from `model_type`.
pub fn load_safetensors(config_path: &Path, weights: &[std::path::PathBuf], device: &Device) -> Result<Decoder> {
    let text = std::fs::read_to_string(config_path).with_context(|| format!("reading `{}`", config_path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", config_path.display()))?;
    let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    let dtype = activation_dtype(device);
    // Safety: the files are memory-mapped read-only; like every mmap user we rely on nobody
    // truncating them while the run lasts.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, dtype, device) }.context("memory-mapping the safetensors weights")?;
    match model_type {
        "llama" => llama::from_safetensors(&text, vb, device),
        "qwen3" => qwen3::from_safetensors(&text, vb, device),
        other => bail!(
            "`{}`: model_type `{other}` is not supported (supported: `llama`, `qwen3`)",
            config_path.display()
        ),
    }
    .with_context(|| format!("loading the model described by `{}`", config_path.display()))
}

/// Dense weights and activations: f32 on CPU (its matmuls are fastest and exact there),
/// bf16 on CUDA, f16 on Metal.
pub fn activation_dtype(device: &Device) -> DType {
    match device {
        Device::Cpu => DType::F32,
        Device::Cuda(_) => DType::BF16,
        Device::Metal(_) => DType::F16,
    }
}

/// A GGUF file being read: metadata lookups with errors that name the key.
pub struct Gguf {
    pub content: gguf_file::Content,
    pub file: std::fs::File,
    pub device: Device,
}

impl Gguf {
    fn value(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content.metadata.get(key).with_context(|| format!("GGUF metadata key `{key}` is missing"))
    }
    pub fn string(&self, key: &str) -> Result<String> {
        Ok(self.value(key)?.to_string().map_err(|e| anyhow::anyhow!("GGUF metadata `{key}`: {e}"))?.clone())
    }
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.value(key)?;
        let n = v.to_u32().map(u64::from).or_else(|_| v.to_u64()).map_err(|e| anyhow::anyhow!("GGUF metadata `{key}`: {e}"))?;
        Ok(n as usize)
    }
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.value(key)?.to_f32().map_err(|e| anyhow::anyhow!("GGUF metadata `{key}`: {e}"))
    }
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    pub fn qtensor(&mut self, name: &str) -> Result<candle_core::quantized::QTensor> {
        self.content.tensor(&mut self.file, name, &self.device).map_err(|e| anyhow::anyhow!("GGUF tensor `{name}`: {e}"))
    }
    pub fn linear(&mut self, name: &str) -> Result<decoder::Linear> {
        Ok(decoder::Linear(QMatMul::from_qtensor(self.qtensor(name)?)?))
    }
    pub fn dense(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.qtensor(name)?.dequantize(&self.device)?)
    }
    pub fn norm(&mut self, name: &str, eps: f64) -> Result<decoder::RmsNorm> {
        Ok(decoder::RmsNorm { weight: self.dense(name)?, eps })
    }
}

/// Safetensors weight helpers shared by the families' loaders.
pub(crate) fn dense_linear(vb: &VarBuilder, out_dim: usize, in_dim: usize) -> Result<decoder::Linear> {
    Ok(decoder::Linear(QMatMul::Tensor(vb.get((out_dim, in_dim), "weight")?)))
}

pub(crate) fn dense_norm(vb: &VarBuilder, dim: usize, eps: f64) -> Result<decoder::RmsNorm> {
    Ok(decoder::RmsNorm { weight: vb.get(dim, "weight")?, eps })
}

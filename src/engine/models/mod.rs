//! Model families. Each file reads one family's weights (GGUF or Hugging Face safetensors)
//! into the shared batched [`decoder::Decoder`].

pub mod decoder;
pub mod llama;
pub mod qwen3;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::SynthError;

pub use decoder::{AttentionPath, Decoder, SeqStep};
use decoder::{Attention, Dims, Layer, Mlp, Rope};

/// A model of a family synth has no decoder for: the user's input, not a failure.
fn unsupported(message: String) -> anyhow::Error {
    SynthError::invalid(message).hint("synth runs Llama- and Qwen3-family models; see `synth models list`").into()
}

/// Loads a GGUF file, picking the family from `general.architecture`.
pub fn load_gguf(path: &Path, device: &Device) -> Result<Decoder> {
    let content = crate::model::read_gguf(path)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut gguf = Gguf { content, file, device: device.clone() };
    let arch = gguf.string("general.architecture")?;
    match arch.as_str() {
        "llama" => llama::from_gguf(&mut gguf),
        "qwen3" => qwen3::from_gguf(&mut gguf),
        other => Err(unsupported(format!("`{}`: architecture `{other}` is not supported (supported: `llama`, `qwen3`)", path.display()))),
    }
    .with_context(|| format!("loading `{}`", path.display()))
}

/// Loads a Hugging Face checkpoint: `config.json` picks the family from `model_type`;
/// `weights` are its safetensors files (see [`safetensors_files`]).
pub fn load_safetensors(config_path: &Path, weights: &[PathBuf], device: &Device) -> Result<Decoder> {
    let text = std::fs::read_to_string(config_path).with_context(|| format!("reading `{}`", config_path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", config_path.display()))?;
    let Some(model_type) = config.get("model_type").and_then(|v| v.as_str()) else {
        return Err(unsupported(format!("`{}` has no `model_type` string, so the model family is unknown", config_path.display())));
    };
    if !matches!(model_type, "llama" | "qwen3") {
        return Err(unsupported(format!("`{}`: model_type `{model_type}` is not supported (supported: `llama`, `qwen3`)", config_path.display())));
    }
    if weights.is_empty() {
        bail!("no safetensors weight files given for `{}`", config_path.display());
    }
    let dtype = activation_dtype(device);
    // Safety: the files are memory-mapped read-only; like every mmap user we rely on nobody
    // truncating them while the run lasts.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, dtype, device) }.context("memory-mapping the safetensors weights")?;
    match model_type {
        "llama" => llama::from_safetensors(&text, vb, device),
        _ => qwen3::from_safetensors(&text, vb, device),
    }
    .with_context(|| format!("loading the model described by `{}`", config_path.display()))
}

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

/// The weight files of a Hugging Face checkpoint, given its directory or its index file: a
/// directory's `model.safetensors` if it has one (transformers looks there first), else the
/// distinct shards named by `model.safetensors.index.json`'s `weight_map`, sorted.
///
/// Shard names are joined to the index's directory as given, never through resolved links:
/// in the Hugging Face cache every file is a link into `blobs/`, where names are hashes.
pub fn safetensors_files(path: &Path) -> Result<Vec<PathBuf>> {
    let index = if path.is_dir() {
        let single = path.join(SINGLE_FILE);
        if single.is_file() {
            return Ok(vec![single]);
        }
        let index = path.join(INDEX_FILE);
        if !index.is_file() {
            return Err(SynthError::not_found(format!("`{}` holds neither `{SINGLE_FILE}` nor `{INDEX_FILE}`", path.display()))
                .hint("download the model's weights into that directory, e.g. with `huggingface-cli download`")
                .into());
        }
        index
    } else {
        path.to_path_buf()
    };
    let dir = index.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(&index).with_context(|| format!("reading `{}`", index.display()))?;
    let names = shard_names(&text).map_err(|msg| {
        SynthError::invalid(format!("`{}`: {msg}", index.display()))
            .hint("the index should be Hugging Face's `{\"weight_map\": {tensor: shard file}}`; download it again")
    })?;
    let (files, missing): (Vec<PathBuf>, Vec<PathBuf>) = names.iter().map(|n| dir.join(n)).partition(|p| p.is_file());
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|p| format!("`{}`", p.display())).collect();
        return Err(SynthError::not_found(format!(
            "{} of the {} shards named by `{}` are missing: {}",
            missing.len(),
            names.len(),
            index.display(),
            list.join(", ")
        ))
        .hint("download the missing shards again, e.g. with `huggingface-cli download`")
        .into());
    }
    Ok(files)
}

/// The distinct shard file names of an index's `weight_map`, or what is wrong with it.
fn shard_names(index_json: &str) -> Result<BTreeSet<String>, String> {
    let index: serde_json::Value = serde_json::from_str(index_json).map_err(|e| format!("not valid JSON: {e}"))?;
    let map = index.get("weight_map").and_then(|m| m.as_object()).ok_or("no `weight_map` object")?;
    if map.is_empty() {
        return Err("`weight_map` is empty".into());
    }
    let mut names = BTreeSet::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| format!("`weight_map` entry `{tensor}` is not a file name"))?;
        // A shard lives inside the checkpoint directory: no absolute paths, no `..`.
        let inside = !file.is_empty() && Path::new(file).components().all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(format!("`weight_map` entry `{tensor}` names `{file}`, which is not a file inside the model directory"));
        }
        names.insert(file.to_string());
    }
    Ok(names)
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
        Ok(decoder::Linear::from_qtensor(self.qtensor(name)?)?)
    }
    pub fn dense(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.qtensor(name)?.dequantize(&self.device)?)
    }
    pub fn norm(&mut self, name: &str, eps: f64) -> Result<decoder::RmsNorm> {
        Ok(decoder::RmsNorm { weight: self.dense(name)?, eps })
    }
}

/// Parses a family's `config.json` fields, naming the offending field in the error.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(config_json: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(config_json);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("field `{path}`: {inner}")
        }
    })
}

/// Safetensors weight helpers shared by the families' loaders.
pub(crate) fn dense_linear(vb: &VarBuilder, out_dim: usize, in_dim: usize) -> Result<decoder::Linear> {
    Ok(decoder::Linear::dense(vb.get((out_dim, in_dim), "weight")?))
}

pub(crate) fn dense_norm(vb: &VarBuilder, dim: usize, eps: f64) -> Result<decoder::RmsNorm> {
    Ok(decoder::RmsNorm { weight: vb.get(dim, "weight")?, eps })
}

/// Reads a Hugging Face checkpoint's decoder body (the blocks, final norm and output head)
/// under the names both families use. `qk_norm`: Qwen3's per-head query/key norms.
#[allow(clippy::too_many_arguments)]
pub(crate) fn hf_decoder(vb: &VarBuilder, dims: Dims, intermediate: usize, eps: f64, qk_norm: bool, tied: bool, rope: Rope, device: &Device) -> Result<Decoder> {
    let (h, hd) = (dims.hidden, dims.head_dim);
    let (qd, kvd) = (dims.n_heads * hd, dims.n_kv_heads * hd);
    let m = vb.pp("model");
    let embed = m.pp("embed_tokens").get((dims.vocab, h), "weight")?;
    let mut layers = Vec::with_capacity(dims.n_layers);
    for i in 0..dims.n_layers {
        let l = m.pp(format!("layers.{i}"));
        let a = l.pp("self_attn");
        let p = l.pp("mlp");
        layers.push(Layer {
            attn_norm: dense_norm(&l.pp("input_layernorm"), h, eps)?,
            attn: Attention {
                q: dense_linear(&a.pp("q_proj"), qd, h)?,
                k: dense_linear(&a.pp("k_proj"), kvd, h)?,
                v: dense_linear(&a.pp("v_proj"), kvd, h)?,
                o: dense_linear(&a.pp("o_proj"), h, qd)?,
                q_norm: if qk_norm { Some(dense_norm(&a.pp("q_norm"), hd, eps)?) } else { None },
                k_norm: if qk_norm { Some(dense_norm(&a.pp("k_norm"), hd, eps)?) } else { None },
            },
            mlp_norm: dense_norm(&l.pp("post_attention_layernorm"), h, eps)?,
            mlp: Mlp {
                gate: dense_linear(&p.pp("gate_proj"), intermediate, h)?,
                up: dense_linear(&p.pp("up_proj"), intermediate, h)?,
                down: dense_linear(&p.pp("down_proj"), h, intermediate)?,
            },
        });
    }
    let lm_head = if tied { decoder::Linear::dense(embed.clone()) } else { dense_linear(&vb.pp("lm_head"), dims.vocab, h)? };
    let dtype = activation_dtype(device);
    let attention_path = decoder::AttentionPath::for_device(device);
    Ok(Decoder { norm: dense_norm(&m.pp("norm"), h, eps)?, embed, layers, lm_head, rope, dims, dtype, device: device.clone(), attention_path })
}

/// Reads a GGUF file's decoder body under llama.cpp's tensor names; the output head is the
/// embedding table when the file has no `output.weight`. Activations are f32: quantized
/// matmuls take f32 on every device.
pub(crate) fn gguf_decoder(g: &mut Gguf, dims: Dims, eps: f64, qk_norm: bool, embed: candle_core::quantized::QTensor, rope: Rope) -> Result<Decoder> {
    let mut layers = Vec::with_capacity(dims.n_layers);
    for i in 0..dims.n_layers {
        let p = format!("blk.{i}");
        layers.push(Layer {
            attn_norm: g.norm(&format!("{p}.attn_norm.weight"), eps)?,
            attn: Attention {
                q: g.linear(&format!("{p}.attn_q.weight"))?,
                k: g.linear(&format!("{p}.attn_k.weight"))?,
                v: g.linear(&format!("{p}.attn_v.weight"))?,
                o: g.linear(&format!("{p}.attn_output.weight"))?,
                q_norm: if qk_norm { Some(g.norm(&format!("{p}.attn_q_norm.weight"), eps)?) } else { None },
                k_norm: if qk_norm { Some(g.norm(&format!("{p}.attn_k_norm.weight"), eps)?) } else { None },
            },
            mlp_norm: g.norm(&format!("{p}.ffn_norm.weight"), eps)?,
            mlp: Mlp {
                gate: g.linear(&format!("{p}.ffn_gate.weight"))?,
                up: g.linear(&format!("{p}.ffn_up.weight"))?,
                down: g.linear(&format!("{p}.ffn_down.weight"))?,
            },
        });
    }
    let device = g.device.clone();
    let dense_embed = embed.dequantize(&device)?;
    let lm_head = if g.has_tensor("output.weight") { g.linear("output.weight")? } else { decoder::Linear::from_qtensor(embed)? };
    let attention_path = decoder::AttentionPath::for_device(&device);
    Ok(Decoder { norm: g.norm("output_norm.weight", eps)?, embed: dense_embed, layers, lm_head, rope, dims, dtype: DType::F32, device, attention_path })
}

/// A model of the family and shapes a Hugging Face `config.json` describes, with random
/// weights made on `device` (normal with std 0.02; norm weights 1) in the dtype safetensors
/// weights would get there. For benchmarks at real shapes where no weights can be downloaded
/// (`benches/gpu_throughput.rs`): the work per token depends on the shapes alone.
pub fn random_weights(config_json: &str, device: &Device) -> Result<Decoder> {
    struct Random;
    impl candle_nn::var_builder::SimpleBackend for Random {
        fn get(&self, shape: candle_core::Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
            if name.ends_with("norm.weight") {
                Tensor::ones(shape, dtype, dev)
            } else {
                Tensor::randn(0f32, 0.02, shape, dev)?.to_dtype(dtype)
            }
        }
        fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
            candle_core::bail!("random weights have no shape for `{name}`")
        }
        fn contains_tensor(&self, _: &str) -> bool {
            true
        }
    }
    let config: serde_json::Value = serde_json::from_str(config_json).context("the model config is not valid JSON")?;
    let vb = VarBuilder::from_backend(Box::new(Random), activation_dtype(device), device.clone());
    match config.get("model_type").and_then(|v| v.as_str()) {
        Some("llama") => llama::from_safetensors(config_json, vb, device),
        Some("qwen3") => qwen3::from_safetensors(config_json, vb, device),
        other => Err(unsupported(format!("model_type {other:?} is not supported (supported: `llama`, `qwen3`)"))),
    }
}

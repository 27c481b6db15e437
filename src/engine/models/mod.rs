//! Model families. Each file reads one family's weights (GGUF or Hugging Face safetensors)
//! into the shared batched [`decoder::Decoder`].

pub mod decoder;
pub mod llama;
pub mod qwen3;
pub mod weights;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::SynthError;

pub use decoder::{AttentionPath, Decoder, SeqStep};
pub use weights::activation_dtype;
use weights::Gguf;

/// A model of a family synth has no decoder for: the user's input, not a failure.
fn unsupported(message: String) -> anyhow::Error {
    SynthError::invalid(message).hint("synth runs Llama- and Qwen3-family models; see `synth models list`").into()
}

/// Loads a GGUF file whose metadata `content` has been read, picking the family from
/// `general.architecture`.
pub fn load_gguf(content: gguf_file::Content, path: &Path, device: &Device) -> Result<Decoder> {
    let file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut gguf = Gguf::new(content, file, device);
    let arch = gguf.string("general.architecture")?;
    match arch.as_str() {
        "llama" => llama::from_gguf(&mut gguf),
        "qwen3" => qwen3::from_gguf(&mut gguf),
        other => Err(unsupported(format!(
            "`{}`: architecture `{other}` is not supported (supported: `llama`, `qwen3`)",
            path.display()
        ))),
    }
    .with_context(|| format!("loading `{}`", path.display()))
}

/// Loads a Hugging Face checkpoint: `config.json` picks the family from `model_type`;
/// `weights` are its safetensors files (see [`safetensors_files`]).
pub fn load_safetensors(config_path: &Path, weights: &[PathBuf], device: &Device) -> Result<Decoder> {
    let text = std::fs::read_to_string(config_path).with_context(|| format!("reading `{}`", config_path.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", config_path.display()))?;
    let Some(model_type) = config.get("model_type").and_then(|v| v.as_str()) else {
        return Err(unsupported(format!(
            "`{}` has no `model_type` string, so the model family is unknown",
            config_path.display()
        )));
    };
    if !matches!(model_type, "llama" | "qwen3") {
        return Err(unsupported(format!(
            "`{}`: model_type `{model_type}` is not supported (supported: `llama`, `qwen3`)",
            config_path.display()
        )));
    }
    if weights.is_empty() {
        bail!("no safetensors weight files given for `{}`", config_path.display());
    }
    let dtype = weights::weight_dtype(weights, device)?;
    // Safety: the files are memory-mapped read-only; like every mmap user we rely on nobody
    // truncating them while the run lasts.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, dtype, device) }
        .context("memory-mapping the safetensors weights")?;
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
            return Err(SynthError::not_found(format!(
                "`{}` holds neither `{SINGLE_FILE}` nor `{INDEX_FILE}`",
                path.display()
            ))
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
            return Err(format!(
                "`weight_map` entry `{tensor}` names `{file}`, which is not a file inside the model directory"
            ));
        }
        names.insert(file.to_string());
    }
    Ok(names)
}

/// A model of the family and shapes a Hugging Face `config.json` describes, with random
/// weights made on `device` (normal with std 0.02; norm weights 1) in the dtype safetensors
/// weights would get there. For benchmarks at real shapes where no weights can be downloaded
/// (`benches/gpu_throughput.rs`): the work per token depends on the shapes alone.
pub fn random_weights(config_json: &str, device: &Device) -> Result<Decoder> {
    struct Random;
    impl candle_nn::var_builder::SimpleBackend for Random {
        fn get(
            &self,
            shape: candle_core::Shape,
            name: &str,
            _: candle_nn::Init,
            dtype: DType,
            dev: &Device,
        ) -> candle_core::Result<Tensor> {
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

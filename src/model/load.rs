//! Loading a model for generation: its files, its text side (tokenizer, template, stop ids)
//! and its weights as the engine's batched decoder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;

use super::{read_gguf, resolve, ModelText, Registry, ResolvedModel, WeightFormat};
use crate::engine::models::{self, Decoder};

pub struct LoadedModel {
    pub resolved: ResolvedModel,
    pub text: ModelText,
    pub decoder: Decoder,
    pub load_seconds: f64,
}

impl LoadedModel {
    /// Finds `name` in the registry, resolves its files locally (never the network) and loads it.
    pub fn load(registry: &Registry, name: &str, model_path: Option<&Path>, synth_home: &Path, device: &Device) -> Result<LoadedModel> {
        let spec = registry.get(name)?;
        let resolved = resolve(spec, model_path, synth_home)?;
        let started = Instant::now();
        let (text, decoder) = match spec.format {
            WeightFormat::Gguf => {
                let path = resolved.gguf().context("the resolved model has no `.gguf` file")?;
                let text = ModelText::from_gguf(spec, &read_gguf(path)?)?;
                (text, models::load_gguf(path, device)?)
            }
            WeightFormat::Safetensors => {
                let text = ModelText::load(&resolved)?;
                let config = resolved.file("config.json").context("the resolved model has no `config.json`")?;
                let weights: Vec<PathBuf> =
                    resolved.files.iter().filter(|(n, _)| n.ends_with(".safetensors")).map(|(_, p)| p.clone()).collect();
                (text, models::load_safetensors(config, &weights, device)?)
            }
        };
        if text.tokenizer.vocab_size() > decoder.dims.vocab {
            return Err(crate::error::SynthError::invalid(format!(
                "model `{}`: the tokenizer has {} tokens but the weights only {}: they do not belong together",
                spec.name,
                text.tokenizer.vocab_size(),
                decoder.dims.vocab
            ))
            .into());
        }
        Ok(LoadedModel { resolved, text, decoder, load_seconds: started.elapsed().as_secs_f64() })
    }
}

//! Loading a model for generation: its files, its text side (tokenizer, template, stop ids)
//! and its weights as the engine's batched decoder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;

use super::choose::{choose_spec, spec_from_gguf, warn_if_other_model};
use super::gguf_header::read_gguf;
use super::memory::check_fits;
use super::registry::{ModelSpec, Registry, WeightFormat};
use super::resolve::{resolve, ModelSource, ResolvedModel};
use super::text::ModelText;
use crate::engine::models::{self, Decoder};
use crate::store::artifacts::{file_sha256, ModelFileRecord, ModelRecord};

pub struct LoadedModel {
    pub resolved: ResolvedModel,
    pub text: ModelText,
    pub decoder: Decoder,
}

impl LoadedModel {
    /// Finds `name` in the registry (`NAME:QUANT` for a GGUF variant), resolves its files
    /// locally (never the network) and loads them; see `choose.rs` for which files.
    pub fn load(
        registry: &Registry,
        name: &str,
        model_path: Option<&Path>,
        synth_home: &Path,
        device: &Device,
    ) -> Result<LoadedModel> {
        let spec = choose_spec(registry, name, model_path, synth_home, device)?;
        let resolved = resolve(&spec, model_path, synth_home)?;
        Self::load_resolved(resolved, device)
    }

    /// Loads a `.gguf` file given without a model name: its metadata names the model.
    pub fn load_file(path: &Path, device: &Device) -> Result<LoadedModel> {
        let spec = spec_from_gguf(path, &read_gguf(path)?)?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let files = spec.files.iter().map(|f| (f.clone(), path.clone())).collect();
        Self::load_resolved(ResolvedModel { spec, files, source: ModelSource::Override(path) }, device)
    }

    fn load_resolved(resolved: ResolvedModel, device: &Device) -> Result<LoadedModel> {
        let spec: &ModelSpec = &resolved.spec;
        let weights: Vec<PathBuf> = resolved
            .files
            .iter()
            .filter(|(n, _)| n.ends_with(".safetensors") || n.ends_with(".gguf"))
            .map(|(_, p)| p.clone())
            .collect();
        check_fits(spec, &weights, device)?;
        let (text, decoder) = match spec.format {
            WeightFormat::Gguf => {
                let path = resolved.gguf().context("the resolved model has no `.gguf` file")?;
                // The metadata is read once, for the tokenizer and template and for the weights.
                let content = read_gguf(path)?;
                if matches!(resolved.source, ModelSource::Override(_)) {
                    warn_if_other_model(spec, &content, path);
                }
                let text = ModelText::from_gguf(spec, &content)?;
                (text, models::load_gguf(content, path, device)?)
            }
            WeightFormat::Safetensors => {
                let text = ModelText::load(&resolved)?;
                let config = resolved.file("config.json").context("the resolved model has no `config.json`")?;
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
        Ok(LoadedModel { resolved, text, decoder })
    }

    /// The model as manifests record it: names and every file with its sha256.
    pub fn record(&self) -> Result<ModelRecord> {
        let spec = &self.resolved.spec;
        let mut files = Vec::new();
        for (name, path) in &self.resolved.files {
            let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            files.push(ModelFileRecord {
                name: name.clone(),
                path: path.display().to_string(),
                bytes,
                sha256: file_sha256(path)?,
            });
        }
        Ok(ModelRecord {
            name: spec.name.clone(),
            hf_repo: spec.hf_repo.clone(),
            revision: spec.revision.clone(),
            source: self.resolved.source.path().display().to_string(),
            files,
        })
    }
}

/// Loads just the decoder of a GGUF file (tests and benchmarks).
pub fn load_gguf_decoder(path: &Path, device: &Device) -> Result<Decoder> {
    models::load_gguf(read_gguf(path)?, path, device)
}

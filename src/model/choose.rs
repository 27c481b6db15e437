//! Which weights to load for a model name: the registry entry's own files, one of its GGUF
//! variants, or a `.gguf` file passed with `--model-path`.
//!
//! - `NAME:QUANT` (`Qwen3-8B:Q4_K_M`) names a GGUF variant of the entry.
//! - A `--model-path` file is read as a GGUF whatever the entry's format: the file carries its
//!   own architecture, tokenizer and chat template (a warning says when it looks like another
//!   model).
//! - Otherwise on the CPU a safetensors entry loads a GGUF variant whose file is present, in
//!   [`GGUF_PREFERENCE`] order: safetensors weights there cost 2–4 bytes per parameter.

use std::path::Path;

use anyhow::Result;
use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::registry::{Architecture, ChatTemplateSource, ModelSpec, Origin, Registry, WeightFormat, GGUF_PREFERENCE};
use super::resolve::{presence, Presence};
use crate::error::SynthError;

/// The entry, as the spec to resolve and load (see the module doc).
pub fn choose_spec(
    registry: &Registry,
    name: &str,
    model_path: Option<&Path>,
    synth_home: &Path,
    device: &Device,
) -> Result<ModelSpec> {
    let (spec, quant) = split_name(registry, name)?;
    if let Some(path) = model_path.filter(|p| p.is_file()) {
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(spec.gguf_file(&file));
    }
    if let Some(quant) = quant {
        return spec.variant(quant).ok_or_else(|| unknown_quant(spec, quant));
    }
    if model_path.is_none() && spec.format == WeightFormat::Safetensors && matches!(device, Device::Cpu) {
        let present =
            |quant: &str| spec.variant(quant).filter(|v| matches!(presence(v, synth_home), Presence::Present(_)));
        let others = spec.gguf.iter().map(|v| v.quant.as_str()).filter(|q| !GGUF_PREFERENCE.contains(q));
        if let Some(variant) = GGUF_PREFERENCE.into_iter().chain(others).find_map(present) {
            return Ok(variant);
        }
    }
    Ok(spec.clone())
}

/// The entry `name` names, or its GGUF variant for `NAME:QUANT`.
pub fn named_spec(registry: &Registry, name: &str) -> Result<ModelSpec> {
    match split_name(registry, name)? {
        (spec, Some(quant)) => spec.variant(quant).ok_or_else(|| unknown_quant(spec, quant)),
        (spec, None) => Ok(spec.clone()),
    }
}

fn split_name<'a, 'n>(registry: &'a Registry, name: &'n str) -> Result<(&'a ModelSpec, Option<&'n str>)> {
    Ok(match (registry.find(name), name.rsplit_once(':')) {
        (Some(spec), _) => (spec, None),
        (None, Some((base, quant))) if registry.find(base).is_some() => (registry.get(base)?, Some(quant)),
        (None, _) => (registry.get(name)?, None),
    })
}

fn unknown_quant(spec: &ModelSpec, quant: &str) -> anyhow::Error {
    let known: Vec<String> = spec.gguf.iter().map(|v| format!("`{}:{}`", spec.name, v.quant)).collect();
    let err = SynthError::invalid(format!("model `{}` has no GGUF variant `{quant}`", spec.name));
    if known.is_empty() {
        err.hint(format!("`{}` has no GGUF variants in the registry; pass `--model-path FILE.gguf`", spec.name))
    } else {
        err.hint(format!("known: {}; or pass `--model-path FILE.gguf`", known.join(", ")))
    }
    .into()
}

/// A registry entry for a GGUF file loaded without a model name: everything from its metadata.
pub fn spec_from_gguf(path: &Path, content: &gguf_file::Content) -> Result<ModelSpec> {
    let text = |key: &str| content.metadata.get(key).and_then(|v| v.to_string().ok()).cloned();
    let arch = text("general.architecture").unwrap_or_default();
    let architecture = match arch.as_str() {
        "llama" => Architecture::Llama,
        "qwen3" => Architecture::Qwen3,
        other => {
            return Err(SynthError::invalid(format!(
                "`{}`: architecture `{other}` is not supported (supported: `llama`, `qwen3`)",
                path.display()
            ))
            .into())
        }
    };
    let context_length = content
        .metadata
        .get(&format!("{arch}.context_length"))
        .and_then(|v| v.to_u32().ok())
        .map_or(4096, |n| n as usize);
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let name = text("general.name").filter(|n| !n.trim().is_empty()).unwrap_or_else(|| file.clone());
    Ok(ModelSpec {
        name,
        aliases: Vec::new(),
        hf_repo: "local/gguf".into(),
        revision: "main".into(),
        architecture,
        format: WeightFormat::Gguf,
        files: vec![file],
        local_path: None,
        chat_template: ChatTemplateSource::Gguf,
        // Besides the file's own end-of-text id: the end-of-turn tokens of the chat formats
        // synth knows, where the vocabulary has them.
        stop_tokens: ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>"]
            .map(String::from)
            .to_vec(),
        context_length,
        notes: String::new(),
        downloadable: false,
        gguf: Vec::new(),
        origin: Origin::User(path.to_path_buf()),
    })
}

/// A warning on stderr when a `--model-path` GGUF's `general.architecture` or `general.name`
/// does not look like `spec`'s model; the file is loaded as it says either way.
pub fn warn_if_other_model(spec: &ModelSpec, content: &gguf_file::Content, path: &Path) {
    if let Some(message) = mismatch(spec, content, path) {
        eprintln!("warning: {message}");
    }
}

fn mismatch(spec: &ModelSpec, content: &gguf_file::Content, path: &Path) -> Option<String> {
    let text = |key: &str| content.metadata.get(key).and_then(|v| v.to_string().ok()).cloned();
    let want = match spec.architecture {
        Architecture::Llama => "llama",
        Architecture::Qwen3 => "qwen3",
    };
    let arch = text("general.architecture").unwrap_or_default();
    if arch != want {
        return Some(format!(
            "`{}` is a `{arch}` model but `{}` is a `{want}` one; loading the file as it says",
            path.display(),
            spec.name
        ));
    }
    let plain = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    let gguf_name = plain(&text("general.name")?);
    let alike = std::iter::once(&spec.name)
        .chain(&spec.aliases)
        .map(|n| plain(n.rsplit('/').next().unwrap_or(n)))
        .any(|n| !n.is_empty() && (gguf_name.contains(&n) || n.contains(&gguf_name)));
    (!alike).then(|| {
        format!(
            "`{}` calls itself `{}`, which does not look like `{}`; loading it anyway",
            path.display(),
            text("general.name").unwrap_or_default(),
            spec.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::render;

    fn registry() -> Registry {
        Registry::load(None).unwrap()
    }

    #[test]
    fn a_quant_suffix_names_a_gguf_variant() {
        let home = tempfile::tempdir().unwrap();
        let spec = choose_spec(&registry(), "qwen3-8b:q6_k", None, home.path(), &Device::Cpu).unwrap();
        assert_eq!(spec.name, "Qwen3-8B");
        assert_eq!(spec.format, WeightFormat::Gguf);
        assert_eq!(spec.files, ["Qwen3-8B-Q6_K.gguf"]);
        assert_eq!(spec.hf_repo, "Qwen/Qwen3-8B-GGUF");
        assert_eq!(spec.chat_template, ChatTemplateSource::Gguf);
        let err = choose_spec(&registry(), "Qwen3-8B:Q3_K", None, home.path(), &Device::Cpu).unwrap_err();
        let text = render(&err);
        assert!(text.contains("no GGUF variant `Q3_K`") && text.contains("`Qwen3-8B:Q4_K_M`"), "{text}");
        // An unknown base name is the unknown-model error.
        assert!(render(&choose_spec(&registry(), "nope:Q4_K_M", None, home.path(), &Device::Cpu).unwrap_err())
            .contains("unknown model `nope:Q4_K_M`"));
    }

    #[test]
    fn the_cpu_loads_a_present_gguf_variant_by_default_in_preference_order() {
        let home = tempfile::tempdir().unwrap();
        let models = home.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let pick = || choose_spec(&registry(), "Llama-3.1-8B-Instruct", None, home.path(), &Device::Cpu).unwrap();
        // Nothing present: the safetensors entry, whose missing-files error names both downloads.
        assert_eq!(pick().format, WeightFormat::Safetensors);
        std::fs::write(models.join("Meta-Llama-3.1-8B-Instruct-Q8_0.gguf"), b"x").unwrap();
        assert_eq!(pick().files, ["Meta-Llama-3.1-8B-Instruct-Q8_0.gguf"]);
        std::fs::write(models.join("Meta-Llama-3.1-8B-Instruct-Q5_K_M.gguf"), b"x").unwrap();
        assert_eq!(pick().files, ["Meta-Llama-3.1-8B-Instruct-Q5_K_M.gguf"]);
        // A directory `--model-path` means the entry's own files.
        let dir = choose_spec(&registry(), "Llama-3.1-8B-Instruct", Some(home.path()), home.path(), &Device::Cpu);
        assert_eq!(dir.unwrap().format, WeightFormat::Safetensors);
    }

    #[test]
    fn a_gguf_model_path_file_is_loaded_as_gguf_for_a_safetensors_entry() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("Llama-3.1-8B-Q4_K_M.gguf");
        std::fs::write(&file, b"x").unwrap();
        let spec = choose_spec(&registry(), "Llama-3.1-8B-Instruct", Some(&file), home.path(), &Device::Cpu).unwrap();
        assert_eq!(
            (spec.format, spec.files.as_slice()),
            (WeightFormat::Gguf, ["Llama-3.1-8B-Q4_K_M.gguf".to_string()].as_slice())
        );
        let resolved = crate::model::resolve::resolve_in(&spec, Some(&file), home.path(), None).unwrap();
        assert_eq!(resolved.gguf(), Some(file.as_path()));
    }

    #[test]
    fn the_missing_model_hint_names_the_safetensors_and_the_gguf_downloads() {
        let home = tempfile::tempdir().unwrap();
        let spec = registry().get("Qwen3-8B").unwrap().clone();
        let err =
            crate::model::resolve::resolve_in(&spec, None, home.path(), Some(&home.path().join("hub"))).unwrap_err();
        let text = render(&err);
        assert!(text.contains("huggingface-cli download Qwen/Qwen3-8B`"), "{text}");
        assert!(text.contains("huggingface-cli download Qwen/Qwen3-8B-GGUF Qwen3-8B-Q4_K_M.gguf"), "{text}");
    }
}

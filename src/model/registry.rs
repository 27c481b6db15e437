//! The models synth knows by name: one small JSON file per model, built into the binary from
//! `models/*.json`, plus the user's own in `$SYNTH_HOME/models/*.json`. A user file whose name
//! matches a built-in one replaces it, so a user can pin a revision or point at local weights.
//!
//! ```json
//! {
//!   "name": "Qwen3-8B",                       // matched ignoring case, like every alias
//!   "aliases": ["Qwen/Qwen3-8B"],             // optional
//!   "hfRepo": "Qwen/Qwen3-8B",
//!   "revision": "main",                       // optional; a branch or a 40-hex commit
//!   "architecture": "qwen3",                  // "llama" | "qwen3"
//!   "format": "safetensors",                  // "gguf" (exactly one .gguf in files) | "safetensors"
//!   "files": ["config.json", "tokenizer.json", "...", "model-00001-of-00005.safetensors"],
//!   "localPath": "qwen3-8b",                  // optional; relative to $SYNTH_HOME/models/ (no `..`), or absolute
//!   "chatTemplate": "tokenizer_config",       // "gguf" | "tokenizer_config"
//!   "stopTokens": ["<|im_end|>", "<|endoftext|>"],
//!   "contextLength": 40960,
//!   "notes": "how to get it",                 // optional; shown when the files are missing
//!   "downloadable": true,                     // optional; false when `files` are not on the Hub
//!   "gguf": {                                 // optional; quantized GGUF files of the same model
//!     "hfRepo": "Qwen/Qwen3-8B-GGUF",
//!     "files": {"Q4_K_M": "Qwen3-8B-Q4_K_M.gguf", "Q8_0": "Qwen3-8B-Q8_0.gguf"},
//!     "sha256": {"Q4_K_M": "64 hex digits"}   // optional, per quant type
//!   }
//! }
//! ```
//!
//! A GGUF variant is chosen with a name suffix (`Qwen3-8B:Q4_K_M`); on the CPU a variant whose
//! file is present is the default (see `load.rs`).

use std::path::{Component, Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;

use crate::error::SynthError;

/// The built-in model files, embedded at compile time. Keep sorted by file name.
const BUILTIN: &[(&str, &str)] = &[
    ("llama-3.1-8b-instruct.json", include_str!("../../models/llama-3.1-8b-instruct.json")),
    ("llama-3.2-1b-instruct.json", include_str!("../../models/llama-3.2-1b-instruct.json")),
    ("llama-3.2-3b-instruct.json", include_str!("../../models/llama-3.2-3b-instruct.json")),
    ("qwen3-0.6b.json", include_str!("../../models/qwen3-0.6b.json")),
    ("qwen3-1.7b.json", include_str!("../../models/qwen3-1.7b.json")),
    ("qwen3-4b.json", include_str!("../../models/qwen3-4b.json")),
    ("qwen3-8b.json", include_str!("../../models/qwen3-8b.json")),
    ("smollm2-135m-instruct.json", include_str!("../../models/smollm2-135m-instruct.json")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// One self-contained `.gguf` file: weights, tokenizer and chat template.
    Gguf,
    /// A Hugging Face checkpoint: `config.json`, `tokenizer.json`, `*.safetensors`, ...
    Safetensors,
}

/// Where the chat template comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplateSource {
    /// GGUF metadata `tokenizer.chat_template`.
    Gguf,
    /// `chat_template` in `tokenizer_config.json`.
    TokenizerConfig,
}

/// Where a registry entry was defined, for error messages and `synth models list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built into the binary from `models/<file>`.
    Builtin(&'static str),
    /// A user file under `$SYNTH_HOME/models/`.
    User(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin(file) => write!(f, "built-in models/{file}"),
            Origin::User(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The JSON shape of one model file, field for field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelFile {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    hf_repo: String,
    #[serde(default = "default_revision")]
    revision: String,
    architecture: Architecture,
    format: WeightFormat,
    files: Vec<String>,
    #[serde(default)]
    local_path: Option<String>,
    chat_template: ChatTemplateSource,
    stop_tokens: Vec<String>,
    context_length: usize,
    #[serde(default)]
    notes: String,
    #[serde(default = "default_downloadable")]
    downloadable: bool,
    #[serde(default)]
    gguf: Option<GgufVariantsFile>,
}

/// The `gguf` object of a model file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GgufVariantsFile {
    hf_repo: String,
    files: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    sha256: std::collections::BTreeMap<String, String>,
}

/// One quantized GGUF file of a model, by llama.cpp's quant name (`Q4_K_M`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufVariant {
    pub quant: String,
    pub hf_repo: String,
    pub file: String,
    pub sha256: Option<String>,
}

/// The order in which the CPU default picks among present GGUF variants: the smallest that
/// keeps quality close to the original first.
pub const GGUF_PREFERENCE: [&str; 4] = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"];

fn default_downloadable() -> bool {
    true
}

fn default_revision() -> String {
    "main".to_string()
}

/// A validated registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: String,
    pub aliases: Vec<String>,
    /// `org/name` on the Hugging Face Hub.
    pub hf_repo: String,
    /// A branch (`main`) or a 40-hex commit.
    pub revision: String,
    pub architecture: Architecture,
    pub format: WeightFormat,
    /// File names relative to the model directory; for GGUF exactly one `.gguf`.
    pub files: Vec<String>,
    /// A directory or file; relative paths resolve against `$SYNTH_HOME/models/`.
    pub local_path: Option<PathBuf>,
    pub chat_template: ChatTemplateSource,
    pub stop_tokens: Vec<String>,
    pub context_length: usize,
    /// Size, licence, memory, how to get it: shown with the missing-model hint.
    pub notes: String,
    /// Whether `files` can be fetched from `hf_repo` (`synth models download`); when not,
    /// `notes` say how to get them.
    pub downloadable: bool,
    /// Quantized GGUF files of the same model (sorted by quant name).
    pub gguf: Vec<GgufVariant>,
    pub origin: Origin,
}

impl ModelSpec {
    /// Parses and validates one model file. `origin` names the file in every error.
    pub fn parse(json: &str, origin: Origin) -> Result<ModelSpec> {
        match deserialize(json).and_then(validate) {
            Ok(spec) => Ok(ModelSpec { origin, ..spec }),
            Err(msg) => Err(SynthError::invalid(format!("model file `{origin}`: {msg}"))
                .hint("see the built-in files in synth's `models/` folder for the format")
                .into()),
        }
    }

    /// This entry with its weights taken from the GGUF variant `quant` (case-insensitive):
    /// the file under `$SYNTH_HOME/models/` or in the variant repository's Hugging Face cache.
    pub fn variant(&self, quant: &str) -> Option<ModelSpec> {
        let v = self.gguf.iter().find(|v| v.quant.eq_ignore_ascii_case(quant))?;
        Some(ModelSpec {
            hf_repo: v.hf_repo.clone(),
            revision: default_revision(),
            local_path: Some(PathBuf::from(&v.file)),
            downloadable: true,
            gguf: Vec::new(),
            ..self.gguf_file(&v.file)
        })
    }

    /// This entry with its weights, tokenizer and template from one `.gguf` file called `file`
    /// (a `--model-path` file, or a variant).
    pub fn gguf_file(&self, file: &str) -> ModelSpec {
        ModelSpec {
            format: WeightFormat::Gguf,
            files: vec![file.to_string()],
            chat_template: ChatTemplateSource::Gguf,
            ..self.clone()
        }
    }

    /// The name and every alias.
    fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// The JSON shape, with the path of the offending field in the error.
fn deserialize(json: &str) -> Result<ModelFile, String> {
    // serde would also accept the struct's fields as a bare array.
    if !json.trim_start().starts_with('{') {
        return Err("expected a JSON object".into());
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("field `{path}`: {inner}")
        }
    })
}

/// Checks what serde cannot: non-empty values, file lists that fit the format.
fn validate(raw: ModelFile) -> Result<ModelSpec, String> {
    let nonempty = |field: &str, value: &str| {
        if value.trim().is_empty() {
            Err(format!("field `{field}` is empty"))
        } else {
            Ok(())
        }
    };
    nonempty("name", &raw.name)?;
    nonempty("revision", &raw.revision)?;
    for (i, alias) in raw.aliases.iter().enumerate() {
        nonempty(&format!("aliases[{i}]"), alias)?;
    }
    if raw.hf_repo.split('/').count() != 2 || raw.hf_repo.split('/').any(|p| p.trim().is_empty()) {
        return Err(format!("field `hfRepo` is `{}`, expected `org/name`", raw.hf_repo));
    }
    if raw.files.is_empty() {
        return Err("field `files` is empty".into());
    }
    check_files(&raw)?;
    if raw.stop_tokens.is_empty() {
        return Err("field `stopTokens` is empty".into());
    }
    for (i, token) in raw.stop_tokens.iter().enumerate() {
        nonempty(&format!("stopTokens[{i}]"), token)?;
    }
    if !raw.downloadable && raw.notes.trim().is_empty() {
        return Err("field `downloadable` is false but `notes` is empty; say there how to get the files".into());
    }
    if raw.context_length == 0 {
        return Err("field `contextLength` is 0".into());
    }
    check_local_path(raw.local_path.as_deref())?;
    let gguf = raw.gguf.as_ref().map(gguf_variants).transpose()?.unwrap_or_default();
    Ok(ModelSpec {
        name: raw.name,
        aliases: raw.aliases,
        hf_repo: raw.hf_repo,
        revision: raw.revision,
        architecture: raw.architecture,
        format: raw.format,
        files: raw.files,
        local_path: raw.local_path.map(PathBuf::from),
        chat_template: raw.chat_template,
        stop_tokens: raw.stop_tokens,
        context_length: raw.context_length,
        notes: raw.notes,
        downloadable: raw.downloadable,
        gguf,
        origin: Origin::Builtin(""),
    })
}

fn gguf_variants(raw: &GgufVariantsFile) -> Result<Vec<GgufVariant>, String> {
    if raw.hf_repo.split('/').count() != 2 || raw.hf_repo.split('/').any(|p| p.trim().is_empty()) {
        return Err(format!("field `gguf.hfRepo` is `{}`, expected `org/name`", raw.hf_repo));
    }
    if raw.files.is_empty() {
        return Err("field `gguf.files` is empty".into());
    }
    for (quant, file) in &raw.files {
        let plain = Path::new(file).components().all(|c| matches!(c, Component::Normal(_)));
        if !file.ends_with(".gguf") || !plain {
            return Err(format!("field `gguf.files.{quant}` is `{file}`, expected a `.gguf` file name"));
        }
        if quant.is_empty() || !quant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("field `gguf.files` has the key `{quant}`, expected a quant name like `Q4_K_M`"));
        }
    }
    for (quant, sha) in &raw.sha256 {
        if !raw.files.contains_key(quant) {
            return Err(format!("field `gguf.sha256.{quant}` names no file of `gguf.files`"));
        }
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("field `gguf.sha256.{quant}` is `{sha}`, expected 64 hex digits"));
        }
    }
    Ok(raw
        .files
        .iter()
        .map(|(quant, file)| GgufVariant {
            quant: quant.clone(),
            hf_repo: raw.hf_repo.clone(),
            file: file.clone(),
            sha256: raw.sha256.get(quant).map(|s| s.to_ascii_lowercase()),
        })
        .collect())
}

/// The file list fits the weight format and the chat template's source.
fn check_files(raw: &ModelFile) -> Result<(), String> {
    for (i, file) in raw.files.iter().enumerate() {
        let plain = Path::new(file).components().all(|c| matches!(c, Component::Normal(_)));
        if file.is_empty() || !plain {
            return Err(format!("field `files[{i}]` is `{file}`, expected a relative path inside the model directory"));
        }
    }
    let has = |name: &str| raw.files.iter().any(|f| f == name);
    match raw.format {
        WeightFormat::Gguf => {
            if raw.files.len() != 1 || !raw.files[0].ends_with(".gguf") {
                return Err("field `files` must hold exactly one `.gguf` file when `format` is `gguf`".into());
            }
        }
        WeightFormat::Safetensors => {
            if let Some(needed) = ["config.json", "tokenizer.json"].into_iter().find(|f| !has(f)) {
                return Err(format!("field `files` lacks `{needed}`, which `safetensors` models need"));
            }
            if !raw.files.iter().any(|f| f.ends_with(".safetensors")) {
                return Err("field `files` lists no `.safetensors` weights".into());
            }
        }
    }
    match raw.chat_template {
        ChatTemplateSource::Gguf if raw.format != WeightFormat::Gguf => {
            return Err("field `chatTemplate` is `gguf` but `format` is not `gguf`".into());
        }
        ChatTemplateSource::TokenizerConfig if !has("tokenizer_config.json") => {
            return Err("field `chatTemplate` is `tokenizer_config` but `files` lacks `tokenizer_config.json`".into());
        }
        _ => {}
    }
    Ok(())
}

/// A relative `localPath` resolves against `$SYNTH_HOME/models/` and must stay inside it; an
/// absolute path says plainly where the files are, so it is taken as written.
fn check_local_path(local: Option<&str>) -> Result<(), String> {
    let Some(local) = local else { return Ok(()) };
    if local.trim().is_empty() {
        return Err("field `localPath` is empty".into());
    }
    let path = Path::new(local);
    let escapes =
        path.is_relative() && path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(format!("field `localPath` is `{local}`, expected a path inside `$SYNTH_HOME/models/` (no `..`) or an absolute path"));
    }
    Ok(())
}

/// All known models, built-in and the user's, sorted by name.
#[derive(Debug, Clone)]
pub struct Registry {
    models: Vec<ModelSpec>,
}

impl Registry {
    /// The built-in models plus, when `synth_home` is given and `synth_home/models/` exists,
    /// every `*.json` file in it (sorted by file name; same-name entries replace built-ins).
    pub fn load(synth_home: Option<&Path>) -> Result<Registry> {
        let mut builtin = Vec::with_capacity(BUILTIN.len());
        for (file, json) in BUILTIN {
            builtin.push(ModelSpec::parse(json, Origin::Builtin(file))?);
        }
        let mut user = Vec::new();
        if let Some(dir) = synth_home.map(|home| home.join("models")).filter(|dir| dir.is_dir()) {
            for path in user_model_files(&dir)? {
                let json = std::fs::read_to_string(&path)
                    .map_err(|err| SynthError::failed(format!("cannot read model file `{}`: {err}", path.display())))?;
                user.push(ModelSpec::parse(&json, Origin::User(path))?);
            }
        }
        Registry::from_specs(builtin, user)
    }

    /// Merges built-in and user entries: a user entry replaces the built-in one with the same
    /// name; any other name or alias claimed twice is an error naming both files.
    pub fn from_specs(builtin: Vec<ModelSpec>, user: Vec<ModelSpec>) -> Result<Registry> {
        let mut models: Vec<ModelSpec> = Vec::with_capacity(builtin.len() + user.len());
        for spec in user {
            if let Some(prev) = models.iter().find(|m| m.name.eq_ignore_ascii_case(&spec.name)) {
                return Err(duplicate(&spec.name, prev, &spec));
            }
            models.push(spec);
        }
        for spec in builtin {
            if !models.iter().any(|m| m.name.eq_ignore_ascii_case(&spec.name)) {
                models.push(spec);
            }
        }
        for (i, a) in models.iter().enumerate() {
            for b in &models[i + 1..] {
                if let Some(name) = a.names().find(|n| b.names().any(|m| m.eq_ignore_ascii_case(n))) {
                    return Err(duplicate(name, a, b));
                }
            }
        }
        models.sort_by_key(|m| m.name.to_lowercase());
        Ok(Registry { models })
    }

    /// Looks a model up by name or alias, ignoring case. Names win over aliases.
    pub fn find(&self, name: &str) -> Option<&ModelSpec> {
        let name = name.trim();
        self.models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .or_else(|| self.models.iter().find(|m| m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))))
    }

    /// Like [`Registry::find`], but an unknown name is a `NotFound` error listing known names.
    pub fn get(&self, name: &str) -> Result<&ModelSpec> {
        self.find(name).ok_or_else(|| {
            let known: Vec<String> = self.models.iter().map(|m| format!("`{}`", m.name)).collect();
            SynthError::not_found(format!("unknown model `{name}`; known models: {}", known.join(", ")))
                .hint("run `synth models list` to see every model and its aliases, or add a model file to `$SYNTH_HOME/models/`")
                .into()
        })
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }
}

fn duplicate(name: &str, a: &ModelSpec, b: &ModelSpec) -> anyhow::Error {
    SynthError::invalid(format!("model name `{name}` is claimed by both `{}` and `{}`", a.origin, b.origin))
        .hint("give each model file a distinct `name` and `aliases`")
        .into()
}

fn user_model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| SynthError::failed(format!("cannot read `{}`: {err}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|err| SynthError::failed(format!("cannot read `{}`: {err}", dir.display())))?.path();
        if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{exit_code, render};

    const MINIMAL: &str = r#"{
        "name": "Tiny", "hfRepo": "org/tiny", "architecture": "llama", "format": "gguf",
        "files": ["tiny.gguf"], "chatTemplate": "gguf", "stopTokens": ["</s>"], "contextLength": 2048
    }"#;

    fn user(json: &str, file: &str) -> ModelSpec {
        ModelSpec::parse(json, Origin::User(PathBuf::from(file))).unwrap()
    }

    #[test]
    fn builtin_models_parse_and_resolve_by_name_and_alias() {
        let reg = Registry::load(None).unwrap();
        let names: Vec<&str> = reg.models().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Llama-3.1-8B-Instruct",
                "Llama-3.2-1B-Instruct",
                "Llama-3.2-3B-Instruct",
                "Qwen3-0.6B",
                "Qwen3-1.7B",
                "Qwen3-4B",
                "Qwen3-8B",
                "SmolLM2-135M-Instruct"
            ]
        );
        let llama = reg.find("meta-llama/llama-3.1-8b-instruct").unwrap();
        assert_eq!(llama.name, "Llama-3.1-8B-Instruct");
        assert_eq!(llama.files.iter().filter(|f| f.ends_with(".safetensors")).count(), 4);
        assert_eq!(reg.find("QWEN3-8B").unwrap().files.iter().filter(|f| f.ends_with(".safetensors")).count(), 5);
        let smol = reg.find("smollm2-135m-instruct").unwrap();
        assert_eq!(smol.format, WeightFormat::Gguf);
        assert_eq!(smol.local_path.as_deref(), Some(Path::new("SmolLM2-135M-Instruct.Q4_1.gguf")));
        assert_eq!(reg.find("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap().name, smol.name);
        assert!(reg.find("gpt-5").is_none());
    }

    #[test]
    fn unknown_model_lists_known_names() {
        let reg = Registry::load(None).unwrap();
        let err = reg.get("gpt-5").unwrap_err();
        assert_eq!(exit_code(&err), 3);
        let text = render(&err);
        assert!(text.starts_with("error: unknown model `gpt-5`; known models: `Llama-3.1-8B-Instruct`, "), "{text}");
        assert!(text.contains("hint: run `synth models list`"), "{text}");
    }

    fn with_gguf(gguf: &str) -> String {
        MINIMAL.replace("\"name\": \"Tiny\"", &format!("\"name\": \"Tiny\", \"gguf\": {gguf}"))
    }

    #[test]
    fn builtin_8b_entries_have_gguf_variants() {
        let registry = Registry::load(None).unwrap();
        for name in ["Llama-3.1-8B-Instruct", "Qwen3-8B"] {
            let quants: Vec<&str> = registry.get(name).unwrap().gguf.iter().map(|v| v.quant.as_str()).collect();
            assert_eq!(quants, ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"], "{name}");
        }
        let v = registry.get("Qwen3-0.6B").unwrap().variant("q8_0").unwrap();
        assert_eq!((v.files[0].as_str(), v.format), ("Qwen3-0.6B-Q8_0.gguf", WeightFormat::Gguf));
        assert_eq!(v.local_path, Some(PathBuf::from("Qwen3-0.6B-Q8_0.gguf")));
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let spec = user(MINIMAL, "tiny.json");
        assert_eq!(spec.revision, "main");
        assert!(spec.aliases.is_empty() && spec.notes.is_empty() && spec.local_path.is_none());
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let cases = [
            (MINIMAL.replace("\"format\": \"gguf\"", "\"format\": \"ggml\""), "field `format`: unknown variant `ggml`"),
            (
                MINIMAL.replace("\"contextLength\": 2048", "\"contextLength\": \"big\""),
                "field `contextLength`: invalid type",
            ),
            (MINIMAL.replace("\"name\"", "\"nmae\""), "unknown field `nmae`"),
            (MINIMAL.replace("\"hfRepo\": \"org/tiny\", ", ""), "missing field `hfRepo`"),
            (MINIMAL.replace("[\"tiny.gguf\"]", "[\"tiny.gguf\", \"b.gguf\"]"), "exactly one `.gguf`"),
            (MINIMAL.replace("[\"tiny.gguf\"]", "[\"../tiny.gguf\"]"), "field `files[0]` is `../tiny.gguf`"),
            (MINIMAL.replace("org/tiny", "tiny"), "field `hfRepo` is `tiny`, expected `org/name`"),
            (MINIMAL.replace("[\"</s>\"]", "[]"), "field `stopTokens` is empty"),
            (MINIMAL.replace("\"Tiny\"", "\"Tiny\", \"localPath\": \" \""), "field `localPath` is empty"),
            (
                MINIMAL.replace("\"Tiny\"", "\"Tiny\", \"downloadable\": false"),
                "field `downloadable` is false but `notes` is empty",
            ),
            ("{".to_string(), "EOF while parsing"),
            (with_gguf(r#"{"hfRepo": "o/t", "files": {"Q4_K_M": "t.bin"}}"#), "field `gguf.files.Q4_K_M` is `t.bin`"),
            (with_gguf(r#"{"hfRepo": "t", "files": {"Q4_K_M": "t.gguf"}}"#), "field `gguf.hfRepo` is `t`"),
            (with_gguf(r#"{"hfRepo": "o/t", "files": {}}"#), "field `gguf.files` is empty"),
            (
                with_gguf(r#"{"hfRepo": "o/t", "files": {"Q8_0": "t.gguf"}, "sha256": {"Q4_K_M": "00"}}"#),
                "field `gguf.sha256.Q4_K_M` names no file",
            ),
            (
                with_gguf(r#"{"hfRepo": "o/t", "files": {"Q8_0": "t.gguf"}, "sha256": {"Q8_0": "00"}}"#),
                "field `gguf.sha256.Q8_0` is `00`, expected 64 hex digits",
            ),
            (with_gguf(r#"{"hfRepo": "o/t", "file": {}}"#), "unknown field `file`"),
        ];
        for (json, want) in cases {
            let err = ModelSpec::parse(&json, Origin::User(PathBuf::from("/h/models/tiny.json"))).unwrap_err();
            let text = render(&err);
            assert!(text.starts_with("error: model file `/h/models/tiny.json`: "), "{text}");
            assert!(text.contains(want), "want {want:?} in {text}");
            assert_eq!(exit_code(&err), 2);
        }
    }

    #[test]
    fn user_file_overrides_builtin_by_name() {
        let home = tempfile::tempdir().unwrap();
        let models = home.path().join("models");
        std::fs::create_dir(&models).unwrap();
        let json = MINIMAL.replace("\"Tiny\"", "\"qwen3-8b\"").replace("org/tiny", "me/qwen");
        std::fs::write(models.join("mine.json"), json).unwrap();
        std::fs::write(models.join("weights.gguf"), b"not json, ignored").unwrap();
        let reg = Registry::load(Some(home.path())).unwrap();
        assert_eq!(reg.models().len(), 8);
        let spec = reg.find("Qwen3-8B").unwrap();
        assert_eq!(spec.hf_repo, "me/qwen");
        assert_eq!(spec.origin, Origin::User(models.join("mine.json")));
        // The built-in's alias went with it.
        assert!(reg.find("Qwen/Qwen3-8B").is_none());
    }

    #[test]
    fn alias_claimed_twice_is_an_error() {
        let a = user(&MINIMAL.replace("\"Tiny\"", "\"A\", \"aliases\": [\"x\"]"), "a.json");
        let b = user(&MINIMAL.replace("\"Tiny\"", "\"B\", \"aliases\": [\"X\"]"), "b.json");
        let err = Registry::from_specs(vec![], vec![a, b]).unwrap_err();
        assert_eq!(
            render(&err).lines().next().unwrap(),
            "error: model name `x` is claimed by both `a.json` and `b.json`"
        );
    }

    #[test]
    fn bad_user_file_names_its_path() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("models")).unwrap();
        std::fs::write(home.path().join("models/broken.json"), "[]").unwrap();
        let err = Registry::load(Some(home.path())).unwrap_err();
        assert!(render(&err).contains("broken.json`: expected a JSON object"), "{}", render(&err));
    }

    /// Issue 16: `"localPath": "../../.."` resolved outside `$SYNTH_HOME/models/`.
    #[test]
    fn local_path_escaping_models_is_refused() {
        for bad in ["../../..", "..", "a/../../b", "./../x.gguf", "weights/../../x.gguf"] {
            let json = MINIMAL.replace("\"Tiny\"", &format!("\"Tiny\", \"localPath\": \"{bad}\""));
            let err = ModelSpec::parse(&json, Origin::User(PathBuf::from("/h/models/evil.json"))).unwrap_err();
            assert_eq!(exit_code(&err), 2);
            let text = render(&err);
            assert!(
                text.starts_with(&format!(
                    "error: model file `/h/models/evil.json`: field `localPath` is `{bad}`, expected a path inside `$SYNTH_HOME/models/` (no `..`) or an absolute path"
                )),
                "{text}"
            );
        }
        for good in ["tiny.gguf", "./tiny.gguf", "sub/dir", "/opt/weights/tiny.gguf"] {
            let json = MINIMAL.replace("\"Tiny\"", &format!("\"Tiny\", \"localPath\": \"{good}\""));
            assert_eq!(user(&json, "ok.json").local_path.as_deref(), Some(Path::new(good)));
        }
    }
}

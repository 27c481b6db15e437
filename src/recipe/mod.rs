//! Recipes: the JSON shapes of Oumi's recipe format, validated into a [`Recipe`].
//!
//! Parsing has two stages, as ripgrep does with its flags: [`raw`] mirrors the JSON with serde
//! (unknown fields and wrong types are errors there), then [`validate`] checks values and fills
//! in defaults. The rest of the program only sees a [`Recipe`], which is always valid.
//!
//! Every error has kind `Invalid` (exit code 2) and reads `<file>: <json.path>: <problem>`,
//! for example `recipes/bad.json: inferenceConfig.inferenceTemperature: `-1` must be between 0
//! and 2`.
//!
//! # Fields and defaults
//!
//! | JSON field | default | accepted |
//! | --- | --- | --- |
//! | `modelIdentifier.modelType` | `"llm"` | `"llm"` only |
//! | `modelIdentifier.modelName` | required | non-empty string |
//! | `modelIdentifier.modelId`, `modelVersionId` | none | any string, kept for the manifest |
//! | `inferenceConfig` | all defaults | object |
//! | `inferenceConfig.inferenceTemperature` | `0.7` | 0 to 2; 0 is greedy decoding |
//! | `inferenceConfig.inferenceMaxNewTokens` | `512` | integer, 1 to 131072 |
//! | `inferenceConfig.inferenceSeed` | `42` | integer, 0 to 2^64-1; fixed so runs are reproducible by default |
//! | `inferenceConfig.requestsPerMinute` | unlimited | 0.001 to 1000000 (one request per ~17 hours to ~16700 a second) |
//! | `inferenceConfig.inferenceTopP` (synth extension) | `1.0` (off) | greater than 0, at most 1 |
//! | `inferenceConfig.inferenceTopK` (synth extension) | `0` (off) | integer ≥ 0 |
//! | `inferenceConfig.enableThinking` (synth extension) | `false` | `true` or `false`; Qwen3 thinking mode |
//! | `synthesisConfig.synthesisType` | required | `"general"` |
//! | `synthesisConfig.synthesisConfig.datasetId` | required | a valid dataset id (see [`crate::store::id`]) |
//! | `synthesisConfig.synthesisConfig.datasetDistribution` | `{train 0.8, validation 0.1, test 0.1}` | object |
//! | `…datasetDistribution.train`, `validation`, `test` | `0.0` when the key is missing | 0 to 1, the three summing to 1 (±1e-6) |
//!
//! A field set to `null` counts as left out (so its default applies), except for required fields.
//! Integer fields take integers only: `512.0` and `5e2` are rejected with a message saying
//! to write `512`. The extensions are not part of Oumi's schema; recipes that use them are not
//! portable to Oumi.

pub(crate) mod raw;
pub(crate) mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::SynthError;

/// The only accepted `modelType`, and the default when it is left out.
pub const DEFAULT_MODEL_TYPE: &str = "llm";
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[DEFAULT_MODEL_TYPE];
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
pub const MAX_TEMPERATURE: f64 = 2.0;
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;
/// Largest accepted `inferenceMaxNewTokens`; larger than any supported model's context.
pub const MAX_NEW_TOKENS_LIMIT: usize = 131_072;
/// Fixed rather than random so that two runs of the same recipe give the same dataset.
pub const DEFAULT_SEED: u64 = 42;
/// `None` is no rate limit.
pub const DEFAULT_REQUESTS_PER_MINUTE: Option<f64> = None;
/// Smallest accepted `requestsPerMinute`: one request every 16 h 40 min. Slower than this is
/// almost surely a typo, and the wait between requests stays far inside what a `Duration` holds.
pub const MIN_REQUESTS_PER_MINUTE: f64 = 0.001;
/// Largest accepted `requestsPerMinute`: about 16,700 a second, more than any local model
/// starts; leave the field out for no limit.
pub const MAX_REQUESTS_PER_MINUTE: f64 = 1_000_000.0;
/// `1.0` keeps the whole distribution: nucleus sampling off.
pub const DEFAULT_TOP_P: f64 = 1.0;
/// `0` is top-k sampling off.
pub const DEFAULT_TOP_K: usize = 0;
pub const DEFAULT_ENABLE_THINKING: bool = false;
pub const DEFAULT_DISTRIBUTION: Distribution = Distribution { train: 0.8, validation: 0.1, test: 0.1 };
/// How far `train + validation + test` may be from 1, for decimal fractions such as 0.85 + 0.1 + 0.05.
pub const DISTRIBUTION_TOLERANCE: f64 = 1e-6;

/// A recipe that has passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub model: ModelIdentifier,
    pub inference: InferenceSettings,
    pub synthesis: SynthesisSettings,
    /// The recipe as given (key order kept), for the manifest.
    pub source: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentifier {
    /// Always [`DEFAULT_MODEL_TYPE`] today.
    pub model_type: String,
    pub model_name: String,
    pub model_id: Option<String>,
    pub model_version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InferenceSettings {
    pub temperature: f64,
    pub max_new_tokens: usize,
    pub seed: u64,
    /// Whether `inferenceSeed` was in the recipe, rather than [`DEFAULT_SEED`].
    pub seed_was_given: bool,
    /// `None` is unlimited.
    pub requests_per_minute: Option<f64>,
    /// `1.0` is off.
    pub top_p: f64,
    /// `0` is off.
    pub top_k: usize,
    /// Qwen3 thinking mode.
    pub enable_thinking: bool,
}

impl InferenceSettings {
    /// These settings as one request's sampling parameters, with that request's own seed.
    pub fn sampling(&self, seed: u64) -> crate::engine::SamplingParams {
        crate::engine::SamplingParams { temperature: self.temperature, top_p: self.top_p, top_k: self.top_k, max_new_tokens: self.max_new_tokens, seed }
    }
}

impl Default for InferenceSettings {
    fn default() -> Self {
        Self {
            temperature: DEFAULT_TEMPERATURE,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            seed: DEFAULT_SEED,
            seed_was_given: false,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            top_p: DEFAULT_TOP_P,
            top_k: DEFAULT_TOP_K,
            enable_thinking: DEFAULT_ENABLE_THINKING,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthesisType {
    General,
}

impl SynthesisType {
    pub const ALL: &'static [SynthesisType] = &[SynthesisType::General];

    /// The name used in recipes.
    pub fn as_str(self) -> &'static str {
        match self {
            SynthesisType::General => "general",
        }
    }

    /// The type a recipe names, if it is supported.
    pub fn from_name(name: &str) -> Option<SynthesisType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for SynthesisType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SynthesisSettings {
    pub kind: SynthesisType,
    pub dataset_id: String,
    pub distribution: Distribution,
}

/// Fractions of the generated rows per split; each in [0, 1], summing to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distribution {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl Default for Distribution {
    fn default() -> Self {
        DEFAULT_DISTRIBUTION
    }
}

impl Recipe {
    /// Reads and validates a recipe file. Every error message starts with the file's path.
    pub fn from_path(path: &Path) -> anyhow::Result<Recipe> {
        let (origin, text) = read_text(path)?;
        Self::from_json_str(&text, &origin)
    }

    /// Validates a recipe held in memory; `origin` names it in messages (usually the file name).
    pub fn from_json_str(text: &str, origin: &str) -> anyhow::Result<Recipe> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Err(SynthError::invalid(format!("{origin}: the file is empty, expected a recipe object"))
                .hint(STRUCTURE_HINT)
                .into());
        }
        let raw = raw::parse(text).map_err(|f| failure_to_error(f, origin))?;
        let source: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SynthError::invalid(format!("{origin}: invalid JSON: {e}")))?;
        validate::recipe(raw, source).map_err(|f| failure_to_error(f, origin))
    }
}

/// A recipe file's text and the name its messages give it; a missing, unreadable or non-UTF-8
/// file is an error that starts with that name.
pub fn read_text(path: &Path) -> anyhow::Result<(String, String)> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        let err = match e.kind() {
            std::io::ErrorKind::NotFound => SynthError::not_found(format!("{origin}: no such file")),
            std::io::ErrorKind::IsADirectory => SynthError::invalid(format!("{origin}: is a directory, expected a recipe file (JSON)")),
            _ => SynthError::failed(format!("{origin}: cannot read the file: {e}")),
        };
        anyhow::Error::from(err)
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        SynthError::invalid(format!("{origin}: not valid UTF-8 (byte {})", e.utf8_error().valid_up_to())).hint("save the recipe as UTF-8 JSON")
    })?;
    Ok((origin, text))
}

const STRUCTURE_HINT: &str =
    "a recipe is a JSON object with `modelIdentifier`, `synthesisConfig` and optionally `inferenceConfig`; see recipes/general.json";

fn failure_to_error(failure: raw::Failure, origin: &str) -> anyhow::Error {
    if failure.path == "recipeConfig" && failure.message.starts_with("unknown field") {
        return SynthError::invalid(format!("{origin}: this is an evaluation recipe (it has `recipeConfig`), not a synthesis recipe"))
            .hint(format!("run it with `synth eval {origin}`"))
            .into();
    }
    failure_to_error_with(failure, origin, STRUCTURE_HINT)
}

/// `<origin>: <json.path>: <problem>` as an `Invalid` error; `structure_hint` goes with errors
/// about the document's overall shape.
pub(crate) fn failure_to_error_with(failure: raw::Failure, origin: &str, structure_hint: &str) -> anyhow::Error {
    let message = if failure.path.is_empty() {
        format!("{origin}: {}", failure.message)
    } else {
        format!("{origin}: {}: {}", failure.path, failure.message)
    };
    let mut err = SynthError::invalid(message);
    if let Some(hint) = failure.hint {
        err = err.hint(hint);
    } else if failure.path.is_empty() && failure.message.starts_with("expected ") {
        err = err.hint(structure_hint);
    }
    err.into()
}

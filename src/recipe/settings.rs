//! The validated recipe the rest of synth trusts, and the defaults and limits [`super::validate`]
//! applies (the table in [`crate::recipe`]'s docs).

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
pub use crate::curation::settings::CurationSettings;

/// `None` is no rate limit.
pub const DEFAULT_REQUESTS_PER_MINUTE: Option<f64> = None;
/// Smallest accepted `requestsPerMinute`: one request every 16 h 40 min. Slower than this is
/// almost surely a typo, and the wait between requests stays far inside what a `Duration` holds.
pub const MIN_REQUESTS_PER_MINUTE: f64 = crate::engine::rate_limit::MIN_REQUESTS_PER_MINUTE;
/// Largest accepted `requestsPerMinute`: about 16,700 a second, more than any local model
/// starts; leave the field out for no limit.
pub const MAX_REQUESTS_PER_MINUTE: f64 = crate::engine::rate_limit::MAX_REQUESTS_PER_MINUTE;
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
        crate::engine::SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_new_tokens: self.max_new_tokens,
            seed,
        }
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
    /// Rows to publish (synth extension); `None`: one new row per seed row.
    pub num_samples: Option<usize>,
    /// Which curation gates run, the near-duplicate threshold and excluded datasets (synth
    /// extension `curation`; `synth run`'s flags win over it).
    pub curation: CurationSettings,
}

/// The most rows one run may be asked for.
pub const MAX_NUM_SAMPLES: usize = 10_000_000;

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

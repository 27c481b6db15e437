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
//! | `synthesisConfig.synthesisConfig.numSamples` (synth extension) | one new row per seed row | integer, 1 to 10000000: rows to publish; seeds are used round-robin, each pass a new *variant* (`synth run --num-samples` wins over it) |
//! | `synthesisConfig.synthesisConfig.curation` (synth extension) | every gate on | object: which curation gates run (see [`crate::curation`]; `synth run`'s flags win over it) |
//! | `…curation.filters` | every filter on | object, filter name → `true`/`false`: `tooShort`, `instructionEcho`, `assistantVoice`, `notARequest`, `answerInRequest`, `refusal`, `repetition`, `otherLanguage`, `seedCopy`, `exactDuplicate`, `nearDuplicate` |
//! | `…curation.nearDuplicateThreshold` | `0.7` | more than 0, at most 1: the Jaccard index of word 3-gram sets at which two requests are near duplicates |
//! | `…curation.exclude` | none | array of dataset ids: no new request may near-duplicate a user message of these (decontamination; `--exclude` adds to it) |
//! | `…curation.judge` | off | object: a local judge model grades each finished row, and a row it fails (or whose reply has no readable verdict) is dropped and regenerated; `{}` turns it on with the defaults; `--filter judge=on\|off` |
//! | `…curation.judge.modelName` | the recipe's model | a registry model name; loaded once |
//! | `…curation.judge.promptTemplate` | a rubric (see [`crate::curation::settings::DEFAULT_RUBRIC`]) | `{prompt}` (the row's conversation up to its last answer), `{output}` (that answer, required), `{reference}` (the seed row's answer) |
//! | `…curation.judge.maxNewTokens` | `96` | 1 to 4096: the judge's reply is greedy and at most this long |
//! | `…datasetDistribution.train`, `validation`, `test` | `0.0` when the key is missing | 0 to 1, the three summing to 1 (±1e-6) |
//!
//! A field set to `null` counts as left out (so its default applies), except for required fields.
//! Integer fields take integers only: `512.0` and `5e2` are rejected with a message saying
//! to write `512`. The extensions are not part of Oumi's schema; recipes that use them are not
//! portable to Oumi.

pub mod judge_template;
pub(crate) mod raw;
mod settings;
pub(crate) mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::SynthError;

pub use settings::*;

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
            std::io::ErrorKind::IsADirectory => {
                SynthError::invalid(format!("{origin}: is a directory, expected a recipe file (JSON)"))
            }
            _ => SynthError::failed(format!("{origin}: cannot read the file: {e}")),
        };
        anyhow::Error::from(err)
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        SynthError::invalid(format!("{origin}: not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))
            .hint("save the recipe as UTF-8 JSON")
    })?;
    Ok((origin, text))
}

const STRUCTURE_HINT: &str =
    "a recipe is a JSON object with `modelIdentifier`, `synthesisConfig` and optionally `inferenceConfig`; see recipes/general.json";

fn failure_to_error(failure: raw::Failure, origin: &str) -> anyhow::Error {
    if failure.path == "recipeConfig" && failure.message.starts_with("unknown field") {
        return SynthError::invalid(format!(
            "{origin}: this is an evaluation recipe (it has `recipeConfig`), not a synthesis recipe"
        ))
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

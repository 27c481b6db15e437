//! Stage two: value rules and defaults, from the raw shapes to a [`Recipe`].

use super::judge_template::check_template;
use super::raw::{
    closest, show_text, Count, Failure, Flag, Number, Obj, RawCuration, RawDistribution, RawJudgeGate, RawRecipe, Text,
};
use super::settings::*;
use crate::curation::settings::{valid_threshold, Gate, JudgeSettings};
use crate::store::id::validate_dataset_id;

const MODEL: &str = "modelIdentifier";
const INFERENCE: &str = "inferenceConfig";
const GENERAL: &str = "synthesisConfig.synthesisConfig";
const DISTRIBUTION: &str = "synthesisConfig.synthesisConfig.datasetDistribution";
const CURATION: &str = "synthesisConfig.synthesisConfig.curation";

pub(super) fn recipe(raw: RawRecipe, source: serde_json::Value) -> Result<Recipe, Failure> {
    Ok(Recipe {
        model: model(raw.model_identifier.0, MODEL)?,
        inference: inference(raw.inference_config.map(|c| c.0), INFERENCE)?,
        synthesis: synthesis(raw.synthesis_config.0)?,
        source,
    })
}

pub(crate) fn fail(path: String, message: String) -> Failure {
    Failure { path, message, hint: None }
}

/// `modelIdentifier` found at JSON path `at`.
pub(crate) fn model(raw: super::raw::RawModelIdentifier, at: &str) -> Result<ModelIdentifier, Failure> {
    let model_type = raw.model_type.map_or_else(|| DEFAULT_MODEL_TYPE.to_string(), |t| t.0);
    if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(fail(
            format!("{at}.modelType"),
            format!(
                "`{}` is not supported, the only supported model type is `{DEFAULT_MODEL_TYPE}`",
                show_text(&model_type)
            ),
        ));
    }
    let model_name = raw.model_name.0;
    if model_name.trim().is_empty() {
        return Err(Failure {
            path: format!("{at}.modelName"),
            message: format!("`{}` must not be empty", show_text(&model_name)),
            hint: Some("name the model to run, for example `Qwen3-0.6B`".into()),
        });
    }
    Ok(ModelIdentifier {
        model_type,
        model_name,
        model_id: raw.model_id.map(|t| t.0),
        model_version_id: raw.model_version_id.map(|t| t.0),
    })
}

/// `inferenceConfig` found at JSON path `at`.
pub(crate) fn inference(raw: Option<super::raw::RawInferenceConfig>, at: &str) -> Result<InferenceSettings, Failure> {
    let defaults = InferenceSettings::default();
    let Some(raw) = raw else { return Ok(defaults) };
    let path = |field: &str| format!("{at}.{field}");

    let temperature = match raw.inference_temperature {
        None => defaults.temperature,
        Some(t) => in_range(&t, path("inferenceTemperature"), 0.0..=MAX_TEMPERATURE, "between 0 and 2")?,
    };

    let max_new_tokens = match raw.inference_max_new_tokens {
        None => defaults.max_new_tokens,
        Some(Count(n)) => match usize::try_from(n) {
            Ok(n) if (1..=MAX_NEW_TOKENS_LIMIT).contains(&n) => n,
            _ => {
                return Err(fail(
                    path("inferenceMaxNewTokens"),
                    format!("`{n}` must be between 1 and {MAX_NEW_TOKENS_LIMIT}"),
                ))
            }
        },
    };

    let seed_was_given = raw.inference_seed.is_some();
    let seed = raw.inference_seed.map_or(defaults.seed, |Count(s)| s);

    let requests_per_minute = match raw.requests_per_minute {
        None => defaults.requests_per_minute,
        Some(r) => {
            let r = finite(&r, path("requestsPerMinute"))?;
            if !(MIN_REQUESTS_PER_MINUTE..=MAX_REQUESTS_PER_MINUTE).contains(&r.value) {
                return Err(Failure {
                    path: path("requestsPerMinute"),
                    message: format!(
                        "`{}` must be between {MIN_REQUESTS_PER_MINUTE} and {MAX_REQUESTS_PER_MINUTE} requests per minute",
                        r.shown
                    ),
                    hint: Some("leave `requestsPerMinute` out for no rate limit".into()),
                });
            }
            Some(r.value)
        }
    };

    let top_p = match raw.inference_top_p {
        None => defaults.top_p,
        Some(p) => {
            let p = finite(&p, path("inferenceTopP"))?;
            if !(p.value > 0.0 && p.value <= 1.0) {
                return Err(Failure {
                    path: path("inferenceTopP"),
                    message: format!("`{}` must be greater than 0 and at most 1", p.shown),
                    hint: Some("use `1.0` (or leave it out) to turn nucleus sampling off".into()),
                });
            }
            p.value
        }
    };

    let top_k = match raw.inference_top_k {
        None => defaults.top_k,
        Some(Count(k)) => usize::try_from(k)
            .map_err(|_| fail(path("inferenceTopK"), format!("`{k}` is too large for this machine")))?,
    };

    Ok(InferenceSettings {
        temperature,
        max_new_tokens,
        seed,
        seed_was_given,
        requests_per_minute,
        top_p,
        top_k,
        enable_thinking: raw.enable_thinking.map_or(defaults.enable_thinking, |f| f.0),
    })
}

fn synthesis(raw: super::raw::RawSynthesisConfig) -> Result<SynthesisSettings, Failure> {
    let name = raw.synthesis_type.0;
    let Some(kind) = SynthesisType::from_name(&name) else {
        let supported: Vec<String> = SynthesisType::ALL.iter().map(|t| format!("`{t}`")).collect();
        return Err(fail(
            "synthesisConfig.synthesisType".into(),
            format!("`{}` is not supported, supported synthesis types: {}", show_text(&name), supported.join(", ")),
        ));
    };

    let general = raw.synthesis_config.0;
    let dataset_id = general.dataset_id.0;
    if let Err(rule) = validate_dataset_id(&dataset_id) {
        return Err(Failure {
            path: format!("{GENERAL}.datasetId"),
            message: format!("`{}` is not a valid dataset id: {rule}", show_text(&dataset_id)),
            hint: Some("use letters, digits, `_`, `-` and `.`, for example `dataset_seed_001`".into()),
        });
    }

    let distribution = match general.dataset_distribution {
        None => DEFAULT_DISTRIBUTION,
        Some(d) => distribution(d.0)?,
    };
    let num_samples = match general.num_samples {
        None => None,
        Some(Count(n)) => match usize::try_from(n) {
            Ok(n) if (1..=MAX_NUM_SAMPLES).contains(&n) => Some(n),
            _ => {
                return Err(Failure {
                    path: format!("{GENERAL}.numSamples"),
                    message: format!("`{n}` must be between 1 and {MAX_NUM_SAMPLES}"),
                    hint: Some("leave `numSamples` out for one new row per seed row".into()),
                })
            }
        },
    };
    let curation = curation(general.curation.map(|c| c.0))?;
    Ok(SynthesisSettings { kind, dataset_id, distribution, num_samples, curation })
}

/// The `curation` extension: filters by name, the near-duplicate threshold, excluded datasets.
fn curation(raw: Option<RawCuration>) -> Result<CurationSettings, Failure> {
    let mut settings = CurationSettings::default();
    let Some(raw) = raw else { return Ok(settings) };
    for (name, Flag(on)) in raw.filters.map(|f| f.0).unwrap_or_default() {
        let gate = filter(&name)?;
        if on {
            if gate == Gate::Judge {
                settings.judge.get_or_insert_with(JudgeSettings::default);
            }
            settings.off.remove(&gate);
        } else {
            settings.off.insert(gate);
        }
    }
    if let Some(t) = raw.near_duplicate_threshold {
        let t = finite(&t, format!("{CURATION}.nearDuplicateThreshold"))?;
        if !valid_threshold(t.value) {
            return Err(Failure {
                path: format!("{CURATION}.nearDuplicateThreshold"),
                message: format!("`{}` must be more than 0 and at most 1", t.shown),
                hint: Some("it is a Jaccard index of word 3-gram sets; leave it out for the default 0.7".into()),
            });
        }
        settings.near_duplicate_threshold = t.value;
    }
    for (i, id) in raw.exclude.unwrap_or_default().into_iter().enumerate() {
        if let Err(rule) = validate_dataset_id(&id.0) {
            return Err(fail(
                format!("{CURATION}.exclude[{i}]"),
                format!("`{}` is not a valid dataset id: {rule}", show_text(&id.0)),
            ));
        }
        settings.exclude_too(&[id.0]);
    }
    if let Some(Obj(judge)) = raw.judge {
        settings.judge = Some(judge_gate(judge)?);
    }
    Ok(settings)
}

/// The most tokens a judge reply may take.
const MAX_JUDGE_TOKENS: usize = 4096;

/// `curation.judge`: every field optional (`{}` is the default judge).
fn judge_gate(raw: RawJudgeGate) -> Result<JudgeSettings, Failure> {
    let at = format!("{CURATION}.judge");
    let mut judge = JudgeSettings::default();
    if let Some(Text(name)) = raw.model_name {
        if name.trim().is_empty() {
            return Err(Failure {
                path: format!("{at}.modelName"),
                message: format!("`{}` must not be empty", show_text(&name)),
                hint: Some(
                    "name a registry model, or leave `modelName` out to judge with the recipe's own model".into(),
                ),
            });
        }
        judge.model = Some(name);
    }
    if let Some(Text(template)) = raw.prompt_template {
        if let Err(rule) = check_template(&template) {
            return Err(fail(format!("{at}.promptTemplate"), format!("{} {rule}", super::raw::show_str(&template))));
        }
        judge.template = template;
    }
    if let Some(Count(n)) = raw.max_new_tokens {
        judge.max_new_tokens = match usize::try_from(n) {
            Ok(n @ 1..=MAX_JUDGE_TOKENS) => n,
            _ => {
                return Err(fail(
                    format!("{at}.maxNewTokens"),
                    format!("`{n}` must be between 1 and {MAX_JUDGE_TOKENS}"),
                ))
            }
        };
    }
    Ok(judge)
}

/// The switchable gate named `name` under `curation.filters`.
fn filter(name: &str) -> Result<Gate, Failure> {
    match Gate::from_key(name).filter(|g| g.switchable()) {
        Some(gate) => Ok(gate),
        None => {
            let names = Gate::switchable_keys();
            Err(Failure {
                path: format!("{CURATION}.filters.{name}"),
                message: format!(
                    "`{}` is not a filter, filters: {}",
                    show_text(name),
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
                hint: closest(name, &names).map(|n| format!("did you mean `{n}`?")),
            })
        }
    }
}

/// A missing split is 0.0; the three must still sum to 1.
fn distribution(raw: RawDistribution) -> Result<Distribution, Failure> {
    let split = |value: Option<Number>, name: &str| match value {
        None => Ok(0.0),
        Some(v) => in_range(&v, format!("{DISTRIBUTION}.{name}"), 0.0..=1.0, "between 0 and 1"),
    };
    let d = Distribution {
        train: split(raw.train, "train")?,
        validation: split(raw.validation, "validation")?,
        test: split(raw.test, "test")?,
    };
    let sum = d.train + d.validation + d.test;
    if (sum - 1.0).abs() > DISTRIBUTION_TOLERANCE {
        return Err(Failure {
            path: DISTRIBUTION.into(),
            message: format!("train+validation+test = {}, must be 1", show_sum(sum)),
            hint: Some("the splits are fractions of the generated rows, for example `{\"train\": 0.8, \"validation\": 0.1, \"test\": 0.1}`; a missing split counts as 0".into()),
        });
    }
    Ok(d)
}

fn finite(n: &Number, path: String) -> Result<&Number, Failure> {
    if n.value.is_finite() {
        Ok(n)
    } else {
        Err(fail(path, format!("`{}` must be a finite number", n.shown)))
    }
}

fn in_range(n: &Number, path: String, range: std::ops::RangeInclusive<f64>, rule: &str) -> Result<f64, Failure> {
    let n = finite(n, path.clone())?;
    if range.contains(&n.value) {
        Ok(n.value)
    } else {
        Err(fail(path, format!("`{}` must be {rule}", n.shown)))
    }
}

/// Rounded so that 0.8 + 0.1 + 0.05 reads `0.95`, not `0.9500000000000001`.
fn show_sum(sum: f64) -> String {
    let s = format!("{sum:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

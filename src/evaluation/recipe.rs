//! Evaluation recipes: Oumi's `recipeConfig` shape with local models, validated into an
//! [`EvalRecipe`] the way synthesis recipes are (same raw pieces, same messages: `<file>:
//! <json.path>: <problem>`, kind `Invalid`). `modelIdentifier` and `inferenceConfig` are read
//! by the synthesis recipe's own code, only at a different JSON path.
//!
//! ```json
//! {"recipeConfig": {"type": "evaluate", "evaluationConfig": {
//!   "evaluationType": "single_model",
//!   "modelIdentifier": {"modelName": "SmolLM2-135M-Instruct"},
//!   "inferenceConfig": {"inferenceTemperature": 0},
//!   "dataset": {"datasetId": "dataset_eval_basics"},
//!   "evaluators": [{"name": "exact", "evaluatorType": "exact_match"}],
//!   "generateFailureModes": true}}}
//! ```

use std::path::Path;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::error::SynthError;
use crate::recipe::judge_template::check_template;
pub use crate::recipe::judge_template::render_template;
use crate::recipe::raw::{self, show_text, Failure, Flag, Number, Obj, RawInferenceConfig, RawModelIdentifier, Text};
use crate::recipe::validate::{self, fail};
use crate::recipe::{failure_to_error_with, InferenceSettings, ModelIdentifier};
use crate::store::id::validate_dataset_id;

pub const RECIPE_TYPE: &str = "evaluate";
pub const EVALUATION_TYPE: &str = "single_model";
pub const DEFAULT_GENERATE_FAILURE_MODES: bool = false;
pub const DEFAULT_CASE_SENSITIVE: bool = false;
pub const DEFAULT_NORMALIZE_WHITESPACE: bool = true;
pub const DEFAULT_IGNORE_PUNCTUATION: bool = true;
/// Regex patterns are matched as written unless they say otherwise.
pub const DEFAULT_REGEX_CASE_SENSITIVE: bool = true;
pub const DEFAULT_MUST_MATCH: bool = true;
/// Small enough that `0.1 + 0.2` equals `0.3`, large enough for nothing else.
pub const DEFAULT_ABSOLUTE_TOLERANCE: f64 = 1e-6;
pub const DEFAULT_RELATIVE_TOLERANCE: f64 = 0.0;
/// Longest evaluator name; names become failure-mode labels.
pub const MAX_NAME_LEN: usize = 64;

/// The judge prompt used when an `llm_judge` evaluator gives no `promptTemplate`.
pub const DEFAULT_JUDGE_TEMPLATE: &str = "Question: {prompt}\n\
Reference answer: {reference}\n\
Student answer: {output}\n\n\
Does the student answer agree with the reference answer? Start your reply with Yes or No, then say why in one sentence.";

const CONFIG: &str = "recipeConfig.evaluationConfig";

const STRUCTURE_HINT: &str = "an evaluation recipe is a JSON object `{\"recipeConfig\": {\"type\": \"evaluate\", \"evaluationConfig\": {...}}}`; see recipes/evaluation.json";

/// An evaluation recipe that has passed every check.
#[derive(Debug, Clone)]
pub struct EvalRecipe {
    pub model: ModelIdentifier,
    pub inference: InferenceSettings,
    pub dataset_id: String,
    pub evaluators: Vec<Evaluator>,
    pub generate_failure_modes: bool,
    /// The recipe as given, for the run's summary.
    pub source: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Evaluator {
    pub name: String,
    pub kind: EvaluatorKind,
}

#[derive(Debug, Clone)]
pub enum EvaluatorKind {
    /// The normalized output equals the normalized reference.
    ExactMatch(TextMatch),
    /// The normalized output contains the normalized reference, on word boundaries.
    Contains(TextMatch),
    /// The output matches `regex` (or, with `must_match: false`, does not).
    Regex { regex: Regex, must_match: bool },
    /// The last number in the output is within tolerance of the reference's last number.
    NumericMatch { absolute_tolerance: f64, relative_tolerance: f64 },
    /// A local model reads a filled-in prompt template and gives a verdict and rationale.
    LlmJudge(Judge),
}

impl EvaluatorKind {
    /// The `evaluatorType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EvaluatorKind::ExactMatch(_) => "exact_match",
            EvaluatorKind::Contains(_) => "contains",
            EvaluatorKind::Regex { .. } => "regex",
            EvaluatorKind::NumericMatch { .. } => "numeric_match",
            EvaluatorKind::LlmJudge(_) => "llm_judge",
        }
    }
}

/// Evaluator types, with the fields each takes besides `name` and `evaluatorType`.
const TYPES: &[(&str, &[&str])] = &[
    ("exact_match", &["caseSensitive", "normalizeWhitespace", "ignorePunctuation"]),
    ("contains", &["caseSensitive", "normalizeWhitespace", "ignorePunctuation"]),
    ("regex", &["pattern", "caseSensitive", "mustMatch"]),
    ("numeric_match", &["absoluteTolerance", "relativeTolerance"]),
    ("llm_judge", &["modelIdentifier", "promptTemplate", "inferenceConfig"]),
];

/// How text is normalized before exact and contains matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextMatch {
    pub case_sensitive: bool,
    /// Trim, and turn every run of whitespace into one space.
    pub normalize_whitespace: bool,
    /// Drop punctuation, except between two letters or digits (`3.5`, `don't`) and a minus sign
    /// before a digit.
    pub ignore_punctuation: bool,
}

impl Default for TextMatch {
    fn default() -> Self {
        Self {
            case_sensitive: DEFAULT_CASE_SENSITIVE,
            normalize_whitespace: DEFAULT_NORMALIZE_WHITESPACE,
            ignore_punctuation: DEFAULT_IGNORE_PUNCTUATION,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Judge {
    pub model: ModelIdentifier,
    pub template: String,
    /// The judge's own `inferenceConfig`, else the evaluation's.
    pub inference: InferenceSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEvalRecipe {
    recipe_config: Obj<RawRecipeConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRecipeConfig {
    #[serde(rename = "type")]
    kind: Text,
    evaluation_config: Obj<RawEvaluationConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEvaluationConfig {
    evaluation_type: Text,
    model_identifier: Obj<RawModelIdentifier>,
    inference_config: Option<Obj<RawInferenceConfig>>,
    dataset: Obj<RawDataset>,
    evaluators: Vec<Obj<RawEvaluator>>,
    generate_failure_modes: Option<Flag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDataset {
    dataset_id: Text,
}

/// Every field any evaluator type takes; which ones a type accepts is checked in stage two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEvaluator {
    name: Text,
    evaluator_type: Text,
    case_sensitive: Option<Flag>,
    normalize_whitespace: Option<Flag>,
    ignore_punctuation: Option<Flag>,
    pattern: Option<Text>,
    must_match: Option<Flag>,
    absolute_tolerance: Option<Number>,
    relative_tolerance: Option<Number>,
    model_identifier: Option<Obj<RawModelIdentifier>>,
    prompt_template: Option<Text>,
    inference_config: Option<Obj<RawInferenceConfig>>,
}

impl RawEvaluator {
    /// The optional fields that are set, by JSON name.
    fn given(&self) -> Vec<&'static str> {
        let set = [
            ("caseSensitive", self.case_sensitive.is_some()),
            ("normalizeWhitespace", self.normalize_whitespace.is_some()),
            ("ignorePunctuation", self.ignore_punctuation.is_some()),
            ("pattern", self.pattern.is_some()),
            ("mustMatch", self.must_match.is_some()),
            ("absoluteTolerance", self.absolute_tolerance.is_some()),
            ("relativeTolerance", self.relative_tolerance.is_some()),
            ("modelIdentifier", self.model_identifier.is_some()),
            ("promptTemplate", self.prompt_template.is_some()),
            ("inferenceConfig", self.inference_config.is_some()),
        ];
        set.into_iter().filter(|(_, given)| *given).map(|(name, _)| name).collect()
    }
}

/// Whether a recipe file's text is an evaluation recipe (a JSON object with `recipeConfig`),
/// so `synth validate` knows which rules to apply. Text that does not parse says no; the
/// synthesis recipe's reader then reports the problem.
pub fn is_evaluation_text(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    matches!(serde_json::from_str::<serde_json::Value>(text), Ok(serde_json::Value::Object(map)) if map.contains_key("recipeConfig"))
}

impl EvalRecipe {
    /// Reads and validates an evaluation recipe file; every message starts with its path.
    pub fn from_path(path: &Path) -> anyhow::Result<EvalRecipe> {
        let (origin, text) = crate::recipe::read_text(path)?;
        Self::from_json_str(&text, &origin)
    }

    /// Validates a recipe held in memory; `origin` names it in messages.
    pub fn from_json_str(text: &str, origin: &str) -> anyhow::Result<EvalRecipe> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Err(SynthError::invalid(format!(
                "{origin}: the file is empty, expected an evaluation recipe object"
            ))
            .hint(STRUCTURE_HINT)
            .into());
        }
        let is_synthesis = matches!(serde_json::from_str::<serde_json::Value>(text), Ok(serde_json::Value::Object(m)) if m.contains_key("synthesisConfig"));
        if is_synthesis {
            return Err(SynthError::invalid(format!(
                "{origin}: this is a synthesis recipe (it has `synthesisConfig`), not an evaluation recipe"
            ))
            .hint(format!("run it with `synth run {origin}`"))
            .into());
        }
        let raw: RawEvalRecipe = raw::parse_as(text).map_err(|f| failure_to_error_with(f, origin, STRUCTURE_HINT))?;
        let source: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SynthError::invalid(format!("{origin}: invalid JSON: {e}")))?;
        recipe(raw, source).map_err(|f| failure_to_error_with(f, origin, STRUCTURE_HINT))
    }
}

fn recipe(raw: RawEvalRecipe, source: serde_json::Value) -> Result<EvalRecipe, Failure> {
    let config = raw.recipe_config.0;
    if config.kind.0 != RECIPE_TYPE {
        return Err(fail(
            "recipeConfig.type".into(),
            format!(
                "`{}` is not supported, the only supported recipe type is `{RECIPE_TYPE}`",
                show_text(&config.kind.0)
            ),
        ));
    }
    let eval = config.evaluation_config.0;
    if eval.evaluation_type.0 != EVALUATION_TYPE {
        return Err(fail(
            format!("{CONFIG}.evaluationType"),
            format!(
                "`{}` is not supported, the only supported evaluation type is `{EVALUATION_TYPE}`",
                show_text(&eval.evaluation_type.0)
            ),
        ));
    }
    let model = validate::model(eval.model_identifier.0, &format!("{CONFIG}.modelIdentifier"))?;
    let inference = validate::inference(eval.inference_config.map(|c| c.0), &format!("{CONFIG}.inferenceConfig"))?;

    let dataset_id = eval.dataset.0.dataset_id.0;
    if let Err(rule) = validate_dataset_id(&dataset_id) {
        return Err(Failure {
            path: format!("{CONFIG}.dataset.datasetId"),
            message: format!("`{}` is not a valid dataset id: {rule}", show_text(&dataset_id)),
            hint: Some("use letters, digits, `_`, `-` and `.`, for example `dataset_eval_basics`".into()),
        });
    }

    if eval.evaluators.is_empty() {
        return Err(Failure {
            path: format!("{CONFIG}.evaluators"),
            message: "must list at least one evaluator, found an empty array".into(),
            hint: Some("for example `[{\"name\": \"exact\", \"evaluatorType\": \"exact_match\"}]`".into()),
        });
    }
    let mut evaluators: Vec<Evaluator> = Vec::with_capacity(eval.evaluators.len());
    for (i, raw) in eval.evaluators.into_iter().enumerate() {
        let at = format!("{CONFIG}.evaluators[{i}]");
        let evaluator = evaluator(raw.0, &at, &inference)?;
        if evaluators.iter().any(|e| e.name == evaluator.name) {
            return Err(fail(
                format!("{at}.name"),
                format!("`{}` is used by an earlier evaluator, names must be unique", show_text(&evaluator.name)),
            ));
        }
        evaluators.push(evaluator);
    }

    Ok(EvalRecipe {
        model,
        inference,
        dataset_id,
        evaluators,
        generate_failure_modes: eval.generate_failure_modes.map_or(DEFAULT_GENERATE_FAILURE_MODES, |f| f.0),
        source,
    })
}

fn evaluator(raw: RawEvaluator, at: &str, eval_inference: &InferenceSettings) -> Result<Evaluator, Failure> {
    let name = raw.name.0.clone();
    let name_ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(Failure {
            path: format!("{at}.name"),
            message: format!(
                "`{}` is not a valid evaluator name: 1 to {MAX_NAME_LEN} characters from `A-Z a-z 0-9 _ - .`",
                show_text(&name)
            ),
            hint: Some("names label results and failure modes, for example `exact` or `judge`".into()),
        });
    }
    let type_name = raw.evaluator_type.0.clone();
    let Some((_, accepted)) = TYPES.iter().find(|(t, _)| *t == type_name) else {
        let names: Vec<String> = TYPES.iter().map(|(t, _)| format!("`{t}`")).collect();
        return Err(fail(
            format!("{at}.evaluatorType"),
            format!("`{}` is not supported, supported evaluator types: {}", show_text(&type_name), names.join(", ")),
        ));
    };
    if let Some(extra) = raw.given().into_iter().find(|f| !accepted.contains(f)) {
        let takes: Vec<String> = accepted.iter().map(|f| format!("`{f}`")).collect();
        return Err(fail(
            format!("{at}.{extra}"),
            format!(
                "does not apply to a `{type_name}` evaluator, which takes `name`, `evaluatorType`, {}",
                takes.join(", ")
            ),
        ));
    }
    let text_match = || TextMatch {
        case_sensitive: raw.case_sensitive.as_ref().map_or(DEFAULT_CASE_SENSITIVE, |f| f.0),
        normalize_whitespace: raw.normalize_whitespace.as_ref().map_or(DEFAULT_NORMALIZE_WHITESPACE, |f| f.0),
        ignore_punctuation: raw.ignore_punctuation.as_ref().map_or(DEFAULT_IGNORE_PUNCTUATION, |f| f.0),
    };
    let kind = match type_name.as_str() {
        "exact_match" => EvaluatorKind::ExactMatch(text_match()),
        "contains" => EvaluatorKind::Contains(text_match()),
        "regex" => regex_kind(raw, at)?,
        "numeric_match" => {
            let tolerance = |n: Option<Number>, field: &str, default: f64| match n {
                None => Ok(default),
                Some(n) if n.value.is_finite() && n.value >= 0.0 => Ok(n.value),
                Some(n) => {
                    Err(fail(format!("{at}.{field}"), format!("`{}` must be a finite number, 0 or more", n.shown)))
                }
            };
            EvaluatorKind::NumericMatch {
                absolute_tolerance: tolerance(raw.absolute_tolerance, "absoluteTolerance", DEFAULT_ABSOLUTE_TOLERANCE)?,
                relative_tolerance: tolerance(raw.relative_tolerance, "relativeTolerance", DEFAULT_RELATIVE_TOLERANCE)?,
            }
        }
        _ => EvaluatorKind::LlmJudge(judge(raw, at, eval_inference)?),
    };
    Ok(Evaluator { name, kind })
}

fn regex_kind(raw: RawEvaluator, at: &str) -> Result<EvaluatorKind, Failure> {
    let Some(Text(pattern)) = raw.pattern else {
        return Err(fail(format!("{at}.pattern"), "required field is missing for a `regex` evaluator".into()));
    };
    let case_sensitive = raw.case_sensitive.map_or(DEFAULT_REGEX_CASE_SENSITIVE, |f| f.0);
    let regex = RegexBuilder::new(&pattern).case_insensitive(!case_sensitive).build().map_err(|e| {
        let reason = e.to_string().lines().last().unwrap_or("invalid pattern").trim().trim_start_matches("error: ").to_string();
        Failure {
            path: format!("{at}.pattern"),
            message: format!("`{}` is not a valid regular expression: {reason}", show_text(&pattern)),
            hint: Some("the syntax is Rust's `regex` crate (no look-around or backreferences); remember to double backslashes in JSON".into()),
        }
    })?;
    Ok(EvaluatorKind::Regex { regex, must_match: raw.must_match.map_or(DEFAULT_MUST_MATCH, |f| f.0) })
}

fn judge(raw: RawEvaluator, at: &str, eval_inference: &InferenceSettings) -> Result<Judge, Failure> {
    let Some(model) = raw.model_identifier else {
        return Err(Failure {
            path: format!("{at}.modelIdentifier"),
            message: "required field is missing for an `llm_judge` evaluator".into(),
            hint: Some("name the local judge model, for example `{\"modelName\": \"SmolLM2-135M-Instruct\"}`".into()),
        });
    };
    let model = validate::model(model.0, &format!("{at}.modelIdentifier"))?;
    let template = raw.prompt_template.map_or_else(|| DEFAULT_JUDGE_TEMPLATE.to_string(), |t| t.0);
    if let Err(rule) = check_template(&template) {
        return Err(fail(format!("{at}.promptTemplate"), format!("{} {rule}", raw::show_str(&template))));
    }
    let inference = match raw.inference_config {
        None => eval_inference.clone(),
        Some(c) => validate::inference(Some(c.0), &format!("{at}.inferenceConfig"))?,
    };
    Ok(Judge { model, template, inference })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{exit_code, render};
    use serde_json::{json, Value};

    const ORIGIN: &str = "recipes/bad-eval.json";

    fn minimal() -> Value {
        json!({"recipeConfig": {"type": "evaluate", "evaluationConfig": {
            "evaluationType": "single_model",
            "modelIdentifier": {"modelName": "SmolLM2-135M-Instruct"},
            "dataset": {"datasetId": "dataset_eval_basics"},
            "evaluators": [
                {"name": "exact", "evaluatorType": "exact_match"},
                {"name": "judge", "evaluatorType": "llm_judge", "modelIdentifier": {"modelName": "SmolLM2-135M-Instruct"}}
            ]
        }}})
    }

    /// `minimal()` with `value` at `path` (dot-separated; a number indexes an array).
    fn with(path: &str, value: Value) -> String {
        let mut doc = minimal();
        let mut node = &mut doc;
        let keys: Vec<&str> = path.split('.').collect();
        for (i, key) in keys.iter().enumerate() {
            let last = i + 1 == keys.len();
            node = match (node, key.parse::<usize>()) {
                (Value::Array(items), Ok(index)) => {
                    if last {
                        items[index] = value;
                        break;
                    }
                    &mut items[index]
                }
                (Value::Object(map), _) => {
                    if last {
                        map.insert(key.to_string(), value);
                        break;
                    }
                    map.entry(key.to_string()).or_insert_with(|| json!({}))
                }
                _ => panic!("{path} crosses a scalar"),
            };
        }
        doc.to_string()
    }

    fn error(text: &str) -> String {
        match EvalRecipe::from_json_str(text, ORIGIN) {
            Ok(r) => panic!("accepted: {text}\n{r:?}"),
            Err(err) => {
                assert_eq!(exit_code(&err), 2, "{err:#}");
                render(&err)
            }
        }
    }

    fn assert_error(text: &str, path: &str, value: &str) {
        let got = error(text);
        let first = got.lines().next().unwrap_or("");
        assert!(first.starts_with(&format!("error: {ORIGIN}: {path}: ")), "expected path `{path}` in: {got}");
        assert!(first.contains(value), "expected `{value}` in: {got}");
    }

    const E: &str = "recipeConfig.evaluationConfig";

    #[test]
    fn minimal_recipe_gets_defaults() {
        let r = EvalRecipe::from_json_str(&minimal().to_string(), ORIGIN).unwrap();
        assert_eq!(r.model.model_name, "SmolLM2-135M-Instruct");
        assert_eq!(r.inference, InferenceSettings::default());
        assert_eq!(r.dataset_id, "dataset_eval_basics");
        assert!(!r.generate_failure_modes);
        assert_eq!(r.evaluators.len(), 2);
        assert!(matches!(r.evaluators[0].kind, EvaluatorKind::ExactMatch(m) if m == TextMatch::default()));
        let EvaluatorKind::LlmJudge(judge) = &r.evaluators[1].kind else { panic!() };
        assert_eq!(judge.template, DEFAULT_JUDGE_TEMPLATE);
        assert_eq!(judge.inference, r.inference);
    }

    #[test]
    fn bundled_recipe_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/evaluation.json");
        assert!(is_evaluation_text(&std::fs::read_to_string(&path).unwrap()));
        let r = EvalRecipe::from_path(&path).unwrap_or_else(|e| panic!("{}", render(&e)));
        assert!(r.generate_failure_modes);
        let types: Vec<&str> = r.evaluators.iter().map(|e| e.kind.type_name()).collect();
        for t in ["exact_match", "contains", "regex", "numeric_match", "llm_judge"] {
            assert!(types.contains(&t), "{t} missing from {types:?}");
        }
        assert!(!is_evaluation_text(
            &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/quickstart.json")).unwrap()
        ));
    }

    #[test]
    fn bad_recipes_name_the_json_path_and_value() {
        let cases: Vec<(String, String, &str)> = vec![
            (with("recipeConfig.type", json!("train")), "recipeConfig.type".into(), "train"),
            (with(&format!("{E}.evaluationType"), json!("pairwise")), format!("{E}.evaluationType"), "pairwise"),
            (
                with(&format!("{E}.modelIdentifier.modelName"), json!("")),
                format!("{E}.modelIdentifier.modelName"),
                "\"\"",
            ),
            (
                with(&format!("{E}.inferenceConfig.inferenceTemperature"), json!(-1)),
                format!("{E}.inferenceConfig.inferenceTemperature"),
                "-1",
            ),
            (with(&format!("{E}.dataset.datasetId"), json!("../x")), format!("{E}.dataset.datasetId"), "../x"),
            (with(&format!("{E}.dataset.split"), json!("test")), format!("{E}.dataset.split"), "unknown field"),
            (with(&format!("{E}.evaluators"), json!([])), format!("{E}.evaluators"), "at least one"),
            (
                with(&format!("{E}.evaluators.0.evaluatorType"), json!("bleu")),
                format!("{E}.evaluators[0].evaluatorType"),
                "bleu",
            ),
            (with(&format!("{E}.evaluators.0.name"), json!("judge")), format!("{E}.evaluators[1].name"), "unique"),
            (
                with(&format!("{E}.evaluators.0.name"), json!("has space")),
                format!("{E}.evaluators[0].name"),
                "has space",
            ),
            (
                with(&format!("{E}.evaluators.0.pattern"), json!("x")),
                format!("{E}.evaluators[0].pattern"),
                "does not apply to a `exact_match`",
            ),
            (
                with(&format!("{E}.evaluators.0.caseSensitive"), json!("yes")),
                format!("{E}.evaluators[0].caseSensitive"),
                "yes",
            ),
            (with(&format!("{E}.evaluators.0.colour"), json!(1)), format!("{E}.evaluators[0].colour"), "unknown field"),
            (
                with(&format!("{E}.evaluators.0"), json!({"name": "r", "evaluatorType": "regex"})),
                format!("{E}.evaluators[0].pattern"),
                "required",
            ),
            (
                with(
                    &format!("{E}.evaluators.0"),
                    json!({"name": "r", "evaluatorType": "regex", "pattern": "(unclosed"}),
                ),
                format!("{E}.evaluators[0].pattern"),
                "(unclosed",
            ),
            (
                with(
                    &format!("{E}.evaluators.0"),
                    json!({"name": "n", "evaluatorType": "numeric_match", "absoluteTolerance": -0.5}),
                ),
                format!("{E}.evaluators[0].absoluteTolerance"),
                "-0.5",
            ),
            (
                with(&format!("{E}.evaluators.1.modelIdentifier"), json!("SmolLM2")),
                format!("{E}.evaluators[1].modelIdentifier"),
                "expected an object",
            ),
            (
                with(&format!("{E}.evaluators.1"), json!({"name": "j", "evaluatorType": "llm_judge"})),
                format!("{E}.evaluators[1].modelIdentifier"),
                "required",
            ),
            (
                with(&format!("{E}.evaluators.1.promptTemplate"), json!("Grade {answer}")),
                format!("{E}.evaluators[1].promptTemplate"),
                "{answer}",
            ),
            (
                with(&format!("{E}.evaluators.1.promptTemplate"), json!("Grade it")),
                format!("{E}.evaluators[1].promptTemplate"),
                "{output}",
            ),
            (
                with(&format!("{E}.evaluators.1.inferenceConfig.inferenceMaxNewTokens"), json!(0)),
                format!("{E}.evaluators[1].inferenceConfig.inferenceMaxNewTokens"),
                "0",
            ),
            (with(&format!("{E}.generateFailureModes"), json!("true")), format!("{E}.generateFailureModes"), "true"),
        ];
        for (text, path, value) in cases {
            assert_error(&text, &path, value);
        }
    }

    #[test]
    fn missing_fields_and_wrong_shapes() {
        let mut doc = minimal();
        doc["recipeConfig"]["evaluationConfig"].as_object_mut().unwrap().remove("dataset");
        assert_error(&doc.to_string(), &format!("{E}.dataset"), "required field is missing");
        assert_error(
            &with(&format!("{E}.evaluators"), json!({"name": "x"})),
            &format!("{E}.evaluators"),
            "found an object",
        );
        let synthesis = r#"{"modelIdentifier": {"modelName": "x"}, "synthesisConfig": {}}"#;
        assert!(error(synthesis).contains("synth run"));
        assert!(error("[]").contains("hint: an evaluation recipe"));
        assert!(error("{\"recipeConfig\": ").contains("line 1"));
    }

    #[test]
    fn templates_fill_placeholders_and_keep_escaped_braces() {
        assert_eq!(render_template("Q {prompt} R {reference} O {output} {{x}}", "p", "r", "o"), "Q p R r O o {x}");
        // Values are not re-read as templates.
        assert_eq!(render_template("{output}", "p", "r", "{prompt}"), "{prompt}");
        assert!(check_template(DEFAULT_JUDGE_TEMPLATE).is_ok());
        assert!(check_template("{output} {{literal}}").is_ok());
        assert!(check_template("{output").unwrap_err().contains("closing"));
        assert!(check_template("{output} }").unwrap_err().contains("lone"));
    }
}

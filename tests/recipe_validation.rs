//! Recipe validation from the outside: the shipped recipes parse, and bad recipes fail with an
//! `Invalid` error (exit code 2) naming the file, the JSON path and the offending value.

use std::path::Path;

use synth::error::{exit_code, render};
use synth::recipe::{Distribution, Recipe, SynthesisType, DEFAULT_SEED};

/// recipes/general.json, as text, so each bad case is one small edit of a good recipe.
const GENERAL: &str = r#"{
  "modelIdentifier": {
    "modelType": "llm",
    "modelName": "Llama-3.1-8B-Instruct",
    "modelId": "model_llama_8b",
    "modelVersionId": "v1"
  },
  "inferenceConfig": {
    "inferenceTemperature": 0.8,
    "inferenceMaxNewTokens": 512,
    "inferenceSeed": 42,
    "requestsPerMinute": 60
  },
  "synthesisConfig": {
    "synthesisType": "general",
    "synthesisConfig": {
      "datasetId": "dataset_seed_001",
      "datasetDistribution": {
        "train": 0.8,
        "validation": 0.1,
        "test": 0.1
      }
    }
  }
}
"#;

/// GENERAL with one exact piece of text replaced.
fn edit(from: &str, to: &str) -> String {
    assert!(GENERAL.contains(from), "test bug: {from:?} is not in the recipe");
    GENERAL.replacen(from, to, 1)
}

fn recipes_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

#[test]
fn every_shipped_recipe_parses() {
    let mut paths: Vec<_> = std::fs::read_dir(recipes_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        // Evaluation recipes have their own rules (src/evaluation/recipe.rs tests them).
        .filter(|p| !synth::evaluation::recipe::is_evaluation_text(&std::fs::read_to_string(p).unwrap()))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "expected the seed recipes in recipes/, found {paths:?}");
    for path in &paths {
        let recipe = Recipe::from_path(path).unwrap_or_else(|e| panic!("{}", render(&e)));
        let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(recipe.source, original, "{}", path.display());
    }
}

#[test]
fn shipped_recipes_keep_their_values() {
    let general = Recipe::from_path(&recipes_dir().join("general.json")).unwrap();
    assert_eq!(general.model.model_name, "Llama-3.1-8B-Instruct");
    assert_eq!(general.inference.temperature, 0.8);
    assert_eq!(general.inference.requests_per_minute, Some(60.0));
    assert!(general.inference.seed_was_given);
    assert_eq!(general.synthesis.kind, SynthesisType::General);

    let diverse = Recipe::from_path(&recipes_dir().join("high-diversity.json")).unwrap();
    assert_eq!((diverse.inference.seed, diverse.inference.seed_was_given), (DEFAULT_SEED, false));
    assert_eq!(diverse.inference.max_new_tokens, 768);
    assert_eq!(diverse.synthesis.distribution, Distribution { train: 0.85, validation: 0.1, test: 0.05 });

    let failures = Recipe::from_path(&recipes_dir().join("failure-modes.json")).unwrap();
    assert_eq!(failures.synthesis.dataset_id, "dataset_failure_modes_eval_run_47");
    assert_eq!(failures.synthesis.distribution.test, 0.0);
}

#[test]
fn the_general_text_used_below_is_valid() {
    Recipe::from_json_str(GENERAL, "general.json").unwrap();
}

struct Case {
    name: &'static str,
    text: String,
    /// Part of the JSON path the message must name (for whole-document problems, a phrase).
    path: &'static str,
    /// Part of the message naming the offending value and the rule.
    value: &'static str,
}

fn case(name: &'static str, text: impl Into<String>, path: &'static str, value: &'static str) -> Case {
    Case { name, text: text.into(), path, value }
}

#[rustfmt::skip]
fn bad_recipes() -> Vec<Case> {
    const TEMP: &str = "inferenceConfig.inferenceTemperature";
    const TOKENS: &str = "inferenceConfig.inferenceMaxNewTokens";
    const SEED: &str = "inferenceConfig.inferenceSeed";
    const RPM: &str = "inferenceConfig.requestsPerMinute";
    const DIST: &str = "synthesisConfig.synthesisConfig.datasetDistribution";
    const ID: &str = "synthesisConfig.synthesisConfig.datasetId";
    vec![
        case("malformed", edit("\"inferenceSeed\": 42,", "\"inferenceSeed\": 42,,"), "invalid JSON", "(line 11, column"),
        case("missing-comma", edit("\"modelId\": \"model_llama_8b\",", "\"modelId\": \"model_llama_8b\""), "invalid JSON", "line 6"),
        case("truncated", &GENERAL[..GENERAL.len() / 2], "invalid JSON", "the file ends in the middle of"),
        case("trailing", format!("{GENERAL} {{}}"), "invalid JSON", "trailing characters"),
        case("empty", "", "", "the file is empty"),
        case("top-level-array", "[1, 2]", "", "expected an object, found an array"),
        case("top-level-string", "\"recipe\"", "", "expected an object, found string `recipe`"),
        case("unknown-top-level", edit("\"modelIdentifier\"", "\"extraConfig\": {},\n  \"modelIdentifier\""), "extraConfig", "unknown field, expected one of `modelIdentifier`"),
        case("typo-nested", edit("inferenceTemperature", "inferenceTempreature"), "inferenceConfig.inferenceTempreature", "expected one of `inferenceTemperature`"),
        case("typo-split", edit("\"train\"", "\"trian\""), "datasetDistribution.trian", "unknown field"),
        case("section-not-object", edit("\"inferenceConfig\": {", "\"inferenceConfig\": [], \"x\": {"), "inferenceConfig", "expected an object, found an array"),
        case("string-temperature", edit("0.8,", "\"hot\","), TEMP, "found string `hot`"),
        case("infinite-temperature", edit("0.8,", "1e999,"), TEMP, "`1e999` is out of range, must be a finite number"),
        case("negative-temperature", edit("0.8,", "-1,"), TEMP, "`-1` must be between 0 and 2"),
        case("temperature-5", edit("0.8,", "5,"), TEMP, "`5` must be between 0 and 2"),
        case("max-new-tokens-0", edit("512", "0"), TOKENS, "`0` must be between 1 and 131072"),
        case("max-new-tokens-negative", edit("512", "-1"), TOKENS, "`-1` must be a non-negative integer"),
        case("max-new-tokens-fraction", edit("512", "1.5"), TOKENS, "`1.5` must be a non-negative integer"),
        case("max-new-tokens-float", edit("512", "512.0"), TOKENS, "`512.0` must be written as an integer"),
        case("max-new-tokens-huge", edit("512", "1000000"), TOKENS, "`1000000` must be between 1 and 131072"),
        case("max-new-tokens-beyond-u64", edit("512", "99999999999999999999"), TOKENS, "`99999999999999999999` is too large"),
        case("max-new-tokens-exponent", edit("512", "5e2"), TOKENS, "`5e2` must be written as an integer, like `500`"),
        case("negative-seed", edit("\"inferenceSeed\": 42", "\"inferenceSeed\": -42"), SEED, "`-42` must be a non-negative integer"),
        case("string-seed", edit("\"inferenceSeed\": 42", "\"inferenceSeed\": \"42\""), SEED, "found string `42`"),
        case("requests-per-minute-0", edit("60", "0"), RPM, "`0` must be between 0.001 and 1000000 requests per minute"),
        case("requests-per-minute-negative", edit("60", "-10"), RPM, "`-10` must be between 0.001 and 1000000 requests per minute"),
        case("top-p-0", edit("\"requestsPerMinute\": 60", "\"requestsPerMinute\": 60, \"inferenceTopP\": 0"), "inferenceConfig.inferenceTopP", "`0` must be greater than 0 and at most 1"),
        case("top-k-negative", edit("\"requestsPerMinute\": 60", "\"requestsPerMinute\": 60, \"inferenceTopK\": -5"), "inferenceConfig.inferenceTopK", "`-5` must be a non-negative integer"),
        case("thinking-not-bool", edit("\"requestsPerMinute\": 60", "\"requestsPerMinute\": 60, \"enableThinking\": 1"), "inferenceConfig.enableThinking", "expected `true` or `false`, found `1`"),
        case("distribution-sum", edit("\"test\": 0.1", "\"test\": 0.05"), DIST, "train+validation+test = 0.95, must be 1"),
        case("distribution-value-above-1", edit("\"train\": 0.8", "\"train\": 1.5"), "datasetDistribution.train", "`1.5` must be between 0 and 1"),
        case("distribution-negative", edit("\"test\": 0.1", "\"test\": -0.1"), "datasetDistribution.test", "`-0.1` must be between 0 and 1"),
        case("distribution-string", edit("\"test\": 0.1", "\"test\": \"10%\""), "datasetDistribution.test", "found string `10%`"),
        case("unsupported-synthesis-type", edit("\"general\"", "\"evaluate_xyz\""), "synthesisConfig.synthesisType", "`evaluate_xyz` is not supported, supported synthesis types: `general`"),
        case("dataset-id-traversal", edit("dataset_seed_001", "../etc"), ID, "`../etc` is not a valid dataset id"),
        case("dataset-id-slash", edit("dataset_seed_001", "a/b"), ID, "`a/b` is not a valid dataset id"),
        case("dataset-id-empty", edit("dataset_seed_001", ""), ID, "`\"\"` is not a valid dataset id: a dataset id must not be empty"),
        case("dataset-id-missing", edit("\"datasetId\": \"dataset_seed_001\",", ""), ID, "required field is missing"),
        case("model-name-missing", edit("\"modelName\": \"Llama-3.1-8B-Instruct\",", ""), "modelIdentifier.modelName", "required field is missing"),
        case("model-name-empty", edit("Llama-3.1-8B-Instruct", ""), "modelIdentifier.modelName", "must not be empty"),
        case("model-type-vision", edit("\"llm\"", "\"vision\""), "modelIdentifier.modelType", "`vision` is not supported, the only supported model type is `llm`"),
        case("synthesis-config-missing", r#"{"modelIdentifier": {"modelName": "m"}}"#, "synthesisConfig", "required field is missing"),
        case("duplicate-field", edit("\"inferenceSeed\": 42,", "\"inferenceSeed\": 42, \"inferenceSeed\": 43,"), SEED, "field appears more than once"),
    ]
}

#[test]
fn bad_recipes_fail_with_file_path_and_value() {
    let cases = bad_recipes();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in &cases {
        let origin = format!("recipes/{}.json", case.name);
        let err = match Recipe::from_json_str(&case.text, &origin) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Err(err) => err,
        };
        let rendered = render(&err);
        let first = rendered.lines().next().unwrap_or("");
        let ok = exit_code(&err) == 2
            && first.starts_with(&format!("error: {origin}: "))
            && first.contains(case.path)
            && first.contains(case.value)
            && !first.ends_with('.');
        if !ok {
            failures.push(format!(
                "{}: exit code {}, want path {:?} and value {:?} in:\n{rendered}",
                case.name,
                exit_code(&err),
                case.path,
                case.value
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

#[test]
fn path_and_value_follow_the_file_name() {
    let err = Recipe::from_json_str(&edit("0.8,", "-1,"), "recipes/bad.json").unwrap_err();
    assert_eq!(
        render(&err),
        "error: recipes/bad.json: inferenceConfig.inferenceTemperature: `-1` must be between 0 and 2"
    );
}

#[test]
fn from_path_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, edit("\"test\": 0.1", "\"test\": 0.05")).unwrap();
    let err = Recipe::from_path(&path).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    let rendered = render(&err);
    assert!(
        rendered.starts_with(&format!(
            "error: {}: synthesisConfig.synthesisConfig.datasetDistribution: train+validation+test = 0.95, must be 1\n\nhint: ",
            path.display()
        )),
        "{rendered}"
    );
}

use super::*;
use crate::error::{exit_code, render};
use serde_json::{json, Value};

const ORIGIN: &str = "recipes/bad.json";

fn minimal() -> Value {
    json!({
        "modelIdentifier": {"modelName": "Qwen3-0.6B"},
        "synthesisConfig": {"synthesisType": "general", "synthesisConfig": {"datasetId": "seed"}}
    })
}

/// `minimal()` with `value` set at a dotted `path` (created as needed).
fn with(path: &str, value: Value) -> String {
    let mut doc = minimal();
    let mut node = &mut doc;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, key) in keys.iter().enumerate() {
        let Value::Object(map) = node else { panic!("{path} crosses a non-object") };
        if i + 1 == keys.len() {
            map.insert(key.to_string(), value);
            break;
        }
        node = map.entry(key.to_string()).or_insert_with(|| json!({}));
    }
    doc.to_string()
}

fn parse(text: &str) -> anyhow::Result<Recipe> {
    Recipe::from_json_str(text, ORIGIN)
}

/// The rendered error for `text`, after checking that it is an `Invalid` error.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(r) => panic!("accepted: {text}\n{r:?}"),
        Err(err) => {
            assert_eq!(exit_code(&err), 2, "{err:#}");
            render(&err)
        }
    }
}

fn assert_error(text: &str, expected: &str) {
    let got = error(text);
    let first_line = got.lines().next().unwrap_or("");
    assert_eq!(first_line, format!("error: {ORIGIN}: {expected}"), "full error:\n{got}");
}

#[test]
fn minimal_recipe_gets_every_default() {
    let r = parse(&minimal().to_string()).unwrap();
    assert_eq!(r.model.model_type, DEFAULT_MODEL_TYPE);
    assert_eq!(r.model.model_name, "Qwen3-0.6B");
    assert_eq!(r.model.model_id, None);
    assert_eq!(r.model.model_version_id, None);
    assert_eq!(r.inference, InferenceSettings::default());
    assert_eq!(r.inference.temperature, 0.7);
    assert_eq!(r.inference.max_new_tokens, 512);
    assert_eq!(r.inference.seed, 42);
    assert!(!r.inference.seed_was_given);
    assert_eq!(r.inference.requests_per_minute, None);
    assert_eq!(r.inference.top_p, 1.0);
    assert_eq!(r.inference.top_k, 0);
    assert!(!r.inference.enable_thinking);
    assert_eq!(r.synthesis.kind, SynthesisType::General);
    assert_eq!(r.synthesis.dataset_id, "seed");
    assert_eq!(r.synthesis.distribution, Distribution { train: 0.8, validation: 0.1, test: 0.1 });
    assert_eq!(r.synthesis.num_samples, None);
    assert_eq!(r.source, minimal());
}

#[test]
fn num_samples_rules() {
    let p = "synthesisConfig.synthesisConfig.numSamples";
    assert_eq!(parse(&with(p, json!(40))).unwrap().synthesis.num_samples, Some(40));
    assert_eq!(parse(&with(p, Value::Null)).unwrap().synthesis.num_samples, None);
    assert_error(&with(p, json!(0)), &format!("{p}: `0` must be between 1 and 10000000"));
    assert!(error(&with(p, json!(2.5))).contains(&format!("{p}: `2.5` must be a non-negative integer")));
}

#[test]
fn every_field_is_read() {
    let text = r#"{
        "modelIdentifier": {"modelType": "llm", "modelName": "Qwen3-8B", "modelId": "m", "modelVersionId": "v2"},
        "inferenceConfig": {
            "inferenceTemperature": 0, "inferenceMaxNewTokens": 131072, "inferenceSeed": 18446744073709551615,
            "requestsPerMinute": 0.5, "inferenceTopP": 0.9, "inferenceTopK": 40, "enableThinking": true
        },
        "synthesisConfig": {"synthesisType": "general", "synthesisConfig": {
            "datasetId": "d.1", "datasetDistribution": {"train": 0.85, "validation": 0.1, "test": 0.05}}}
    }"#;
    let r = parse(text).unwrap();
    assert_eq!(r.model.model_id.as_deref(), Some("m"));
    assert_eq!(r.model.model_version_id.as_deref(), Some("v2"));
    let i = &r.inference;
    assert_eq!((i.temperature, i.max_new_tokens, i.seed, i.seed_was_given), (0.0, 131072, u64::MAX, true));
    assert_eq!((i.requests_per_minute, i.top_p, i.top_k, i.enable_thinking), (Some(0.5), 0.9, 40, true));
    assert_eq!(r.synthesis.distribution, Distribution { train: 0.85, validation: 0.1, test: 0.05 });
    assert_eq!(r.source.as_object().map(|o| o.keys().next().cloned()), Some(Some("modelIdentifier".into())));
}

#[test]
fn null_means_left_out() {
    let r = parse(&with("inferenceConfig.requestsPerMinute", Value::Null)).unwrap();
    assert_eq!(r.inference.requests_per_minute, None);
    let r = parse(&with("inferenceConfig", Value::Null)).unwrap();
    assert_eq!(r.inference, InferenceSettings::default());
    let r = parse(&with("synthesisConfig.synthesisConfig.datasetDistribution", Value::Null)).unwrap();
    assert_eq!(r.synthesis.distribution, DEFAULT_DISTRIBUTION);
}

#[test]
fn missing_split_is_zero() {
    let r = parse(&with("synthesisConfig.synthesisConfig.datasetDistribution", json!({"train": 1}))).unwrap();
    assert_eq!(r.synthesis.distribution, Distribution { train: 1.0, validation: 0.0, test: 0.0 });
    assert_error(
        &with("synthesisConfig.synthesisConfig.datasetDistribution", json!({})),
        "synthesisConfig.synthesisConfig.datasetDistribution: train+validation+test = 0, must be 1",
    );
}

#[test]
fn distribution_sum_within_tolerance() {
    let ok = json!({"train": 0.7, "validation": 0.2, "test": 0.1 + 5e-7});
    assert!(parse(&with("synthesisConfig.synthesisConfig.datasetDistribution", ok)).is_ok());
    let far = json!({"train": 0.7, "validation": 0.2, "test": 0.1 + 5e-6});
    let got = error(&with("synthesisConfig.synthesisConfig.datasetDistribution", far));
    assert!(got.contains("train+validation+test = 1.000005, must be 1"), "{got}");
    assert!(got.contains("\n\nhint: "), "{got}");
}

#[test]
fn distribution_sum_message() {
    assert_error(
        &with(
            "synthesisConfig.synthesisConfig.datasetDistribution",
            json!({"train": 0.8, "validation": 0.1, "test": 0.05}),
        ),
        "synthesisConfig.synthesisConfig.datasetDistribution: train+validation+test = 0.95, must be 1",
    );
}

#[test]
fn split_out_of_range() {
    for (value, shown) in [(json!(1.5), "1.5"), (json!(-0.1), "-0.1"), (json!(2), "2")] {
        assert_error(
            &with("synthesisConfig.synthesisConfig.datasetDistribution", json!({"train": value, "test": 0})),
            &format!("synthesisConfig.synthesisConfig.datasetDistribution.train: `{shown}` must be between 0 and 1"),
        );
    }
}

#[test]
fn temperature_rules() {
    assert_error(
        &with("inferenceConfig.inferenceTemperature", json!(-1)),
        "inferenceConfig.inferenceTemperature: `-1` must be between 0 and 2",
    );
    assert_error(
        &with("inferenceConfig.inferenceTemperature", json!(5)),
        "inferenceConfig.inferenceTemperature: `5` must be between 0 and 2",
    );
    assert_error(
        &with("inferenceConfig.inferenceTemperature", json!(2.01)),
        "inferenceConfig.inferenceTemperature: `2.01` must be between 0 and 2",
    );
    assert!(parse(&with("inferenceConfig.inferenceTemperature", json!(2))).is_ok());
    assert!(parse(&with("inferenceConfig.inferenceTemperature", json!(0))).is_ok());
    let got = error(&with("inferenceConfig.inferenceTemperature", json!("0.7")));
    assert!(
        got.contains("inferenceConfig.inferenceTemperature: expected a number, found string `0.7` (line 1, column "),
        "{got}"
    );
}

#[test]
fn infinite_numbers_are_rejected() {
    let text = with("inferenceConfig.inferenceTemperature", json!(0.5)).replace("0.5", "1e999");
    let got = error(&text);
    assert!(
        got.contains("inferenceConfig.inferenceTemperature: `1e999` is out of range, must be a finite number"),
        "{got}"
    );
    let text = with("inferenceConfig.requestsPerMinute", json!(0.5)).replace("0.5", "-1e400");
    let got = error(&text);
    assert!(got.contains("inferenceConfig.requestsPerMinute: `-1e400` is out of range"), "{got}");
}

#[test]
fn max_new_tokens_rules() {
    let p = "inferenceConfig.inferenceMaxNewTokens";
    assert_error(&with(p, json!(0)), &format!("{p}: `0` must be between 1 and 131072"));
    assert_error(&with(p, json!(131073)), &format!("{p}: `131073` must be between 1 and 131072"));
    assert!(error(&with(p, json!(-1))).contains(&format!("{p}: `-1` must be a non-negative integer")));
    assert!(error(&with(p, json!(1.5))).contains(&format!("{p}: `1.5` must be a non-negative integer")));
    assert!(error(&with(p, json!(512.0))).contains(&format!("{p}: `512.0` must be written as an integer, like `512`")));
    assert!(error(&with(p, json!(true))).contains(&format!("{p}: expected a non-negative integer, found `true`")));
    assert!(parse(&with(p, json!(1))).is_ok());
}

#[test]
fn seed_rules() {
    let p = "inferenceConfig.inferenceSeed";
    let r = parse(&with(p, json!(0))).unwrap();
    assert_eq!((r.inference.seed, r.inference.seed_was_given), (0, true));
    assert!(error(&with(p, json!(-3))).contains(&format!("{p}: `-3` must be a non-negative integer")));
    let too_big = with(p, json!(1)).replace(":1}", ":18446744073709551616}");
    let got = error(&too_big);
    assert!(
        got.contains(&format!(
            "{p}: `18446744073709551616` is too large, must be an integer from 0 to 18446744073709551615"
        )),
        "{got}"
    );
    assert!(error(&with(p, json!("42"))).contains(&format!("{p}: expected a non-negative integer, found string `42`")));
}

#[test]
fn requests_per_minute_rules() {
    let p = "inferenceConfig.requestsPerMinute";
    let rule = "must be between 0.001 and 1000000 requests per minute";
    let got = error(&with(p, json!(0)));
    assert!(got.starts_with(&format!("error: {ORIGIN}: {p}: `0` {rule}\n\nhint: ")), "{got}");
    assert_error(&with(p, json!(-5.5)), &format!("{p}: `-5.5` {rule}"));
    assert_eq!(parse(&with(p, json!(30))).unwrap().inference.requests_per_minute, Some(30.0));
    for edge in [0.001, 1_000_000.0] {
        assert_eq!(parse(&with(p, json!(edge))).unwrap().inference.requests_per_minute, Some(edge));
    }
}

/// Issue 16: `1e-300` passed validation and then panicked in `Duration::from_secs_f64`.
#[test]
fn requests_per_minute_below_the_minimum_or_above_the_maximum_is_refused() {
    let p = "inferenceConfig.requestsPerMinute";
    let rule = "must be between 0.001 and 1000000 requests per minute";
    for (text, shown) in [
        ("1e-300", "1e-300"),
        ("0.0009", "0.0009"),
        ("5e-324", "5e-324"),
        ("1000000.5", "1000000.5"),
        ("1e300", "1e300"),
    ] {
        let recipe = with(p, json!(0.5)).replace("0.5", text);
        assert_error(&recipe, &format!("{p}: `{shown}` {rule}"));
    }
}

#[test]
fn top_p_and_top_k_rules() {
    let p = "inferenceConfig.inferenceTopP";
    assert_error(&with(p, json!(0)), &format!("{p}: `0` must be greater than 0 and at most 1"));
    assert_error(&with(p, json!(1.1)), &format!("{p}: `1.1` must be greater than 0 and at most 1"));
    assert_eq!(parse(&with(p, json!(1))).unwrap().inference.top_p, 1.0);
    let k = "inferenceConfig.inferenceTopK";
    assert!(error(&with(k, json!(-1))).contains(&format!("{k}: `-1` must be a non-negative integer")));
    assert_eq!(parse(&with(k, json!(0))).unwrap().inference.top_k, 0);
}

#[test]
fn enable_thinking_must_be_a_bool() {
    let p = "inferenceConfig.enableThinking";
    assert!(error(&with(p, json!("yes"))).contains(&format!("{p}: expected `true` or `false`, found string `yes`")));
    assert!(parse(&with(p, json!(false))).is_ok());
}

#[test]
fn model_rules() {
    assert_error(
        &with("modelIdentifier.modelType", json!("vision")),
        "modelIdentifier.modelType: `vision` is not supported, the only supported model type is `llm`",
    );
    assert_error(&with("modelIdentifier.modelName", json!("")), "modelIdentifier.modelName: `\"\"` must not be empty");
    assert_error(
        &with("modelIdentifier.modelName", json!("  ")),
        "modelIdentifier.modelName: `\"  \"` must not be empty",
    );
    let missing = json!({"modelIdentifier": {}, "synthesisConfig": minimal()["synthesisConfig"]}).to_string();
    assert!(error(&missing).contains("modelIdentifier.modelName: required field is missing"));
    let missing = json!({"synthesisConfig": minimal()["synthesisConfig"]}).to_string();
    assert!(error(&missing).contains(&format!("{ORIGIN}: modelIdentifier: required field is missing")));
}

#[test]
fn synthesis_rules() {
    assert_error(
        &with("synthesisConfig.synthesisType", json!("evaluate_xyz")),
        "synthesisConfig.synthesisType: `evaluate_xyz` is not supported, supported synthesis types: `general`",
    );
    let p = "synthesisConfig.synthesisConfig.datasetId";
    assert_error(
        &with(p, json!("../etc")),
        &format!("{p}: `../etc` is not a valid dataset id: a dataset id must not start with `.`"),
    );
    assert!(error(&with(p, json!("a/b"))).contains(&format!("{p}: `a/b` is not a valid dataset id")));
    assert!(error(&with(p, json!("")))
        .contains(&format!("{p}: `\"\"` is not a valid dataset id: a dataset id must not be empty")));
    assert!(error(&with(p, json!(7))).contains(&format!("{p}: expected a string, found `7`")));
}

#[test]
fn unknown_fields_are_named_with_their_path_and_a_suggestion() {
    let got = error(&with("inferenceConfig.inferenceTempreature", json!(0.5)));
    assert!(
        got.starts_with(&format!(
            "error: {ORIGIN}: inferenceConfig.inferenceTempreature: unknown field, expected one of `inferenceTemperature`, `inferenceMaxNewTokens`, `inferenceSeed`, `requestsPerMinute`, `inferenceTopP`, `inferenceTopK`, `enableThinking` (line 1, column"
        )),
        "{got}"
    );
    assert!(got.ends_with("\n\nhint: did you mean `inferenceTemperature`?"), "{got}");
    let got = error(&with("extra", json!(1)));
    assert!(
        got.contains(": extra: unknown field, expected one of `modelIdentifier`, `inferenceConfig`, `synthesisConfig`"),
        "{got}"
    );
    assert!(!got.contains("did you mean"), "{got}");
    let got = error(&with("synthesisConfig.synthesisConfig.datasetDistribution.trian", json!(1)));
    assert!(got.contains("synthesisConfig.synthesisConfig.datasetDistribution.trian: unknown field, expected one of `train`, `validation`, `test`"), "{got}");
    assert!(got.contains("did you mean `train`?"), "{got}");
}

#[test]
fn objects_must_be_objects() {
    assert!(error("[]")
        .contains(&format!("{ORIGIN}: expected an object, found an array (line 1, column 1)\n\nhint: a recipe is")));
    assert!(error(&with("inferenceConfig", json!([0.7, 512])))
        .contains("inferenceConfig: expected an object, found an array"));
    assert!(
        error(&with("inferenceConfig", json!(5))).contains("inferenceConfig: expected an object, found integer `5`")
    );
    assert!(error("null").contains(&format!("{ORIGIN}: expected an object, found null")));
}

#[test]
fn duplicate_fields_are_rejected() {
    let text = r#"{"modelIdentifier": {"modelName": "a", "modelName": "b"}}"#;
    assert!(error(text).contains("modelIdentifier.modelName: field appears more than once"), "{}", error(text));
}

#[test]
fn syntax_errors_give_line_and_column() {
    let got = error("{\n  \"modelIdentifier\": {\n    \"modelName\": \"x\",,\n");
    assert!(got.starts_with(&format!("error: {ORIGIN}: invalid JSON: ")), "{got}");
    assert!(got.contains("(line 3, column 22)"), "{got}");
    let got = error("{\"modelIdentifier\": {");
    assert!(got.contains("invalid JSON: the file ends in the middle of an object (line 1, column 21)"), "{got}");
    let got = error(&format!("{} x", minimal()));
    assert!(got.contains("invalid JSON: trailing characters"), "{got}");
}

#[test]
fn empty_and_odd_inputs_never_panic() {
    assert!(error("").contains(&format!("{ORIGIN}: the file is empty")));
    assert!(error(" \n\t").contains("the file is empty"));
    for text in
        ["\u{feff}", "{", "}", "\"", "0", "-", "1e999", "[[[[", "{\"modelIdentifier\":", "\u{0}", "{\"a\\ud800\":1}"]
    {
        let _ = error(text);
    }
    let deep = "[".repeat(100_000);
    let _ = error(&deep);
    let deep = format!("{}{}", "{\"modelIdentifier\":".repeat(10_000), "1");
    let _ = error(&deep);
}

#[test]
fn byte_order_mark_is_ignored() {
    assert!(parse(&format!("\u{feff}{}", minimal())).is_ok());
}

#[test]
fn from_path_prefixes_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    std::fs::write(&path, with("inferenceConfig.inferenceTemperature", json!(9))).unwrap();
    let err = Recipe::from_path(&path).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    assert!(render(&err).starts_with(&format!("error: {}: inferenceConfig.inferenceTemperature: `9`", path.display())));

    let err = Recipe::from_path(&dir.path().join("missing.json")).unwrap_err();
    assert_eq!(exit_code(&err), 3);
    assert!(render(&err).contains("missing.json: no such file"));

    std::fs::write(&path, b"{\"a\": \"\xff\"}").unwrap();
    let err = Recipe::from_path(&path).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    assert!(render(&err).contains("not valid UTF-8"));
}

#[test]
fn curation_rules() {
    use crate::curation::settings::{Gate, DEFAULT_NEAR_DUPLICATE_THRESHOLD};
    let p = "synthesisConfig.synthesisConfig.curation";
    assert_eq!(parse(&minimal().to_string()).unwrap().synthesis.curation, CurationSettings::default());
    let c = parse(&with(
        p,
        json!({"filters": {"refusal": false, "seedCopy": true}, "nearDuplicateThreshold": 0.7, "exclude": ["eval_a", "eval_a", "b"]}),
    ))
    .unwrap()
    .synthesis
    .curation;
    assert_eq!(c.off, [Gate::Refusal].into());
    assert_eq!(c.near_duplicate_threshold, 0.7);
    assert_eq!(c.exclude, ["eval_a", "b"]);
    let c = parse(&with(p, json!({}))).unwrap().synthesis.curation;
    assert_eq!(c.near_duplicate_threshold, DEFAULT_NEAR_DUPLICATE_THRESHOLD);

    let typo = error(&with(p, json!({"filters": {"refusals": false}})));
    assert!(typo.contains(&format!("{p}.filters.refusals: `refusals` is not a filter, filters: `tooShort`")), "{typo}");
    assert!(typo.contains("did you mean `refusal`?"), "{typo}");
    assert_error(
        &with(p, json!({"filters": {"excluded": false}})),
        &format!("{p}.filters.excluded: `excluded` is not a filter, filters: `tooShort`, `instructionEcho`, `assistantVoice`, `notARequest`, `answerInRequest`, `refusal`, `repetition`, `otherLanguage`, `seedCopy`, `judge`, `exactDuplicate`, `nearDuplicate`"),
    );
    let wrong_type = error(&with(p, json!({"filters": {"refusal": "off"}})));
    assert!(wrong_type.contains(&format!("{p}.filters.refusal: expected `true` or `false`, found string `off`")));
    assert_error(
        &with(p, json!({"nearDuplicateThreshold": 0})),
        &format!("{p}.nearDuplicateThreshold: `0` must be more than 0 and at most 1"),
    );
    assert_error(
        &with(p, json!({"nearDuplicateThreshold": 1.5})),
        &format!("{p}.nearDuplicateThreshold: `1.5` must be more than 0 and at most 1"),
    );
    assert!(error(&with(p, json!({"exclude": ["ok", "../up"]})))
        .contains(&format!("{p}.exclude[1]: `../up` is not a valid dataset id")));
    assert!(error(&with(p, json!({"threshold": 0.5}))).contains(&format!("{p}.threshold: unknown field")));
}

#[test]
fn judge_gate_rules() {
    use crate::curation::settings::{JudgeSettings, DEFAULT_RUBRIC};
    let p = "synthesisConfig.synthesisConfig.curation";
    let judge = |value: serde_json::Value| parse(&with(p, value)).unwrap().synthesis.curation.judge;
    assert_eq!(judge(json!({})), None, "off unless asked for");
    assert_eq!(judge(json!({"judge": {}})), Some(JudgeSettings::default()));
    assert_eq!(judge(json!({"filters": {"judge": true}})), Some(JudgeSettings::default()));
    let set = judge(
        json!({"judge": {"modelName": "Qwen3-0.6B", "promptTemplate": "Q: {prompt} A: {output}", "maxNewTokens": 8}}),
    );
    assert_eq!(
        set,
        Some(JudgeSettings {
            model: Some("Qwen3-0.6B".into()),
            template: "Q: {prompt} A: {output}".into(),
            max_new_tokens: 8
        })
    );
    assert!(DEFAULT_RUBRIC.contains("{output}") && DEFAULT_RUBRIC.contains("{prompt}"));
    let off = parse(&with(p, json!({"judge": {}, "filters": {"judge": false}}))).unwrap().synthesis.curation;
    assert!(off.judge().is_none(), "a judge turned off does not run");
    assert!(error(&with(p, json!({"judge": {"promptTemplate": "Grade {prompt}"}})))
        .contains(&format!("{p}.judge.promptTemplate: \"Grade {{prompt}}\" must contain `{{output}}`")));
    assert!(error(&with(p, json!({"judge": {"promptTemplate": "{answer} {output}"}})))
        .contains("has an unknown placeholder `{answer}`"));
    assert!(error(&with(p, json!({"judge": {"maxNewTokens": 0}})))
        .contains(&format!("{p}.judge.maxNewTokens: `0` must be between 1 and 4096")));
    assert!(error(&with(p, json!({"judge": {"modelName": " "}})))
        .contains(&format!("{p}.judge.modelName: `\" \"` must not be empty")));
    assert!(error(&with(p, json!({"judge": {"model": "x"}}))).contains(&format!("{p}.judge.model: unknown field")));
}

//! `synth validate` through the binary: good recipes pass, bad ones exit 2 naming the JSON path.

mod common;

use common::Home;

#[test]
fn every_bundled_recipe_validates() {
    let home = Home::new();
    let mut recipes: Vec<String> =
        std::fs::read_dir("recipes").unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    recipes.sort();
    assert!(recipes.len() >= 4);
    let mut args = vec!["validate"];
    args.extend(recipes.iter().map(String::as_str));
    let out = home.synth(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), recipes.len());
}

/// (case, edit of the quickstart recipe as (from, to), JSON path the error must name, value it must quote)
const BAD: &[(&str, (&str, &str), &str, &str)] = &[
    (
        "negative temperature",
        ("\"inferenceTemperature\": 0.7", "\"inferenceTemperature\": -1"),
        "inferenceConfig.inferenceTemperature",
        "-1",
    ),
    (
        "temperature as string",
        ("\"inferenceTemperature\": 0.7", "\"inferenceTemperature\": \"hot\""),
        "inferenceConfig.inferenceTemperature",
        "hot",
    ),
    (
        "overflowing temperature",
        ("\"inferenceTemperature\": 0.7", "\"inferenceTemperature\": 1e999"),
        "inferenceConfig.inferenceTemperature",
        "1e999",
    ),
    (
        "zero max tokens",
        ("\"inferenceMaxNewTokens\": 256", "\"inferenceMaxNewTokens\": 0"),
        "inferenceConfig.inferenceMaxNewTokens",
        "0",
    ),
    (
        "fractional max tokens",
        ("\"inferenceMaxNewTokens\": 256", "\"inferenceMaxNewTokens\": 2.5"),
        "inferenceConfig.inferenceMaxNewTokens",
        "2.5",
    ),
    (
        "huge max tokens",
        ("\"inferenceMaxNewTokens\": 256", "\"inferenceMaxNewTokens\": 99999999999"),
        "inferenceConfig.inferenceMaxNewTokens",
        "99999999999",
    ),
    ("negative seed", ("\"inferenceSeed\": 42", "\"inferenceSeed\": -42"), "inferenceConfig.inferenceSeed", "-42"),
    (
        "zero rate",
        ("\"requestsPerMinute\": 6000", "\"requestsPerMinute\": 0"),
        "inferenceConfig.requestsPerMinute",
        "0",
    ),
    (
        "unknown inference field",
        ("\"inferenceSeed\": 42", "\"inferenceSeeed\": 42"),
        "inferenceConfig.inferenceSeeed",
        "inferenceSeeed",
    ),
    ("unknown top-level field", ("\"modelIdentifier\": {", "\"extra\": 1, \"modelIdentifier\": {"), "extra", "extra"),
    (
        "distribution sums to 0.95",
        ("\"test\": 0.1", "\"test\": 0.05"),
        "synthesisConfig.synthesisConfig.datasetDistribution",
        "0.95",
    ),
    (
        "split above 1",
        ("\"train\": 0.8", "\"train\": 1.8"),
        "synthesisConfig.synthesisConfig.datasetDistribution.train",
        "1.8",
    ),
    (
        "negative split",
        ("\"validation\": 0.1", "\"validation\": -0.1"),
        "synthesisConfig.synthesisConfig.datasetDistribution.validation",
        "-0.1",
    ),
    (
        "unsupported synthesis type",
        ("\"synthesisType\": \"general\"", "\"synthesisType\": \"magic\""),
        "synthesisConfig.synthesisType",
        "magic",
    ),
    (
        "dataset id with a path",
        ("\"datasetId\": \"dataset_quickstart_seed\"", "\"datasetId\": \"../etc\""),
        "synthesisConfig.synthesisConfig.datasetId",
        "../etc",
    ),
    (
        "empty model name",
        ("\"modelName\": \"SmolLM2-135M-Instruct\"", "\"modelName\": \"\""),
        "modelIdentifier.modelName",
        "\"\"",
    ),
    (
        "unsupported model type",
        ("\"modelType\": \"llm\"", "\"modelType\": \"vision\""),
        "modelIdentifier.modelType",
        "vision",
    ),
];

#[test]
fn bad_recipes_exit_2_and_name_the_json_path_and_value() {
    let home = Home::new();
    let good = std::fs::read_to_string("recipes/quickstart.json").unwrap();
    for (case, (from, to), path, value) in BAD {
        assert!(good.contains(from), "{case}: the quickstart recipe has no `{from}`");
        let file = home.path().join("bad.json");
        std::fs::write(&file, good.replacen(from, to, 1)).unwrap();
        let out = home.synth(&["validate", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {err}");
        assert!(
            err.contains("bad.json") && err.contains(path) && err.contains(value),
            "{case}: expected path `{path}` and value `{value}` in: {err}"
        );
    }
}

#[test]
fn malformed_and_missing_files() {
    let home = Home::new();
    let file = home.path().join("broken.json");
    std::fs::write(&file, "{\n  \"modelIdentifier\": {\n").unwrap();
    let out = home.synth(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = home.synth(&["validate", "no/such/recipe.json"]);
    assert_eq!(out.status.code(), Some(3));
}

/// The curation extension and `synth run`'s curation flags: a typo names the JSON path or flag,
/// the value and the filters there are, before any model is loaded.
#[test]
fn curation_settings_are_checked_in_the_recipe_and_on_the_command_line() {
    let home = Home::new();
    let good = std::fs::read_to_string("recipes/quickstart.json").unwrap();
    let with_curation = good.replacen(
        "\"datasetId\": \"dataset_quickstart_seed\",",
        "\"datasetId\": \"dataset_quickstart_seed\", \"curation\": {\"filters\": {\"refusals\": false}},",
        1,
    );
    let file = home.path().join("curated.json");
    std::fs::write(&file, with_curation).unwrap();
    let out = home.synth(&["validate", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("synthesisConfig.synthesisConfig.curation.filters.refusals: `refusals` is not a filter"),
        "{err}"
    );
    assert!(err.contains("did you mean `refusal`?"), "{err}");

    for (flag, value, rule) in [
        ("--filter", "refusals=off", "`refusals` is not a filter; filters: all, tooShort, instructionEcho"),
        ("--filter", "refusal=no", "`no` must be `on` or `off`"),
        ("--dedup-threshold", "0", "must be more than 0 and at most 1"),
        ("--exclude", "../up", "../up"),
    ] {
        let out = home.synth(&["run", "recipes/quickstart.json", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(rule), "{flag} {value}: {err}");
    }
}

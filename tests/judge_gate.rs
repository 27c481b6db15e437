//! The judge gate on the real SmolLM2-135M-Instruct GGUF: every row that passes the other
//! gates is graded by a judge model, and the output stays the same bytes at any `--max-batch`.
//! Once with the run's own model as the judge (one engine), once with another file as the
//! judge (its own engine, a second lane of the stream).

mod common;

use common::{stderr, Home};

use serde_json::{json, Value};

/// The quickstart recipe with `curation` set to `curation`.
fn recipe(home: &Home, curation: Value) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/quickstart.json")).unwrap();
    let mut recipe: Value = serde_json::from_str(&text).unwrap();
    recipe["synthesisConfig"]["synthesisConfig"]["curation"] = curation;
    let path = home.path().join("recipe.json");
    std::fs::write(&path, recipe.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn manifest(home: &Home, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(home.path().join("datasets").join(id).join("manifest.json")).unwrap())
        .unwrap()
}

fn splits(home: &Home, id: &str) -> Vec<Vec<u8>> {
    ["train", "validation", "test"]
        .iter()
        .map(|s| std::fs::read(home.path().join("datasets").join(id).join(format!("{s}.jsonl"))).unwrap_or_default())
        .collect()
}

/// Runs `recipe` at `--max-batch 1` and `16`: both publish the same bytes; returns the manifest.
fn run_twice(home: &Home, recipe: &str, extra: &[&str]) -> Value {
    for (id, batch) in [("one", "1"), ("many", "16")] {
        let args = [&["--device", "cpu", "--quiet", "run", recipe, "--output-id", id, "--max-batch", batch][..], extra]
            .concat();
        let out = home.synth(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(splits(home, "one"), splits(home, "many"), "--max-batch 1 and 16 publish the same rows");
    manifest(home, "many")
}

/// Every row reached the judge, and the judge's drops are counted: what it graded is what it
/// passed (the published rows and the rows a later duplicate check dropped) plus what it failed.
fn check_judged(manifest: &Value, judge_model: &str) {
    let curation = &manifest["curation"];
    assert_eq!(curation["judge"]["model"], judge_model, "{curation}");
    assert_eq!(curation["gates"]["judge"], true);
    let judged = curation["checked"]["judged"].as_u64().unwrap();
    let dropped = |gate: &str| curation["droppedBy"][gate].as_u64().unwrap_or(0);
    let failed = dropped("judge") + dropped("judgeUnparseable");
    let rows = manifest["counts"]["rows"].as_u64().unwrap();
    assert!(judged >= 1, "some row reached the judge: {curation}");
    assert_eq!(judged, rows + failed + dropped("exactDuplicate") + dropped("nearDuplicate"), "{manifest}");
}

#[test]
fn the_runs_own_model_judges_in_its_engine() {
    let home = Home::with_quickstart_seed();
    let recipe = recipe(&home, json!({}));
    let manifest = run_twice(&home, &recipe, &["--filter", "judge=on"]);
    check_judged(&manifest, "SmolLM2-135M-Instruct");
}

#[test]
fn another_model_judges_in_an_engine_of_its_own() {
    // The run's model is the registry's SmolLM2 (the bundled Q4_1 file, candle's bits, so its
    // candidates do not move when the K-quant kernels change); the judge is SmolLM2 requantized to
    // Q8_0 (scripts/kquant-models.sh), a registry entry of the test's own, so another model file.
    let kquant = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/kquant");
    let q8 = kquant.join("SmolLM2-135M-Instruct.Q8_0.gguf");
    assert!(q8.exists(), "{} is missing: run scripts/kquant-models.sh --smollm2-only", q8.display());
    let home = Home::with_quickstart_seed();
    let entry = json!({
        "name": "SmolLM2-Q8", "hfRepo": "local/smollm2-q8", "architecture": "llama", "format": "gguf",
        "files": ["SmolLM2-135M-Instruct.Q8_0.gguf"], "localPath": kquant.to_str().unwrap(),
        "chatTemplate": "gguf", "stopTokens": ["<|im_end|>"], "contextLength": 8192
    });
    std::fs::write(home.path().join("models/smollm2-q8.json"), entry.to_string()).unwrap();
    let recipe = recipe(&home, json!({"judge": {"modelName": "SmolLM2-Q8"}}));
    let manifest = run_twice(&home, &recipe, &[]);
    check_judged(&manifest, "SmolLM2-Q8");
    assert!(manifest["model"]["source"].as_str().unwrap().ends_with("Q4_1.gguf"), "{}", manifest["model"]);
}

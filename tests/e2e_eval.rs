//! Evaluate → synthesize, end to end on the real SmolLM2-135M-Instruct GGUF through the binary:
//! `synth eval` writes a run and a failure-mode dataset, and the seed document's failure-mode
//! recipe, pointed at that dataset, synthesizes a split dataset that links back to the run.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{stderr, Home};
use serde_json::Value;
use synth::output::splits::split_sizes;

const ROWS: usize = 12;
const EVALUATORS: [&str; 5] = ["numeric", "contains", "judge", "short_answer", "exact"];

fn json_file(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn jsonl(path: PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn home_with_eval_set() -> Home {
    let home = Home::new();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/eval_basics.jsonl");
    let out = home.synth(&["datasets", "import", data.to_str().unwrap(), "--id", "dataset_eval_basics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    home
}

#[test]
fn eval_makes_failure_modes_and_the_failure_mode_recipe_targets_them() {
    let home = home_with_eval_set();
    let limit = ROWS.to_string();
    let out = home.synth(&["--device", "cpu", "--quiet", "eval", "recipes/evaluation.json", "--limit", &limit]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids, ["eval_run_1", "dataset_failure_modes_eval_run_1"], "{}", stderr(&out));

    // The run: one result per row, every evaluator's verdict on each, counts that add up.
    let run = home.path().join("evals/eval_run_1");
    let summary = json_file(run.join("summary.json"));
    let results = jsonl(run.join("results.jsonl"));
    assert_eq!(results.len(), ROWS);
    assert_eq!(summary["rows"], ROWS);
    let mut failed_rows = Vec::new();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["row"], i);
        assert!(!r["reference"].as_str().unwrap().is_empty());
        assert!(["stop", "length"].contains(&r["finishReason"].as_str().unwrap()), "{r}");
        let evaluations = r["evaluations"].as_object().unwrap();
        assert_eq!(evaluations.keys().map(String::as_str).collect::<Vec<_>>(), EVALUATORS);
        let mut any_fail = false;
        for e in evaluations.values() {
            let verdict = e["verdict"].as_str().unwrap();
            assert!(["pass", "fail", "unparseable", "skipped"].contains(&verdict), "{e}");
            assert!(e["rationale"].is_string(), "{e}");
            any_fail |= verdict == "fail";
        }
        assert!(evaluations["judge"]["judgeReply"].is_string());
        assert_eq!(r["passed"], !any_fail);
        if any_fail {
            failed_rows.push(i);
        }
    }
    for e in summary["evaluators"].as_array().unwrap() {
        let n = |k: &str| e[k].as_u64().unwrap() as usize;
        assert_eq!(n("pass") + n("fail") + n("unparseable") + n("skipped"), ROWS, "{e}");
    }
    assert_eq!(summary["failedRows"], failed_rows.len());
    assert!(summary["tokens"]["generated"].as_u64().unwrap() > 0);
    assert!(summary["tokens"]["judgeGenerated"].as_u64().unwrap() > 0);
    assert_eq!(summary["model"]["files"][0]["sha256"].as_str().unwrap().len(), 64);
    // SmolLM2-135M never answers with the number or city alone, so exact match fails rows.
    assert!(!failed_rows.is_empty(), "{summary}");

    // The failure-mode dataset: one labelled row per failed example; the counts add up.
    let dataset_id = "dataset_failure_modes_eval_run_1";
    let dataset = home.path().join("datasets").join(dataset_id);
    let manifest = json_file(dataset.join("manifest.json"));
    assert_eq!(manifest["kind"], "failure_modes");
    assert_eq!(manifest["evalRun"], "eval_run_1");
    let rows = jsonl(dataset.join("train.jsonl"));
    assert_eq!(rows.len(), failed_rows.len());
    assert_eq!(manifest["splits"]["train"]["rows"], rows.len());
    let modes: BTreeMap<String, u64> = manifest["failureModes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["label"].as_str().unwrap().to_string(), m["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(modes.values().sum::<u64>() as usize, rows.len(), "{manifest}");
    for m in manifest["failureModes"].as_array().unwrap() {
        assert!(!m["description"].as_str().unwrap().is_empty(), "{m}");
    }
    let mut per_label: BTreeMap<String, u64> = BTreeMap::new();
    for (row, &source) in rows.iter().zip(&failed_rows) {
        let meta = &row["metadata"];
        let label = meta["failureMode"].as_str().unwrap();
        assert!(modes.contains_key(label), "{label} is not among {modes:?}");
        let evaluator = meta["evaluator"].as_str().unwrap();
        assert!(label.starts_with(&format!("{evaluator}/")), "{label} vs {evaluator}");
        *per_label.entry(label.to_string()).or_default() += 1;
        assert_eq!(meta["evalRun"], "eval_run_1");
        assert_eq!(meta["row"], source);
        assert_eq!(results[source]["evaluations"][evaluator]["verdict"], "fail");
        assert_eq!(meta["modelOutput"], results[source]["output"]);
        let messages = row["messages"].as_array().unwrap();
        assert_eq!(messages.last().unwrap()["role"], "assistant");
        assert_eq!(messages.last().unwrap()["content"], meta["reference"]);
        assert_eq!(meta["reference"], results[source]["reference"]);
    }
    assert_eq!(per_label, modes);

    let out = home.synth(&["eval", "show", "eval_run_1", "--worst", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("eval run `eval_run_1`") && shown.contains("worst rows (2 of") && shown.contains(dataset_id),
        "{shown}"
    );

    // Runs are never overwritten.
    let out = home.synth(&["--device", "cpu", "eval", "recipes/evaluation.json", "--run-id", "eval_run_1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // The seed document's failure-mode recipe, pointed at the produced dataset, run on SmolLM2.
    let recipe = std::fs::read_to_string("recipes/failure-modes.json").unwrap();
    assert!(recipe.contains("dataset_failure_modes_eval_run_47"));
    let recipe = recipe
        .replace("dataset_failure_modes_eval_run_47", dataset_id)
        .replace("Llama-3.1-8B-Instruct", "SmolLM2-135M-Instruct")
        .replace("\"inferenceMaxNewTokens\": 512", "\"inferenceMaxNewTokens\": 160")
        .replace("\"requestsPerMinute\": 60", "\"requestsPerMinute\": 6000");
    let recipe_path = home.path().join("failure-modes.json");
    std::fs::write(&recipe_path, recipe).unwrap();
    let out =
        home.synth(&["--device", "cpu", "--quiet", "run", recipe_path.to_str().unwrap(), "--output-id", "targeted"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "targeted");

    let synthesized = home.path().join("datasets/targeted");
    let manifest = json_file(synthesized.join("manifest.json"));
    assert_eq!(manifest["evalRun"], "eval_run_1");
    assert_eq!(manifest["failureModesDataset"], dataset_id);
    let kept = manifest["counts"]["rows"].as_u64().unwrap() as usize;
    let dropped = manifest["counts"]["dropped"].as_u64().unwrap() as usize;
    assert_eq!(kept + dropped, rows.len(), "one new example per failed row, kept or counted as dropped: {manifest}");
    assert!(kept > 0, "{manifest}");
    let per_mode: u64 =
        manifest["failureModes"].as_array().unwrap().iter().map(|m| m["seedRows"].as_u64().unwrap()).sum();
    assert_eq!(per_mode as usize, rows.len());
    let expected = split_sizes(kept, [0.9, 0.1, 0.0]);
    let mut total = 0;
    for (split, want) in ["train", "validation", "test"].iter().zip(expected) {
        assert_eq!(manifest["splits"][split]["rows"].as_u64().unwrap() as usize, want, "{split}");
        let lines = jsonl(synthesized.join(format!("{split}.jsonl")));
        assert_eq!(lines.len(), want, "{split}");
        for row in lines {
            let messages = row["messages"].as_array().unwrap();
            let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
            assert_eq!(roles, ["user", "assistant"], "{row}");
            for m in messages {
                assert!(!m["content"].as_str().unwrap().trim().is_empty(), "{row}");
            }
            let meta = &row["metadata"];
            assert!(modes.contains_key(meta["failureMode"].as_str().unwrap()), "{row}");
            assert!((meta["seedRow"].as_u64().unwrap() as usize) < rows.len());
            assert_eq!(meta["evalRun"], "eval_run_1");
            assert_eq!(meta["seedDataset"], dataset_id);
            total += 1;
        }
    }
    assert_eq!(total, kept);
    assert_eq!(manifest["splits"]["test"]["rows"], 0);
}

#[test]
fn bad_eval_recipes_exit_2_naming_the_json_path() {
    let home = home_with_eval_set();
    let good = std::fs::read_to_string("recipes/evaluation.json").unwrap();
    let cases = [
        (
            "\"absoluteTolerance\": 0.01",
            "\"absoluteTolerance\": -1",
            "recipeConfig.evaluationConfig.evaluators[0].absoluteTolerance",
            "-1",
        ),
        (
            "\"evaluatorType\": \"contains\"",
            "\"evaluatorType\": \"bleu\"",
            "recipeConfig.evaluationConfig.evaluators[1].evaluatorType",
            "bleu",
        ),
        (
            "\"evaluationType\": \"single_model\"",
            "\"evaluationType\": \"pairwise\"",
            "recipeConfig.evaluationConfig.evaluationType",
            "pairwise",
        ),
        (
            "\"generateFailureModes\": true",
            "\"generateFailureModes\": 1",
            "recipeConfig.evaluationConfig.generateFailureModes",
            "1",
        ),
    ];
    for (from, to, path, value) in cases {
        assert!(good.contains(from), "{from}");
        let file = home.path().join("bad-eval.json");
        std::fs::write(&file, good.replacen(from, to, 1)).unwrap();
        for args in [vec!["validate", file.to_str().unwrap()], vec!["--device", "cpu", "eval", file.to_str().unwrap()]]
        {
            let out = home.synth(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("bad-eval.json") && err.contains(path) && err.contains(value),
                "{args:?}: expected `{path}` and `{value}` in {err}"
            );
        }
    }
    // A synthesis recipe given to `synth eval`, and the other way round, say which command to use.
    let out = home.synth(&["eval", "recipes/quickstart.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("synth run"), "{}", stderr(&out));
    let out = home.synth(&["run", "recipes/evaluation.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("synth eval"), "{}", stderr(&out));

    let out = home.synth(&["eval", "show", "eval_run_9"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    // Nothing was written by the failed commands.
    assert!(!home.path().join("evals").exists());
}

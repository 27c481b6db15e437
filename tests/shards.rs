//! Scaling a run out, on the real SmolLM2-135M-Instruct GGUF: `synth run --shard I/N` and
//! `synth datasets merge` (three shards merged publish the bytes of one process; the merge
//! refuses what is not one run's complete set of shards), and `--engines 2` (two engines in
//! one process publish the bytes of one).

mod common;

use common::{fails, stderr, Home};

use serde_json::{json, Value};

/// The quickstart recipe with short sampled generations and `seed`, written into the home.
fn recipe(home: &Home, seed: u64) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/quickstart.json")).unwrap();
    let mut recipe: Value = serde_json::from_str(&text).unwrap();
    recipe["inferenceConfig"] =
        json!({"inferenceTemperature": 0.5, "inferenceMaxNewTokens": 40, "inferenceSeed": seed});
    let path = home.path().join(format!("recipe_{seed}.json"));
    std::fs::write(&path, recipe.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn run(home: &Home, recipe: &str, extra: &[&str]) -> std::process::Output {
    // The curation gates off: SmolLM2-135M's requests rarely pass them, and this is about
    // sharding (a duplicate across two shards' seed rows is the one thing a merge cannot redo).
    let mut args =
        vec!["--device", "cpu", "--quiet", "run", recipe, "--filter", "all=off", "--limit", "6", "--num-samples", "9"];
    args.extend_from_slice(extra);
    home.synth(&args)
}

fn split(home: &Home, id: &str, name: &str) -> Vec<u8> {
    std::fs::read(home.path().join("datasets").join(id).join(format!("{name}.jsonl"))).unwrap()
}

#[test]
fn three_shards_merge_into_the_bytes_of_one_process() {
    let home = Home::with_quickstart_seed();
    let recipe = recipe(&home, 42);
    let out = run(&home, &recipe, &["--output-id", "whole"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for shard in ["0/3", "1/3", "2/3"] {
        let out = run(&home, &recipe, &["--shard", shard, "--output-id", "big"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let shard_rows: usize = (0..3)
        .map(|i| split(&home, &format!("big.shard-{i}-of-3"), "train").iter().filter(|&&b| b == b'\n').count())
        .sum();
    let out = home.synth(&["datasets", "merge", "big", "--shards", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "big");
    let mut merged_rows = 0;
    for name in ["train", "validation", "test"] {
        let merged = split(&home, "big", name);
        assert_eq!(merged, split(&home, "whole", name), "{name}.jsonl differs from the single process's");
        merged_rows += merged.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(merged_rows, shard_rows);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("datasets/big/manifest.json")).unwrap()).unwrap();
    let whole: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("datasets/whole/manifest.json")).unwrap()).unwrap();
    for key in ["rows", "dropped", "candidates", "droppedBy"] {
        assert_eq!(manifest["counts"][key], whole["counts"][key], "counts.{key}");
    }
    assert_eq!(manifest["tokens"]["generated"], whole["tokens"]["generated"]);
    assert_eq!(manifest["diversity"], whole["diversity"]);
    assert!(manifest.get("shard").is_none() && manifest["kind"] == "synthesized", "{manifest}");

    let out = run(&home, &recipe, &["--engines", "2", "--max-batch", "4", "--output-id", "two"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["train", "validation", "test"] {
        assert_eq!(split(&home, "two", name), split(&home, "whole", name), "{name}.jsonl at --engines 2");
    }
}

#[test]
fn merge_refuses_missing_and_mixed_shards() {
    let home = Home::with_quickstart_seed();
    let (first, second) = (recipe(&home, 1), recipe(&home, 2));
    let out = run(&home, &first, &["--shard", "0/2", "--output-id", "mix"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.synth(&["datasets", "merge", "mix", "--shards", "2"]);
    fails(&out, 3, &["1 of its 2 shards are not published", "`mix.shard-1-of-2`", "--shard I/2 --output-id mix"]);
    let out = run(&home, &second, &["--shard", "1/2", "--output-id", "mix"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.synth(&["datasets", "merge", "mix", "--shards", "2"]);
    fails(&out, 2, &["`mix.shard-0-of-2` and `mix.shard-1-of-2` were made by different runs (their recipes differ)"]);
    assert!(!home.path().join("datasets/mix").exists(), "nothing is published");
    let out = run(&home, &first, &["--shard", "0/2"]);
    fails(&out, 2, &["`--shard 0/2` needs `--output-id`"]);
    let out = run(&home, &first, &["--shard", "2/2", "--output-id", "x"]);
    fails(&out, 2, &["I must be less than N"]);
}

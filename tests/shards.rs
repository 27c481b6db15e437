//! Scaling a run out, on the real SmolLM2-135M-Instruct GGUF: `synth run --shard I/N` and
//! `synth datasets merge` (three shards merged publish the bytes of one process; the merge
//! refuses what is not one run's complete set of shards; a shard run again once published is
//! done), and `--engines 2` (two engines in
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
    let dropped = |id: &str| std::fs::read(home.path().join("datasets").join(id).join("dropped.jsonl")).ok();
    assert_eq!(dropped("big"), dropped("whole"), "dropped.jsonl");
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
    // A shard run again once published (a Slurm task requeued after it finished) is done, and
    // changes nothing; another run's shard under that id is refused.
    let before = split(&home, "mix.shard-0-of-2", "train");
    let again = ["--device", "cpu", "run", &first, "--filter", "all=off", "--limit", "6", "--num-samples", "9"];
    let out = home.synth(&[&again[..], &["--shard", "0/2", "--output-id", "mix"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("shard `mix.shard-0-of-2` is already published by this same run"),
        "{}",
        stderr(&out)
    );
    assert_eq!(split(&home, "mix.shard-0-of-2", "train"), before);
    let out = run(&home, &second, &["--shard", "0/2", "--output-id", "mix"]);
    fails(&out, 2, &["dataset `mix.shard-0-of-2` already exists, made by another run", "--overwrite"]);
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

/// Seed rows 0 and 3 are the same conversation, and shards 0/2 and 1/2 hold one each: greedy,
/// their requests are the same, and only a check over the whole run's rows can see it. The
/// merge drops the later one exactly as a single process does.
#[test]
fn a_duplicate_across_shards_is_dropped_alike_sharded_or_not() {
    let home = Home::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/quickstart_seed.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().take(3).collect();
    let seed = home.path().join("seed.jsonl");
    std::fs::write(&seed, format!("{}\n{}\n", lines.join("\n"), lines[0])).unwrap();
    let out = home.synth(&["datasets", "import", seed.to_str().unwrap(), "--id", "dataset_quickstart_seed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recipe = recipe(&home, 42);
    let mut greedy: Value = serde_json::from_str(&std::fs::read_to_string(&recipe).unwrap()).unwrap();
    greedy["inferenceConfig"]["inferenceTemperature"] = json!(0.0);
    greedy["inferenceConfig"]["inferenceMaxNewTokens"] = json!(200);
    std::fs::write(&recipe, greedy.to_string()).unwrap();
    let dedup_only = ["--filter", "all=off", "--filter", "exactDuplicate=on", "--filter", "nearDuplicate=on"];
    let synth_run = |extra: &[&str]| {
        let args = [&["--device", "cpu", "--quiet", "run", recipe.as_str()][..], &dedup_only, extra].concat();
        let out = home.synth(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    synth_run(&["--output-id", "whole"]);
    synth_run(&["--shard", "0/2", "--output-id", "big"]);
    synth_run(&["--shard", "1/2", "--output-id", "big"]);
    assert!(seed_rows_of(&split(&home, "big.shard-1-of-2", "train")).contains(&3), "shard 1 keeps its row");
    let out = home.synth(&["datasets", "merge", "big", "--shards", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seed_rows = Vec::new();
    for name in ["train", "validation", "test"] {
        let merged = split(&home, "big", name);
        assert_eq!(merged, split(&home, "whole", name), "{name}.jsonl differs from the single process's");
        seed_rows.extend(seed_rows_of(&merged));
    }
    let dropped = split(&home, "whole", "dropped");
    assert_eq!(split(&home, "big", "dropped"), dropped, "the merge keeps the dropped candidates of one process");
    let last: Value = serde_json::from_str(String::from_utf8(dropped).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!((&last["seedRow"], &last["reason"]), (&json!(3), &json!("exactDuplicate")), "{last}");
    assert!(seed_rows.contains(&0) && !seed_rows.contains(&3), "seed row 3's row repeats seed row 0's: {seed_rows:?}");
    for id in ["whole", "big"] {
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(home.path().join("datasets").join(id).join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["counts"]["rows"], seed_rows.len(), "{id}: {manifest}");
        assert_eq!(manifest["curation"]["droppedBy"]["exactDuplicate"], 1, "{id}: {manifest}");
    }
}

fn seed_rows_of(jsonl: &[u8]) -> Vec<u64> {
    let rows = String::from_utf8_lossy(jsonl);
    rows.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["metadata"]["seedRow"].as_u64().unwrap())
        .collect()
}

//! `--num-samples` on the real SmolLM2-135M-Instruct GGUF, through the `synth` binary: a seed
//! grown to the size asked for, the candidate budget, multi-turn seeds, and the same bytes
//! whatever the batch size.

mod common;

use common::{stderr, Home};

use serde_json::{json, Value};

fn read(home: &Home, id: &str, file: &str) -> Vec<u8> {
    std::fs::read(home.path().join("datasets").join(id).join(file)).unwrap()
}

/// The quickstart recipe with short generations, written into the home; returns its path.
fn short_recipe(home: &Home, max_new_tokens: u64, dataset: &str) -> String {
    recipe_at(home, 0.7, max_new_tokens, dataset)
}

/// At a low temperature SmolLM2 rambles less, so fewer candidates are cut off (and the test is quicker).
fn recipe_at(home: &Home, temperature: f64, max_new_tokens: u64, dataset: &str) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/quickstart.json")).unwrap();
    let mut recipe: Value = serde_json::from_str(&text).unwrap();
    recipe["inferenceConfig"] =
        json!({"inferenceTemperature": temperature, "inferenceMaxNewTokens": max_new_tokens, "inferenceSeed": 42});
    recipe["synthesisConfig"]["synthesisConfig"]["datasetId"] = json!(dataset);
    let path = home.path().join(format!("short_{temperature}_{max_new_tokens}.json"));
    std::fs::write(&path, recipe.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn rows(home: &Home, id: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for split in ["train", "validation", "test"] {
        let text = String::from_utf8(read(home, id, &format!("{split}.jsonl"))).unwrap();
        rows.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    rows
}

fn manifest(home: &Home, id: &str) -> Value {
    serde_json::from_slice(&read(home, id, "manifest.json")).unwrap()
}

#[test]
fn forty_rows_from_eight_seed_rows() {
    let home = Home::with_quickstart_seed();
    let recipe = recipe_at(&home, 0.3, 64, "dataset_quickstart_seed");
    let args = [
        "--device",
        "cpu",
        "--quiet",
        "run",
        &recipe,
        "--filter",
        "all=off",
        "--limit",
        "8",
        "--num-samples",
        "40",
        "--output-id",
        "grown",
    ];
    let out = home.synth(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let made = rows(&home, "grown");
    let m = manifest(&home, "grown");
    let counts = &m["counts"];
    assert_eq!(counts["numSamples"], 40);
    assert_eq!(counts["maxCandidates"], 120, "the default budget is 3 × numSamples");
    let candidates = counts["candidates"].as_u64().unwrap() as usize;
    let dropped = counts["dropped"].as_u64().unwrap() as usize;
    assert_eq!(made.len() + dropped, candidates, "{counts}");
    let by_reason: u64 = counts["droppedBy"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(by_reason as usize, dropped);
    if made.len() < 40 {
        assert_eq!(candidates, 120, "{counts}");
        assert!(stderr(&out).contains(&format!("made {} of the 40 rows asked for", made.len())), "{}", stderr(&out));
    }
    assert_eq!(made.len(), 40, "this seed and budget reach 40 rows: {counts}");
    let mut variants = std::collections::BTreeSet::new();
    let mut per_seed = [0; 8];
    for row in &made {
        per_seed[row["metadata"]["seedRow"].as_u64().unwrap() as usize] += 1;
        variants.insert(row["metadata"]["variant"].as_u64().unwrap());
    }
    assert_eq!(per_seed, [5; 8], "every seed row makes its share of the rows");
    assert!(variants.len() >= 5 && variants.contains(&0), "40 rows from 8 seeds need at least 5 passes: {variants:?}");
    let diversity = &m["diversity"];
    assert_eq!(diversity["mechanism"], "on");
    assert!(diversity["distinct2"].as_f64().unwrap() > 0.0 && diversity["sameSeedPairs"].as_u64().unwrap() > 0);
    // Rows of one seed row are paraphrases of one example: they all sit in one split, and each
    // split's size stays within one seed row's rows of 32/4/4.
    let mut split_of_seed = std::collections::BTreeMap::new();
    let mut per_seed = std::collections::BTreeMap::new();
    let mut sizes = Vec::new();
    for split in ["train", "validation", "test"] {
        let text = String::from_utf8(read(&home, "grown", &format!("{split}.jsonl"))).unwrap();
        sizes.push(text.lines().count());
        for line in text.lines() {
            let seed_row = serde_json::from_str::<Value>(line).unwrap()["metadata"]["seedRow"].as_u64().unwrap();
            assert_eq!(*split_of_seed.entry(seed_row).or_insert(split), split, "seed row {seed_row} in two splits");
            *per_seed.entry(seed_row).or_insert(0usize) += 1;
        }
    }
    let largest = per_seed.values().copied().max().unwrap();
    assert!(
        sizes.iter().zip([32usize, 4, 4]).all(|(&got, want)| got.abs_diff(want) <= largest),
        "{sizes:?} {per_seed:?}"
    );
}

#[test]
fn a_small_budget_publishes_fewer_rows_and_says_so() {
    let home = Home::with_quickstart_seed();
    let recipe = short_recipe(&home, 64, "dataset_quickstart_seed");
    let args = [
        "--device",
        "cpu",
        "run",
        &recipe,
        "--filter",
        "all=off",
        "--limit",
        "8",
        "--num-samples",
        "40",
        "--max-candidates",
        "6",
    ];
    let out = home.synth(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let made = rows(&home, &id);
    assert!(!made.is_empty() && made.len() <= 6);
    let message =
        format!("made {} of the 40 rows asked for: the candidate budget ran out after 6 candidates", made.len());
    assert!(stderr(&out).contains(&message), "{}", stderr(&out));
    let counts = &manifest(&home, &id)["counts"];
    assert_eq!((counts["candidates"].as_u64(), counts["maxCandidates"].as_u64()), (Some(6), Some(6)), "{counts}");
}

/// A run at `--max-batch 1`, killed partway and resumed, and one at `--max-batch 16` publish the
/// same bytes.
#[test]
fn the_same_rows_at_max_batch_1_killed_and_resumed_and_at_16() {
    let home = Home::with_quickstart_seed();
    let recipe = short_recipe(&home, 32, "dataset_quickstart_seed");
    let args = |id: &'static str, batch: &'static str| {
        let fixed = ["--device", "cpu", "--quiet", "run", &recipe, "--filter", "all=off", "--limit", "3"];
        let mut args: Vec<String> = fixed.iter().map(|a| a.to_string()).collect();
        args.extend(
            ["--num-samples", "6", "--max-candidates", "12", "--max-batch", batch, "--output-id", id].map(String::from),
        );
        args
    };
    let journal = home.path().join("datasets/.run-one/journal.jsonl");
    let one = args("one", "1");
    let one: Vec<&str> = one.iter().map(String::as_str).collect();
    let killed = home.run_killed_after(&one, &journal, 16);
    eprintln!("run `one` killed partway: {killed}");
    if killed {
        let text = std::fs::read_to_string(&journal).unwrap();
        assert!(text.contains(r#""variant":1"#), "later variants are journaled with their variant: {text}");
        let out = home.synth(&one);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let sixteen = args("sixteen", "16");
    let out = home.synth(&sixteen.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["train.jsonl", "validation.jsonl", "test.jsonl"] {
        assert_eq!(read(&home, "one", file), read(&home, "sixteen", file), "{file}");
    }
    assert!(!rows(&home, "one").is_empty());
}

#[test]
fn a_two_turn_seed_gives_two_turn_rows() {
    let home = Home::new();
    let seed = home.path().join("two_turns.jsonl");
    let conversation = |first: &str, second: &str| {
        json!({"messages": [
            {"role": "user", "content": first},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": second},
            {"role": "assistant", "content": "Done."}
        ]})
        .to_string()
    };
    let text =
        [conversation("Name a fruit.", "Now name a vegetable."), conversation("What is 2+2?", "And 3+3?")].join("\n");
    std::fs::write(&seed, text).unwrap();
    let out = home.synth(&["datasets", "import", seed.to_str().unwrap(), "--id", "two_turns"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recipe = short_recipe(&home, 64, "two_turns");
    let args = [
        "--device",
        "cpu",
        "--quiet",
        "run",
        &recipe,
        "--filter",
        "all=off",
        "--num-samples",
        "2",
        "--max-candidates",
        "8",
    ];
    let out = home.synth(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let made = rows(&home, &id);
    assert!(!made.is_empty());
    for row in made {
        let roles: Vec<&str> =
            row["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"], "{row}");
    }
}

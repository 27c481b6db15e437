//! End to end on the real SmolLM2-135M-Instruct GGUF, through the `synth` binary.

mod common;

use common::{stderr, Home};
use serde_json::Value;
use synth::output::splits::split_sizes;

fn read(home: &Home, id: &str, file: &str) -> Vec<u8> {
    std::fs::read(home.path().join("datasets").join(id).join(file)).unwrap()
}

#[test]
fn quickstart_recipe_makes_a_split_dataset_and_the_same_seed_gives_the_same_bytes() {
    let home = Home::with_quickstart_seed();
    for id in ["first", "second"] {
        let out = home.synth(&["--device", "cpu", "--quiet", "run", "recipes/quickstart.json", "--output-id", id]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    }

    let manifest: Value = serde_json::from_slice(&read(&home, "first", "manifest.json")).unwrap();
    let rows = manifest["counts"]["rows"].as_u64().unwrap() as usize;
    let dropped = manifest["counts"]["dropped"].as_u64().unwrap() as usize;
    assert_eq!(rows + dropped, 16, "every seed row is either kept or counted as dropped: {manifest}");
    // SmolLM2-135M rambles: about half its generations run past 256 tokens and are dropped.
    assert!(rows >= 4, "too few seed rows survived: {manifest}");
    let expected = split_sizes(rows, [0.8, 0.1, 0.1]);
    for (split, want) in ["train", "validation", "test"].iter().zip(expected) {
        assert_eq!(manifest["splits"][split]["rows"].as_u64().unwrap() as usize, want, "{split}");
        let text = String::from_utf8(read(&home, "first", &format!("{split}.jsonl"))).unwrap();
        assert_eq!(text.lines().count(), want, "{split}");
        for line in text.lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            let messages = row["messages"].as_array().unwrap();
            let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
            assert!(roles == ["user", "assistant"] || roles == ["system", "user", "assistant"], "{roles:?}");
            for m in messages {
                assert!(!m["content"].as_str().unwrap().trim().is_empty(), "{line}");
            }
            assert!(row["metadata"]["seedRow"].as_u64().unwrap() < 16);
            assert_eq!(row["metadata"]["model"], "SmolLM2-135M-Instruct");
        }
    }
    // The curation gates ran: what they dropped is counted by gate, in the run's drops too.
    let curation = &manifest["curation"];
    let gates = curation["gates"].as_object().unwrap();
    // `excluded` runs only when datasets are excluded, the judge only when asked for.
    let off = ["excluded", "judge", "judgeUnparseable"];
    assert!(gates.iter().all(|(gate, on)| on != off.contains(&gate.as_str())), "the other gates are on: {curation}");
    let gate_drops: u64 = curation["droppedBy"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    let by_gate: u64 = manifest["counts"]["droppedBy"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, _)| gates.contains_key(key.as_str()))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert_eq!(gate_drops, by_gate, "{manifest}");
    assert!(gate_drops > 0, "SmolLM2-135M's requests meet the gates: {curation}");
    assert_eq!(manifest["model"]["files"][0]["sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["tokens"]["generated"].as_u64().unwrap() > 0);

    // Every dropped candidate is kept beside the splits, with its reason and its text.
    assert_eq!(manifest["droppedFile"], "dropped.jsonl");
    let kept = String::from_utf8(read(&home, "first", "dropped.jsonl")).unwrap();
    let mut by_reason = serde_json::Map::new();
    for line in kept.lines() {
        let candidate: Value = serde_json::from_str(line).unwrap();
        let reason = candidate["reason"].as_str().unwrap().to_string();
        assert!(candidate["seedRow"].as_u64().unwrap() < 16, "{line}");
        if gates.contains_key(&reason) {
            assert!(
                !candidate["messages"].as_array().unwrap().is_empty(),
                "a gate drop keeps the text that failed: {line}"
            );
        }
        let n = by_reason.get(&reason).and_then(Value::as_u64).unwrap_or(0);
        by_reason.insert(reason, (n + 1).into());
    }
    assert_eq!(kept.lines().count(), dropped);
    assert_eq!(Value::Object(by_reason), manifest["counts"]["droppedBy"], "{kept}");

    for file in ["train.jsonl", "validation.jsonl", "test.jsonl", "dropped.jsonl"] {
        assert_eq!(
            read(&home, "first", file),
            read(&home, "second", file),
            "{file} differs between two runs with the same seed"
        );
    }

    // An existing dataset is never overwritten without being asked.
    let out = home.synth(&[
        "--device",
        "cpu",
        "--quiet",
        "run",
        "recipes/quickstart.json",
        "--output-id",
        "first",
        "--limit",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"));
}

#[test]
fn generate_answers_two_plus_two() {
    let home = Home::new();
    let out = home.synth(&[
        "--device",
        "cpu",
        "generate",
        "--model",
        "SmolLM2-135M-Instruct",
        "--prompt",
        "What is 2+2?",
        "--temperature",
        "0",
        "--max-new-tokens",
        "48",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    let answer = line["messages"][1]["content"].as_str().unwrap();
    assert_eq!(line["messages"][1]["role"], "assistant");
    assert!(answer.contains('4'), "answer: {answer:?}");
}

#[test]
fn generate_keeps_input_order_and_neither_batching_nor_kernel_level_changes_sampled_text() {
    let home = Home::new();
    let input = home.path().join("in.jsonl");
    let prompts = [
        "Name a color.",
        "What is the capital of France?",
        "Say hello in German.",
        "Give me a fruit.",
        "Count to three.",
    ];
    let lines: Vec<String> = prompts.iter().map(|p| serde_json::json!({"prompt": p}).to_string()).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    // (max batch, SYNTH_CPU_KERNELS): the bundled model's kernels give candle's bits on every
    // level, and an unknown level is named in a warning and ignored.
    let runs =
        [("1", None), ("4", None), ("32", None), ("4", Some("avx2")), ("32", Some("scalar")), ("4", Some("avx9"))];
    let mut outputs = Vec::new();
    for (batch, level) in runs {
        let mut cmd = home.command(&[
            "--device",
            "cpu",
            "--quiet",
            "generate",
            "--model",
            "smollm2",
            "--input",
            input.to_str().unwrap(),
            "--temperature",
            "0.8",
            "--seed",
            "7",
            "--max-new-tokens",
            "24",
            "--max-batch",
            batch,
        ]);
        if let Some(level) = level {
            cmd.env("SYNTH_CPU_KERNELS", level);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let warned = stderr(&out).contains("SYNTH_CPU_KERNELS=`avx9` is not a kernel level this CPU runs");
        assert_eq!(warned, level == Some("avx9"), "{}", stderr(&out));
        outputs.push(out.stdout);
    }
    for (run, output) in runs.iter().zip(&outputs).skip(1) {
        assert_eq!(&outputs[0], output, "--max-batch 1 vs {run:?}");
    }
    let text = String::from_utf8(outputs[0].clone()).unwrap();
    for (line, prompt) in text.lines().zip(prompts) {
        let row: Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["messages"][0]["content"], prompt);
    }
}

#[test]
fn missing_model_lists_files_and_cuda_needs_its_feature() {
    let home = Home::with_quickstart_seed();
    let recipe = home.path().join("qwen.json");
    let text = std::fs::read_to_string("recipes/quickstart.json").unwrap().replace("SmolLM2-135M-Instruct", "Qwen3-8B");
    std::fs::write(&recipe, text).unwrap();
    let out = home.synth(&["--device", "cpu", "run", recipe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("config.json") && err.contains("model-00001-of-00005.safetensors") && err.contains("hint:"),
        "{err}"
    );

    if !cfg!(feature = "cuda") {
        let out = home.synth(&["--device", "cuda", "run", "recipes/quickstart.json"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("`cuda` feature"), "{}", stderr(&out));
    }
    // Nothing was published by the failed runs.
    let list = home.synth(&["datasets", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 1);
}

//! The `synth` binary end to end on the device `SYNTH_TEST_DEVICE` names (cpu by default; cuda
//! in benches/cuda/run.sh on a GPU machine): `synth --device D generate` of six prompts with a
//! registry model, `Llama-3.1-8B-Instruct`, found in a Hugging Face cache that holds a tiny
//! random-weight model in that checkpoint's file layout (4 shards) with the real Llama-3.1
//! tokenizer and chat template. So the whole path runs: registry, resolution, sharded bf16
//! (CUDA) or f32 (CPU) loading, tokenizer, template, batched engine, sampler, output.
//!
//! The carried binaries on a GPU machine find the synth binary and the tokenizer through
//! `SYNTH_BIN` and `SYNTH_ASSETS`; by default they are this build's.

mod common;
#[path = "common/tiny_models.rs"]
mod tiny_models;

use std::path::PathBuf;
use std::process::Command;

fn synth_bin() -> PathBuf {
    std::env::var_os("SYNTH_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_synth")), PathBuf::from)
}

fn device() -> String {
    std::env::var("SYNTH_TEST_DEVICE").unwrap_or_else(|_| "cpu".into())
}

#[test]
fn synth_generate_runs_a_registry_model_on_the_test_device() {
    let work = tempfile::tempdir().unwrap();
    let hub = work.path().join("hub");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut config = tiny_models::llama_config(false);
    // The real tokenizer's vocabulary and special tokens.
    config["vocab_size"] = 128256.into();
    config["bos_token_id"] = 128000.into();
    config["eos_token_id"] = serde_json::json!([128001, 128008, 128009]);
    let mut tiny = tiny_models::write(&hub, "meta-llama/Llama-3.1-8B-Instruct", &config, 4);
    let tokenizer = common::assets().join("llama3_1");
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let bytes = std::fs::read(tokenizer.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}: run scripts/fetch-assets.sh", tokenizer.join(name).display()));
        tiny.add_file(name, &bytes);
    }
    tiny.add_file("generation_config.json", b"{}");

    let prompts = [
        "What is 2+2?",
        "Name a color.",
        "Write one word.",
        "Count to three, please, slowly and clearly.",
        "Hi",
        "Say something about the sea and the sky in one sentence.",
    ];
    let input = work.path().join("prompts.jsonl");
    std::fs::write(
        &input,
        prompts.iter().map(|p| format!("{}\n", serde_json::json!({"prompt": p}))).collect::<String>(),
    )
    .unwrap();
    let generate = |extra: &[&str]| -> String {
        let out = Command::new(synth_bin())
            .args(["--device", &device(), "generate", "--model", "Llama-3.1-8B-Instruct", "--input"])
            .arg(&input)
            .args(["--temperature", "0.8", "--max-new-tokens", "24", "--seed", "7"])
            .args(extra)
            .env("SYNTH_HOME", &home)
            .env("HF_HUB_CACHE", &hub)
            .env_remove("HF_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "synth generate on {}: {}", device(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let first = generate(&[]);
    let lines: Vec<serde_json::Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), prompts.len());
    for (line, prompt) in lines.iter().zip(prompts) {
        let messages = line["messages"].as_array().unwrap();
        assert_eq!(messages[0]["content"], prompt);
        assert_eq!(messages[1]["role"], "assistant");
        let generated = line["generatedTokens"].as_u64().unwrap();
        // Random weights rarely sample a stop token: most rows run to the limit.
        assert!(generated > 0 && generated <= 24, "{line}");
        assert!(line["finishReason"] == "length" || line["finishReason"] == "stop", "{line}");
        // The chat template's header tokens come before the prompt's.
        assert!(line["promptTokens"].as_u64().unwrap() > 10, "{line}");
    }
    assert_eq!(first, generate(&[]), "the same command twice gave different output on {}", device());
    let one_at_a_time = generate(&["--max-batch", "1"]);
    if device() == "cpu" {
        assert_eq!(first, one_at_a_time, "output depends on the batch size on the CPU");
    } else {
        // Off the CPU a row's float sums depend on what shares its matmuls (cuBLAS picks
        // kernels by shape), so batch invariance is reported, not asserted.
        eprintln!(
            "{}: output with --max-batch 1 is {} the batched output",
            device(),
            if first == one_at_a_time { "identical to" } else { "different from" }
        );
    }
    eprintln!("{}: {}", device(), lines[0]);
}

//! A GGUF passed with `--model-path` carries its own architecture, tokenizer and template: it
//! loads for any registry entry (with a warning when it looks like another model) and without
//! `--model` at all; a registry entry's GGUF variant is picked by `NAME:QUANT` or, on the CPU,
//! by being present.

mod common;

use common::{fails, s, stderr, Home};

fn generate(home: &Home, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["generate", "--device", "cpu", "--prompt", "What is 2+2?", "--max-new-tokens", "8"];
    args.extend_from_slice(extra);
    home.synth(&args)
}

#[test]
fn a_gguf_model_path_loads_with_or_without_a_model_name() {
    let home = Home::new();
    let gguf = common::smollm2_gguf();
    let named = generate(&home, &["--model", "SmolLM2-135M-Instruct"]);
    assert!(named.status.success(), "{}", stderr(&named));
    assert!(!named.stdout.is_empty());

    // No `--model`: the file's metadata names it; the same greedy completion.
    let bare = generate(&home, &["--model-path", s(&gguf)]);
    assert!(bare.status.success(), "{}", stderr(&bare));
    assert_eq!(bare.stdout, named.stdout);

    // A safetensors entry with a GGUF file: loaded as the file says, with a warning.
    let other = generate(&home, &["--model", "Llama-3.1-8B-Instruct", "--model-path", s(&gguf)]);
    assert!(other.status.success(), "{}", stderr(&other));
    assert_eq!(other.stdout, named.stdout);
    let err = stderr(&other);
    assert!(err.contains("warning: ") && err.contains("which does not look like `Llama-3.1-8B-Instruct`"), "{err}");

    // A directory without `--model` cannot name the model.
    fails(&generate(&home, &["--model-path", s(home.path())]), 2, &["`--model-path` without `--model`"]);
}

#[test]
fn a_present_gguf_variant_is_the_cpu_default_and_a_quant_suffix_picks_one() {
    let home = Home::new();
    // SmolLM2 stands in for the Q4_K_M file of Llama-3.2-1B-Instruct (both are `llama`).
    std::os::unix::fs::symlink(common::smollm2_gguf(), home.path().join("models/Llama-3.2-1B-Instruct-Q4_K_M.gguf"))
        .unwrap();
    let default = generate(&home, &["--model", "Llama-3.2-1B-Instruct"]);
    assert!(default.status.success(), "{}", stderr(&default));
    let suffix = generate(&home, &["--model", "Llama-3.2-1B-Instruct:Q4_K_M"]);
    assert!(suffix.status.success(), "{}", stderr(&suffix));
    assert_eq!(default.stdout, suffix.stdout);
    fails(&generate(&home, &["--model", "Llama-3.2-1B-Instruct:Q6_K"]), 3, &["Llama-3.2-1B-Instruct-Q6_K.gguf"]);
    let list = String::from_utf8_lossy(&home.synth(&["models", "list"]).stdout).into_owned();
    assert!(list.lines().any(|l| l.starts_with("Llama-3.2-1B-Instruct:Q4_K_M\t") && l.contains("present")), "{list}");
}

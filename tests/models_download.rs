//! `synth models download` against a local stand-in for the Hugging Face endpoint, then
//! `synth models list` and resolution find the files offline.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Home;

#[test]
fn download_fills_the_hf_cache_and_the_model_is_then_found_offline() {
    let home = Home::new();
    let hub = tempfile::tempdir().unwrap();
    let repo = hub.path().join("synth-test/tiny");
    std::fs::create_dir_all(&repo).unwrap();
    for (file, body) in [
        ("config.json", "{\"model_type\": \"llama\"}"),
        ("tokenizer.json", "{}"),
        ("tokenizer_config.json", "{}"),
        ("model.safetensors", "weights"),
    ] {
        std::fs::write(repo.join(file), body).unwrap();
    }
    let entry = r#"{"name": "tiny-test", "aliases": [], "hfRepo": "synth-test/tiny", "revision": "main",
        "architecture": "llama", "format": "safetensors", "files": ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"],
        "chatTemplate": "tokenizer_config", "stopTokens": ["</s>"], "contextLength": 128, "notes": "test"}"#;
    std::fs::write(home.path().join("models/tiny-test.json"), entry).unwrap();

    let mut server = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fake_hub.py"))
        .arg(hub.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the fake hub");
    let mut port = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let endpoint = format!("http://127.0.0.1:{}", port.trim());

    let out = Command::new(env!("CARGO_BIN_EXE_synth"))
        .args(["models", "download", "tiny-test"])
        .env("SYNTH_HOME", home.path())
        .env("HF_HUB_CACHE", home.path().join("hf"))
        .env("HF_ENDPOINT", &endpoint)
        .output()
        .unwrap();
    drop(server.stdin.take());
    let _ = server.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snapshot = home.path().join("hf/models--synth-test--tiny/snapshots/0123456789abcdef0123456789abcdef01234567");
    assert_eq!(std::fs::read_to_string(snapshot.join("model.safetensors")).unwrap(), "weights");
    let log = std::fs::read_to_string(hub.path().join("requests.log")).unwrap();
    assert!(log.contains("/synth-test/tiny/resolve/main/config.json"), "{log}");

    let list = home.synth(&["models", "list"]);
    let line = String::from_utf8_lossy(&list.stdout).lines().find(|l| l.starts_with("tiny-test")).unwrap().to_string();
    assert!(line.contains("present") && line.contains("models--synth-test--tiny"), "{line}");
}

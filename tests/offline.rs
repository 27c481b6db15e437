//! `synth run` and `synth generate` never open a network connection. The Hugging Face endpoint
//! and every proxy variable point at a local listener that counts connections; a positive
//! control (`synth models download`, the one command meant to use the network) shows the
//! listener does catch a connection when there is one.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Home;

struct Tripwire {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(stream); // close at once: whoever connected gets an error
            }
        });
        Tripwire { url, connections }
    }

    fn count(&self) -> usize {
        std::thread::sleep(Duration::from_millis(100));
        self.connections.load(Ordering::SeqCst)
    }

    fn arm(&self, mut command: Command) -> Command {
        for var in ["HF_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            command.env(var, &self.url);
        }
        command.env_remove("NO_PROXY").env_remove("no_proxy").env_remove("HF_HUB_OFFLINE");
        command
    }
}

#[test]
fn run_and_generate_open_no_connection() {
    let home = Home::with_quickstart_seed();
    let wire = Tripwire::start();

    let out = wire
        .arm(home.command(&[
            "--device",
            "cpu",
            "--quiet",
            "run",
            "recipes/quickstart.json",
            "--filter",
            "all=off",
            "--limit",
            "2",
        ]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = wire
        .arm(home.command(&[
            "--device",
            "cpu",
            "generate",
            "--model",
            "SmolLM2-135M-Instruct",
            "--prompt",
            "Hi",
            "--max-new-tokens",
            "8",
        ]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A model that is not on disk is the moment a tool might reach for the network: synth
    // reports the missing files instead.
    let out = wire
        .arm(home.command(&["--device", "cpu", "generate", "--model", "Qwen3-0.6B", "--prompt", "Hi"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(wire.count(), 0, "synth run / generate connected to the network");

    // Positive control: the download command does reach the endpoint, so the wire works.
    let out = wire.arm(home.command(&["models", "download", "Qwen3-0.6B"])).output().unwrap();
    assert!(!out.status.success());
    assert!(wire.count() > 0, "the tripwire saw no connection from `synth models download`");
}

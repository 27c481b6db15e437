//! Regressions from trying synth as a hostile user (issue "Hardening"), each through the binary
//! where a user meets it: the exit code, the message, no panic, and nothing written outside
//! `SYNTH_HOME` or the named output.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fails, s, stderr, Home};
use serde_json::{json, Value};

fn quickstart() -> Value {
    serde_json::from_str(&std::fs::read_to_string("recipes/quickstart.json").unwrap()).unwrap()
}

#[test]
fn broken_pipe_ends_listing_commands_quietly() {
    let home = Home::with_quickstart_seed();
    for args in [
        &["datasets", "show", "dataset_quickstart_seed", "--limit", "1000"][..],
        &["datasets", "list"],
        &["models", "list"],
    ] {
        // stdout is a pipe whose reading end is already closed: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = home.command(args).stdout(writer).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn generate_writes_a_fifo_in_place_instead_of_replacing_it() {
    let home = Home::new();
    let fifo = home.path().join("out.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reading = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = home.synth(&[
        "generate",
        "--device",
        "cpu",
        "--model",
        "SmolLM2-135M-Instruct",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "4",
        "--output",
        s(&fifo),
        "--overwrite",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = reading.join().unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["messages"][0]["content"], "Hi");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
}

#[test]
fn generate_checks_its_output_location_before_any_work() {
    let home = Home::new();
    // The model name is unknown: the output is checked first, so that is what the error is about.
    let out = home.synth(&[
        "generate",
        "--model",
        "NoSuchModel",
        "--prompt",
        "Hi",
        "--output",
        "/nonexistent-synth-dir/out.jsonl",
    ]);
    fails(&out, 1, &["/nonexistent-synth-dir", "cannot write in"]);
    let existing = home.path().join("taken.jsonl");
    std::fs::write(&existing, "keep").unwrap();
    fails(
        &home.synth(&["generate", "--model", "NoSuchModel", "--prompt", "Hi", "--output", s(&existing)]),
        2,
        &["already exists", "--overwrite"],
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep");
    let dir = home.path().join("a_dir");
    std::fs::create_dir(&dir).unwrap();
    fails(
        &home.synth(&["generate", "--model", "NoSuchModel", "--prompt", "Hi", "--output", s(&dir), "--overwrite"]),
        2,
        &["is a directory"],
    );
}

#[test]
fn run_refuses_to_overwrite_its_own_seed_dataset() {
    let home = Home::with_quickstart_seed();
    let manifest = home.path().join("datasets/dataset_quickstart_seed/manifest.json");
    let before = std::fs::read(&manifest).unwrap();
    let out = home.synth(&[
        "--device",
        "cpu",
        "run",
        "recipes/quickstart.json",
        "--output-id",
        "dataset_quickstart_seed",
        "--overwrite",
    ]);
    fails(&out, 2, &["--output-id dataset_quickstart_seed", "seed dataset", "hint:"]);
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
}

#[test]
fn validate_reads_a_pipe_once_and_refuses_a_directory() {
    let home = Home::new();
    let mut child = home
        .command(&["validate", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(quickstart().to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: /dev/stdin"));
    fails(&home.synth(&["validate", "recipes"]), 2, &["recipes: is a directory"]);
}

#[test]
fn eval_show_escapes_terminal_control_sequences() {
    let home = Home::new();
    let run = home.path().join("evals/hostile");
    std::fs::create_dir_all(&run).unwrap();
    let summary = json!({"runId": "hostile", "createdAt": "t", "synthVersion": "0", "recipeFile": "f", "recipe": {},
        "dataset": {"id": "d", "rowsUsed": 1, "rowsInDataset": 1},
        "model": {"name": "m\u{1b}]0;title\u{7}", "hfRepo": "", "revision": "", "source": "", "files": []},
        "judges": {}, "judgeModels": [], "device": "cpu", "inferenceSeed": 1, "rows": 1, "passedRows": 0, "failedRows": 1,
        "evaluators": [{"name": "exact", "type": "exact_match", "pass": 0, "fail": 1, "unparseable": 0, "skipped": 0, "passRate": 0.0}],
        "finishReasons": {"stop": 1}, "tokens": {"prompt": 1, "generated": 1, "judgePrompt": 0, "judgeGenerated": 0},
        "wallSeconds": 1.0, "failureModesDataset": null, "failureModes": []});
    std::fs::write(run.join("summary.json"), summary.to_string()).unwrap();
    let result = json!({"row": 0, "prompt": [{"role": "user", "content": "\u{1b}[2J\u{202e}cleared"}], "reference": "y", "output": "\u{9b}31m",
        "finishReason": "stop", "tokens": {"prompt": 1, "generated": 1}, "passed": false,
        "evaluations": {"exact": {"verdict": "fail", "rationale": "\u{1b}[1A"}}});
    std::fs::write(run.join("results.jsonl"), format!("{result}\n")).unwrap();
    let out = home.synth(&["eval", "show", "hostile"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for bad in ['\u{1b}', '\u{7}', '\u{202e}', '\u{9b}'] {
        assert!(!text.contains(bad), "{bad:?} reached the terminal: {text:?}");
    }
    assert!(text.contains("\\u{1b}[2J\\u{202e}cleared"), "{text}");
}

#[test]
fn interrupted_runs_are_listed_and_cleaned() {
    let home = Home::with_quickstart_seed();
    let run = home.path().join("datasets/.run-left_behind");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("journal.jsonl"),
        "{\"journal\":1,\"fingerprint\":\"x\",\"outputId\":\"left_behind\"}\n{}\n{}\n",
    )
    .unwrap();
    let out = home.synth(&["datasets", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("left_behind\tinterrupted\t-\t2 generations journaled"), "{listing}");
    let out = home.synth(&["datasets", "clean"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!run.exists());
    assert!(home.path().join("datasets/dataset_quickstart_seed").is_dir(), "datasets stay");
}

#[test]
fn a_symlinked_run_directory_is_refused() {
    let home = Home::with_quickstart_seed();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), home.path().join("datasets/.run-linked")).unwrap();
    let out =
        home.synth(&["--device", "cpu", "run", "recipes/quickstart.json", "--output-id", "linked", "--limit", "1"]);
    fails(&out, 2, &["symbolic link"]);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing was written outside SYNTH_HOME");
}

#[test]
fn flags_say_which_flag_and_value_are_wrong() {
    let home = Home::new();
    fails(
        &home.synth(&["generate", "--model", "m", "--prompt", "p", "--temperature", "3"]),
        2,
        &["'3'", "--temperature", "between 0 and 2"],
    );
    fails(&home.synth(&["generate", "--model", "m", "--prompt", "p", "--top-p", "0"]), 2, &["'0'", "--top-p"]);
    fails(&home.synth(&["run", "r.json", "--max-batch", "0"]), 2, &["'0'", "--max-batch", "at least 1"]);
    // Engine flags belong to the commands that run a model.
    fails(&home.synth(&["datasets", "list", "--device", "cpu"]), 2, &["--device"]);
    for (args, needle) in [
        (&["datasets", "show", "--help"][..], "The dataset id"),
        (&["datasets", "import", "--help"], "The JSONL file to import"),
        (&["generate", "--help"], "Most tokens generated per completion"),
        (&["generate", "--help"], "Replace an existing `--output` file"),
    ] {
        let out = home.synth(args);
        assert!(String::from_utf8_lossy(&out.stdout).contains(needle), "{args:?} lacks `{needle}`");
    }
}

#[test]
fn summaries_count_rows_in_english_and_quiet_silences_them() {
    let home = Home::new();
    let one = home.path().join("one.jsonl");
    std::fs::write(&one, "{\"prompt\": \"a\", \"response\": \"b\"}\n").unwrap();
    let out = home.synth(&["datasets", "import", s(&one), "--id", "one"]);
    assert!(stderr(&out).contains("imported 1 row from"), "{}", stderr(&out));
    let out = home.synth(&["--quiet", "datasets", "import", s(&one), "--id", "two"]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
}

#[test]
fn rate_cap_waits_are_announced_and_validate_warns_about_slow_caps() {
    let home = Home::with_quickstart_seed();
    let mut recipe = quickstart();
    recipe["inferenceConfig"]["requestsPerMinute"] = json!(0.5);
    let path = home.path().join("slow.json");
    std::fs::write(&path, recipe.to_string()).unwrap();
    // One request may start at once; the next waits two minutes, and says so (the gates off:
    // seed row 0's request fails them, and there would be no next request).
    let mut child = home
        .command(&["--device", "cpu", "run", s(&path), "--filter", "all=off", "--limit", "1"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let started = Instant::now();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains("waiting") && started.elapsed() < Duration::from_secs(120) {
        let n = err.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(text.contains("for the rate cap (requestsPerMinute 0.5), until"), "{text}");

    recipe["inferenceConfig"]["requestsPerMinute"] = json!(0.001);
    std::fs::write(&path, recipe.to_string()).unwrap();
    let out = home.synth(&["validate", s(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "requestsPerMinute: `0.001` makes the 16 rows of dataset `dataset_quickstart_seed` take at least 22.2 days"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_model_without_home_says_where_it_could_not_look() {
    let home = Home::new();
    let out = home
        .command(&["generate", "--device", "cpu", "--model", "Qwen3-8B", "--prompt", "Hi"])
        .env_remove("HOME")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HOME")
        .output()
        .unwrap();
    fails(&out, 3, &["model `Qwen3-8B` is not on this machine", "Hugging Face cache is unknown", "--model-path"]);
    assert!(!stderr(&out).contains("nowhere"), "{}", stderr(&out));
}

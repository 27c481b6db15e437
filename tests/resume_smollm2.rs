//! Crash-safe runs on the real SmolLM2-135M-Instruct GGUF: a run killed (SIGKILL) or stopped
//! (Ctrl-C) at random points resumes from its journal and publishes exactly the dataset an
//! uninterrupted run publishes; a second run on the same output id is refused while one writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, Home};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const SPLITS: [&str; 3] = ["train.jsonl", "validation.jsonl", "test.jsonl"];
const ROWS: &str = "8";

/// The quickstart recipe with shorter generations, so the test runs in seconds per attempt.
fn recipe(home: &Home, name: &str, seed: u64) -> PathBuf {
    let text = std::fs::read_to_string("recipes/quickstart.json").unwrap();
    let mut recipe: Value = serde_json::from_str(&text).unwrap();
    recipe["inferenceConfig"]["inferenceMaxNewTokens"] = 96.into();
    recipe["inferenceConfig"]["inferenceSeed"] = seed.into();
    let path = home.path().join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&recipe).unwrap()).unwrap();
    path
}

fn journal(home: &Home, id: &str) -> PathBuf {
    home.path().join("datasets").join(format!(".run-{id}")).join("journal.jsonl")
}

/// Lines in the journal (the header included); 0 while it does not exist.
fn journal_lines(home: &Home, id: &str) -> usize {
    std::fs::read(journal(home, id)).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
}

fn spawn(home: &Home, recipe: &Path, id: &str, batch: &str) -> Child {
    let args = [
        "--device",
        "cpu",
        "--quiet",
        "run",
        recipe.to_str().unwrap(),
        "--filter",
        "all=off",
        "--output-id",
        id,
        "--limit",
        ROWS,
        "--max-batch",
        batch,
    ];
    home.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until the journal of `id` has more than `lines` lines or the child exits; true if it
/// is still running.
fn wait_for_lines(home: &Home, child: &mut Child, id: &str, lines: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if journal_lines(home, id) > lines {
            return true;
        }
        assert!(Instant::now() < deadline, "the run made no progress for 5 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dataset_file(home: &Home, id: &str, file: &str) -> String {
    std::fs::read_to_string(home.path().join("datasets").join(id).join(file))
        .unwrap_or_else(|e| panic!("{id}/{file}: {e}"))
}

#[test]
fn killed_and_interrupted_runs_resume_to_the_same_bytes() {
    let home = Home::with_quickstart_seed();
    let recipe = recipe(&home, "recipe.json", 42);

    let out = home.synth(&[
        "--device",
        "cpu",
        "--quiet",
        "run",
        recipe.to_str().unwrap(),
        "--filter",
        "all=off",
        "--output-id",
        "whole",
        "--limit",
        ROWS,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!journal(&home, "whole").exists(), "a published run leaves no journal");

    // SIGKILL at random points (seeded, so a failure reproduces), with batch sizes that differ
    // from the uninterrupted run's.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut kills = 0;
    let mut checked_lock = false;
    let mut checked_mismatch = false;
    for round in 0..4 {
        let batch = ["2", "5", "3", "8"][round];
        let mut child = spawn(&home, &recipe, "resumed", batch);
        let at = journal_lines(&home, "resumed") + rng.random_range(1..=5);
        if !wait_for_lines(&home, &mut child, "resumed", at) {
            let status = child.wait().unwrap();
            assert!(status.success(), "round {round}: the run failed");
            break;
        }
        if !checked_lock {
            let out = home.synth(&[
                "--device",
                "cpu",
                "--quiet",
                "run",
                recipe.to_str().unwrap(),
                "--filter",
                "all=off",
                "--output-id",
                "resumed",
                "--limit",
                ROWS,
            ]);
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            assert!(stderr(&out).contains("being written by another"), "{}", stderr(&out));
            checked_lock = true;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        assert!(!home.path().join("datasets/resumed").exists(), "a killed run published a dataset");

        if !checked_mismatch {
            // Another recipe's run never mixes in this journal.
            let other = self::recipe(&home, "other.json", 43);
            let out = home.synth(&[
                "--device",
                "cpu",
                "--quiet",
                "run",
                other.to_str().unwrap(),
                "--output-id",
                "resumed",
                "--limit",
                ROWS,
            ]);
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            assert!(stderr(&out).contains("--restart"), "{}", stderr(&out));
            checked_mismatch = true;
        }
    }
    assert!(kills >= 2, "the runs finished before they could be killed ({kills} kills)");

    // Ctrl-C: the run finishes what is in flight, says how to resume, exits 130.
    let mut child = spawn(&home, &recipe, "resumed", "4");
    if wait_for_lines(&home, &mut child, "resumed", journal_lines(&home, "resumed") + 1) {
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        if out.status.code() == Some(130) {
            assert!(stderr(&out).contains("run the same command again"), "{}", stderr(&out));
            assert!(!home.path().join("datasets/resumed").exists());
            let out = home.synth(&[
                "--device",
                "cpu",
                "--quiet",
                "run",
                recipe.to_str().unwrap(),
                "--filter",
                "all=off",
                "--output-id",
                "resumed",
                "--limit",
                ROWS,
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
        } else {
            // The signal came as the last generation finished: the run completed.
            assert!(out.status.success(), "{}", stderr(&out));
        }
    } else {
        assert!(child.wait().unwrap().success());
    }

    for file in SPLITS {
        assert_eq!(
            dataset_file(&home, "whole", file),
            dataset_file(&home, "resumed", file),
            "{file} differs after resuming"
        );
    }
    let manifest: Value = serde_json::from_str(&dataset_file(&home, "resumed", "manifest.json")).unwrap();
    assert!(manifest["resumedGenerations"].as_u64().unwrap() > 0, "{manifest}");
    // The resumed process's speed counts only what it generated, over its own wall time.
    let tokens = &manifest["tokens"];
    assert!(tokens["generatedThisRun"].as_u64().unwrap() < tokens["generated"].as_u64().unwrap(), "{manifest}");
    let per_second = tokens["generatedThisRun"].as_f64().unwrap() / manifest["wallSeconds"].as_f64().unwrap();
    assert!(
        (manifest["tokensPerSecond"].as_f64().unwrap() - per_second).abs() <= 0.01 * per_second + 0.01,
        "{manifest}"
    );
    assert!(!journal(&home, "resumed").exists());
}

#[test]
fn a_run_without_output_id_resumes_its_own_journal() {
    let home = Home::with_quickstart_seed();
    let recipe = recipe(&home, "recipe.json", 5);
    let args = ["--device", "cpu", "--quiet", "run", recipe.to_str().unwrap(), "--filter", "all=off", "--limit", "4"];
    let mut child = home.command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let id = "dataset_quickstart_seed_synth_1";
    if wait_for_lines(&home, &mut child, id, 2) {
        child.kill().unwrap();
        child.wait().unwrap();
        let out = home.synth(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id, "the rerun resumes into the interrupted run's id");
        let manifest: Value = serde_json::from_str(&dataset_file(&home, id, "manifest.json")).unwrap();
        assert!(manifest["resumedGenerations"].as_u64().unwrap() >= 2, "{manifest}");
    } else {
        assert!(child.wait().unwrap().success());
    }
    // A later run of the same recipe is a new dataset, not a resume.
    let out = home.synth(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "dataset_quickstart_seed_synth_2");
}

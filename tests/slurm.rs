//! `synth slurm` on a real Slurm: scripts/slurm-local.sh starts a single-node cluster on this
//! machine (Debian's slurmctld, slurmd and munge; 2 CPUs), `synth slurm` writes the jobs of a
//! 3-shard run of the real SmolLM2 model on the CPU, the driver submits them, one shard is
//! cancelled mid-run (`scancel`) and run again with the written requeue script, and the merged
//! dataset's split files are compared byte for byte with a single-process run's.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{s, stderr, Home};
use serde_json::{json, Value};

const SHARDS: usize = 3;
const OUTPUT_ID: &str = "big";

/// The id of shard `i`'s own dataset, as `synth run --shard I/N --output-id big` names it.
fn shard_id(i: usize) -> String {
    format!("{OUTPUT_ID}.shard-{i}-of-{SHARDS}")
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start_cluster() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-local.sh");
    run(Command::new("bash").args([script, "start"]));
}

/// `scontrol show job`'s `JobState`, `Reason` and `Dependency` of a job or array task.
fn job_state(job: &str) -> String {
    let out = Command::new("scontrol").args(["show", "job", job]).output().unwrap();
    let shown = text(&out);
    let field = |name: &str| {
        shown.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or("?").to_string()
    };
    format!("{} {} {}", field("JobState"), field("Reason"), field("Dependency"))
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("logs").join(name)).unwrap_or_default()
}

/// The quickstart recipe with short generations, in the home.
fn recipe(home: &Home) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/quickstart.json")).unwrap();
    let mut recipe: Value = serde_json::from_str(&text).unwrap();
    recipe["inferenceConfig"] = json!({"inferenceTemperature": 0.3, "inferenceMaxNewTokens": 64, "inferenceSeed": 7});
    recipe["synthesisConfig"]["synthesisConfig"]["datasetId"] = json!("dataset_quickstart_seed");
    let path = home.path().join("recipe.json");
    std::fs::write(&path, recipe.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Generations journaled so far by a running shard (from `synth datasets list`).
fn journaled(home: &Home, id: &str) -> usize {
    let listed = text(&home.synth(&["datasets", "list"]));
    listed
        .lines()
        .find(|l| l.starts_with(&format!("{id}\tinterrupted")))
        .and_then(|l| l.split('\t').nth(3)?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_slurm_array_of_three_shards_with_one_cancelled_and_requeued_merges_to_the_single_process_bytes() {
    start_cluster();
    let home = Home::with_quickstart_seed();
    let recipe = recipe(&home);
    let run_flags = ["--filter", "all=off", "--limit", "6", "--num-samples", "9", "--max-batch", "1"];
    let mut single = vec!["--device", "cpu", "--quiet", "run", &recipe, "--output-id", "single"];
    single.extend(run_flags);
    run(&mut home.command(&single));

    let dir = home.path().join("slurm");
    let shards = SHARDS.to_string();
    let mut args = vec!["slurm", &recipe, "--shards", &shards, "--output-id", OUTPUT_ID, "--dir", s(&dir), "--"];
    args.extend(run_flags);
    let written = run(&mut home.command(&args));
    let submit_line = text(&written);
    assert_eq!(submit_line.trim(), format!("bash {}", dir.join("submit.sh").display()));
    eprintln!("{}", std::fs::read_to_string(dir.join("shards.sbatch")).unwrap());

    // The driver runs with the test's environment, as a user's shell would: SYNTH_HOME is
    // written into the scripts, the Hugging Face cache variable travels with sbatch.
    let mut submit = Command::new("bash");
    submit.arg(dir.join("submit.sh")).env("SYNTH_HOME", home.path()).env("HF_HUB_CACHE", home.path().join("hf"));
    let submitted = run(submit.env_remove("HF_HOME"));
    let ids: Vec<String> = text(&submitted).split_whitespace().map(String::from).collect();
    let [array, merge] = [ids[0].clone(), ids[1].clone()];
    let victim = format!("{array}_1");

    // Shard 1 is cancelled once it has journaled a generation or two.
    let started = Instant::now();
    let mut seen = 0;
    while seen < 2 {
        seen = journaled(&home, &shard_id(1));
        let state = job_state(&victim);
        assert!(
            !state.starts_with("FAILED") && !state.starts_with("COMPLETED"),
            "shard 1 ended before it could be cancelled ({state}): {}",
            log(&dir, "shard-1.out")
        );
        assert!(started.elapsed() < Duration::from_secs(300), "shard 1 journaled nothing in 5 minutes ({state})");
        std::thread::sleep(Duration::from_millis(100));
    }
    run(Command::new("scancel").arg(&victim));
    while !job_state(&victim).starts_with("CANCELLED") {
        assert!(started.elapsed() < Duration::from_secs(330), "scancel did not end shard 1: {}", job_state(&victim));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("cancelled shard 1 after {seen} journaled generations; merge job: {}", job_state(&merge));
    assert!(!home.path().join("datasets").join(shard_id(1)).exists(), "a cancelled shard published");
    run(Command::new("bash").arg(dir.join("requeue.sh")).arg("1"));

    let merge_state = wait_for_merge(&home, &dir, started);
    eprintln!("merge job {merge}: {merge_state} after {:.0}s", started.elapsed().as_secs_f64());
    let resumed = log(&dir, "shard-1.out");
    let line = resumed.lines().find(|l| l.starts_with(&format!("resuming `{}`", shard_id(1))));
    let kept: usize = line
        .and_then(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("shard 1 did not resume from its journal:\n{resumed}"));
    assert!(kept + 1 >= seen, "shard 1 kept {kept} of the {seen} generations it had journaled");
    eprintln!("shard 1's log:\n{resumed}\nmerge log:\n{}", log(&dir, "merge.out"));
    let mut rows = 0;
    for split in ["train.jsonl", "validation.jsonl", "test.jsonl"] {
        let read = |id: &str| std::fs::read(home.path().join("datasets").join(id).join(split)).unwrap();
        assert!(read("big") == read("single"), "{split} of the merged dataset differs from the single-process run's");
        rows += read("big").iter().filter(|&&b| b == b'\n').count();
    }
    eprintln!("merged {rows} rows, byte-identical to the single-process run");
    assert!(rows >= 3, "too few rows to compare: {rows}");
}

/// Waits for the merge job to end and says how it ended; fails with the logs when it did not
/// complete or the dependency can no longer be met.
fn wait_for_merge(home: &Home, dir: &Path, started: Instant) -> String {
    let jobs = std::fs::read_to_string(dir.join("jobs.env")).unwrap();
    let merge = jobs.lines().find_map(|l| l.strip_prefix("MERGE=")).unwrap().to_string();
    loop {
        let state = job_state(&merge);
        if state.starts_with("COMPLETED") {
            assert!(home.path().join("datasets/big/manifest.json").exists(), "{}", log(dir, "merge.out"));
            return state;
        }
        let logs: String = (0..SHARDS).map(|i| log(dir, &format!("shard-{i}.out"))).collect();
        assert!(
            !state.contains("DependencyNeverSatisfied")
                && !state.starts_with("FAILED")
                && !state.starts_with("CANCELLED"),
            "merge job {merge}: {state}\nshards:\n{logs}\nmerge:\n{}",
            log(dir, "merge.out")
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the merge did not finish in 10 minutes: {state}\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

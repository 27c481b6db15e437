//! `--exclude` on the real SmolLM2-135M-Instruct GGUF: a run that excludes an earlier run's
//! output (same recipe, same seed, so its first candidates ask exactly what that run asked)
//! publishes no row whose request near-duplicates a row of the excluded dataset; the drops are
//! replaced by later variants, and the output is the same bytes at `--max-batch 1`, killed and
//! resumed, and at `--max-batch 16`.

mod common;

use common::{stderr, Home};
use serde_json::Value;
use synth::curation::dedup::{jaccard, shingles};

/// The default near-duplicate threshold (word-3-gram Jaccard).
const THRESHOLD: f64 = 0.7;

fn read(home: &Home, id: &str, file: &str) -> Vec<u8> {
    std::fs::read(home.path().join("datasets").join(id).join(file)).unwrap_or_default()
}

/// The user turns of every row of dataset `id`.
fn requests(home: &Home, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for split in ["train", "validation", "test"] {
        for line in String::from_utf8(read(home, id, &format!("{split}.jsonl"))).unwrap().lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            let users = row["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user");
            out.extend(users.map(|m| m["content"].as_str().unwrap().to_string()));
        }
    }
    out
}

#[test]
fn an_excluded_runs_requests_are_not_made_again() {
    let home = Home::with_quickstart_seed();
    let base = ["--device", "cpu", "--quiet", "run", "recipes/quickstart.json", "--filter", "all=off", "--limit", "6"];
    let out = home.synth(&[&base[..], &["--output-id", "earlier"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let earlier = requests(&home, "earlier");
    assert!(!earlier.is_empty());

    // The same recipe and seed: variant 0 of each seed row asks what `earlier` asked.
    let excluding = |id: &'static str, batch: &'static str| -> Vec<&'static str> {
        let more = ["--exclude", "earlier", "--num-samples", "6", "--max-candidates", "18", "--max-batch", batch];
        [&base[..], &more, &["--output-id", id]].concat()
    };
    let journal = home.path().join("datasets/.run-one/journal.jsonl");
    let killed = home.run_killed_after(&excluding("one", "1"), &journal, 6);
    eprintln!("run `one` killed partway: {killed}");
    if killed {
        let out = home.synth(&excluding("one", "1"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = home.synth(&excluding("sixteen", "16"));
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["train.jsonl", "validation.jsonl", "test.jsonl", "dropped.jsonl"] {
        assert_eq!(read(&home, "one", file), read(&home, "sixteen", file), "{file}");
    }

    let manifest: Value = serde_json::from_slice(&read(&home, "one", "manifest.json")).unwrap();
    let curation = &manifest["curation"];
    assert_eq!(curation["exclude"], serde_json::json!(["earlier"]), "{curation}");
    assert_eq!(curation["gates"]["excluded"], true);
    assert!(
        curation["droppedBy"]["excluded"].as_u64().unwrap_or(0) >= 1,
        "the first candidates repeat `earlier`: {curation}"
    );
    let made = requests(&home, "one");
    assert!(!made.is_empty(), "later variants replace the excluded candidates: {manifest}");
    for request in &made {
        for old in &earlier {
            let similarity = jaccard(&shingles(request), &shingles(old));
            assert!(similarity < THRESHOLD, "{request:?} near-duplicates the excluded {old:?} ({similarity:.2})");
        }
    }
}

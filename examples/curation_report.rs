//! The curation gates over the candidates of an interrupted or finished `synth run` journal:
//! what each gate would drop, with examples. For judging the gates on a real model's output.
//!
//!     SYNTH_HOME=... cargo run --release --example curation_report -- SEED_DATASET_ID JOURNAL.jsonl [EXAMPLES]
//!
//! Candidates are taken in candidate order (variant, then seed row); each one's last journaled
//! request (stage 1) and answer (stage 2) that finished with `stop` go through
//! `check_request`, `check_answer` and `accept`, as a run does. Prints the drops by gate, up
//! to EXAMPLES (default 2) examples per gate, and the rows that pass.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;
use synth::curation::{CurationSettings, Curator, Gate};
use synth::store::Store;

#[derive(Deserialize)]
struct Entry {
    stage: Option<u8>,
    row: Option<usize>,
    #[serde(default)]
    variant: u32,
    text: Option<String>,
    finish: Option<String>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [seed_id, journal, ..] = args.as_slice() else {
        anyhow::bail!("usage: curation_report SEED_DATASET_ID JOURNAL.jsonl [EXAMPLES]");
    };
    let examples: usize = args.get(2).map_or(Ok(2), |n| n.parse()).context("EXAMPLES")?;
    let seeds = Store::open_default()?.load_rows(seed_id)?;
    // (variant, row) → stage → last text that finished with `stop`.
    let mut candidates: BTreeMap<(u32, usize), BTreeMap<u8, Option<String>>> = BTreeMap::new();
    for line in std::fs::read_to_string(journal).context("reading the journal")?.lines() {
        let entry: Entry = serde_json::from_str(line)?;
        let (Some(stage), Some(row), Some(text)) = (entry.stage, entry.row, entry.text) else { continue };
        let done = entry.finish.as_deref() == Some("stop");
        candidates.entry((entry.variant, row)).or_default().insert(stage, done.then_some(text));
    }
    let mut curator = Curator::new(&CurationSettings::default(), &seeds, &[]);
    let mut shown: BTreeMap<Gate, Vec<String>> = BTreeMap::new();
    let (mut passed, mut degenerate) = (Vec::new(), 0usize);
    for ((variant, row), stages) in &candidates {
        let (Some(Some(request)), Some(Some(answer))) = (stages.get(&1), stages.get(&2)) else {
            degenerate += 1;
            continue;
        };
        let outcome = curator
            .check_request(*row, request)
            .and_then(|()| curator.check_answer(*row, request, answer))
            .and_then(|()| curator.accept(*row, &[(request.clone(), answer.clone())]));
        match outcome {
            Ok(()) => passed.push(format!("seed {row} variant {variant}: {request:?}")),
            Err(gate) => {
                let list = shown.entry(gate).or_default();
                if list.len() < examples {
                    list.push(format!("seed {row} variant {variant}: {request:?} → {answer:?}"));
                }
            }
        }
    }
    let record = curator.record("the run's model");
    println!(
        "{} candidates with a request and an answer, {degenerate} without (cut off or empty)",
        candidates.len() - degenerate
    );
    println!("passed every gate: {}", passed.len());
    println!("dropped by gate: {}", serde_json::to_string(&record.dropped_by)?);
    for (gate, list) in shown {
        println!("\n{gate}:");
        for example in list {
            let cut: String = example.chars().take(400).collect();
            println!("  - {cut}");
        }
    }
    println!("\npassed (first {examples}):");
    for example in passed.iter().take(examples) {
        println!("  - {}", example.chars().take(300).collect::<String>());
    }
    Ok(())
}

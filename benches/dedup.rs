//! Exact + near-duplicate deduplication of 100k synthetic rows with synth's curation
//! ([`Curator::accept`]: word-3-gram shingles, MinHash LSH candidates, exact Jaccard decisions),
//! time and peak memory.
//!
//!     cargo bench --bench dedup [-- --rows 100000 --threshold 0.7 --texts out.jsonl]
//!
//! Rows are requests built from a fixed vocabulary by a seeded generator (12 to 40 words each):
//! about 80% new, 10% near copies of an earlier row (one or two words changed, a word added or a
//! clause appended) and 10% exact copies (case and punctuation changed). `--texts` writes the
//! requests as JSONL for the peer (benches/dedup/run.sh runs datasketch's MinHashLSH on them and
//! prints both side by side). Prints: rows, seconds, rows/s, kept, exact and near drops, planted
//! duplicates missed, peak RSS.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use synth::curation::{CurationSettings, Curator, Gate};

const WORDS: &str = "the a of to and in for on with how what why when which can could should would I my our \
your you we they garden bread python list tuple function recipe basil tomato sourdough oven bake store fresh \
longer week day minutes hours capital city country river mountain history explain describe write poem haiku \
story letter email manager friend teacher student beginner expert child simple short long detailed step plan \
table compare difference between error bug fix test code loop string number largest smallest sort filter map \
energy solar wind water battery phone laptop screen interview job resume salary team meeting project deadline \
budget travel train flight hotel museum weekend rain autumn winter summer spring sky blue green red light heat";

struct Generated {
    texts: Vec<String>,
    /// Per row: `Some(original)` when it was planted as a copy of an earlier row.
    planted: Vec<Option<usize>>,
}

fn generate(rows: usize) -> Generated {
    let vocab: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    let mut texts: Vec<String> = Vec::with_capacity(rows);
    let mut planted = Vec::with_capacity(rows);
    for i in 0..rows {
        let kind = if i < 100 { 0 } else { pick(10) };
        let (text, from) = match kind {
            0..=7 => {
                let words: Vec<&str> = (0..12 + pick(29)).map(|_| vocab[pick(vocab.len())]).collect();
                (format!("{}?", words.join(" ")), None)
            }
            8 => {
                let from = pick(i);
                (texts[from].to_uppercase().replace('?', "!"), Some(from))
            }
            _ => {
                let from = pick(i);
                let mut words: Vec<String> = texts[from].split_whitespace().map(str::to_string).collect();
                match pick(3) {
                    0 => {
                        let at = pick(words.len());
                        words[at] = vocab[pick(vocab.len())].to_string();
                    }
                    1 => words.insert(pick(words.len()), vocab[pick(vocab.len())].to_string()),
                    _ => words.extend(["please", "and", "keep", "it", "short"].map(str::to_string)),
                }
                (words.join(" "), Some(from))
            }
        };
        texts.push(text);
        planted.push(from);
    }
    Generated { texts, planted }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
    kib.map_or(f64::NAN, |k| k / 1024.0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rows: usize = flag("--rows").map_or(Ok(100_000), |v| v.parse()).context("--rows")?;
    let threshold: f64 = flag("--threshold").map_or(Ok(0.7), |v| v.parse()).context("--threshold")?;
    let data = generate(rows);
    if let Some(path) = flag("--texts") {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| path.clone())?);
        for text in &data.texts {
            writeln!(out, "{}", serde_json::to_string(text)?)?;
        }
    }
    let rss_before = peak_rss_mib();
    let settings = CurationSettings { near_duplicate_threshold: threshold, ..CurationSettings::default() };
    let started = Instant::now();
    let mut curator = Curator::new(&settings, &[], &[]);
    let (mut kept, mut exact, mut near, mut missed) = (0usize, 0usize, 0usize, 0usize);
    for (i, text) in data.texts.iter().enumerate() {
        match curator.accept(0, &[(text.clone(), String::new())]) {
            Ok(()) => {
                kept += 1;
                missed += usize::from(data.planted[i].is_some());
            }
            Err(Gate::ExactDuplicate) => exact += 1,
            Err(_) => near += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let record = curator.record("none");
    println!(
        "synth dedup: {rows} rows, threshold {threshold}, {} bands x {} rows",
        record.min_hash.bands, record.min_hash.rows_per_band
    );
    println!("  seconds       {seconds:.2}");
    println!("  rows/s        {:.0}", rows as f64 / seconds);
    println!("  kept          {kept}");
    println!("  exact drops   {exact}");
    println!("  near drops    {near}");
    println!("  planted kept  {missed} (planted copies not dropped: a changed word in a short row can fall below the threshold)");
    println!("  peak RSS MiB  {:.0} (before dedup {:.0})", peak_rss_mib(), rss_before);
    println!("TSV\tsynth\t{rows}\t{seconds:.3}\t{kept}\t{}\t{:.0}", exact + near, peak_rss_mib());
    Ok(())
}

//! Throughput of synth's batched engine against candle-transformers' stock quantized Llama, on
//! the real SmolLM2-135M-Instruct Q4_1 GGUF.
//!
//!     cargo bench --bench throughput [-- --rows prefill,1,8,32 --threads 2 --tsv out.tsv]
//!
//! Rows: prefill of a 256-token prompt (prompt tokens/s), and 1, 8, 32 concurrent sequences
//! generating 128 tokens each after a 16-token prompt (generated tokens/s, all sequences
//! together, wall time from the first forward to the last token). Greedy, stop tokens ignored.
//!
//! Every (engine, row) runs in its own child process (this binary re-executed with
//! `SYNTH_BENCH_CHILD` set), so each gets a fresh heap, its own peak RSS (VmHWM) and its own
//! thread settings, which must be in the environment before candle builds its thread pools.
//!
//! The peer, `quantized_llama::ModelWeights`, has one position for the whole batch, so it
//! cannot mix prefill and decode or sequences of different lengths. Here every sequence of a
//! row has the same length, so by default it runs them as one same-length batch of b rows
//! (`--peer batch`; the prompts then go in one position per step, see `generate_peer`);
//! `--peer sequential` runs them one after another instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use serde::{Deserialize, Serialize};
use synth::engine::sampler::argmax;
use synth::engine::scheduler::{self, AlwaysAdmit, BatchModel, Logits};
use synth::engine::{Engine, Request, SamplingParams, SchedulerConfig, SeqStep};
use synth::model::load_gguf_decoder;

const CHILD_ENV: &str = "SYNTH_BENCH_CHILD";
const PREFILL_TOKENS: usize = 256;
const PROMPT_TOKENS: usize = 16;
const NEW_TOKENS: usize = 128;
const ALL_ROWS: [Row; 4] = [Row::Prefill, Row::Decode(1), Row::Decode(8), Row::Decode(32)];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Row {
    Prefill,
    Decode(usize),
}

impl Row {
    fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "prefill" | "p" => Ok(Row::Prefill),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Row::Decode(n)),
                _ => bail!("unknown row `{n}`\n\nhint: rows are `prefill` or a number of concurrent sequences, e.g. `--rows prefill,1,8,32`"),
            },
        }
    }
    fn key(&self) -> String {
        match self {
            Row::Prefill => "prefill".into(),
            Row::Decode(n) => n.to_string(),
        }
    }
    fn label(&self) -> String {
        match self {
            Row::Prefill => format!("prefill {PREFILL_TOKENS} tok"),
            Row::Decode(n) => format!("{n} seq x {NEW_TOKENS} new"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EngineKind {
    Synth,
    Candle,
}

impl EngineKind {
    fn name(&self) -> &'static str {
        match self {
            EngineKind::Synth => "synth",
            EngineKind::Candle => "candle",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        match s {
            "synth" => Ok(EngineKind::Synth),
            "candle" | "peer" => Ok(EngineKind::Candle),
            other => bail!("unknown engine `{other}`\n\nhint: engines are `synth` and `candle`"),
        }
    }
}

struct Options {
    rows: Vec<Row>,
    engines: Vec<EngineKind>,
    threads: usize,
    model: PathBuf,
    /// Timed repetitions of the prefill row (the best is reported).
    prefill_iters: usize,
    peer_batch: bool,
    tsv: Option<PathBuf>,
}

/// What a child measured, sent back to the parent as one JSON line on stdout.
#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    /// Prompt tokens (prefill row) or generated tokens (decode rows).
    tokens: usize,
    seconds: f64,
    load_seconds: f64,
    peak_rss_kib: u64,
    /// synth only: forward time split by step kind.
    steps: Option<StepBreakdown>,
}

/// Where synth's wall time went: forwards that carried prompt tokens, pure decode forwards,
/// and everything outside `forward` (scheduling, sampling).
#[derive(Debug, Default, Serialize, Deserialize)]
struct StepBreakdown {
    prefill_steps: usize,
    prefill_seconds: f64,
    decode_steps: usize,
    decode_seconds: f64,
}

fn main() -> Result<()> {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child(&spec);
    }
    // `cargo test --all-targets` runs bench targets too, without `--bench`: minutes of
    // measuring have no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("throughput: measuring only under `cargo bench --bench throughput`; skipped");
        return Ok(());
    }
    let options = parse_args()?;
    parent(&options)
}

fn parse_args() -> Result<Options> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut options = Options {
        rows: ALL_ROWS.to_vec(),
        engines: vec![EngineKind::Synth, EngineKind::Candle],
        threads: env_usize("BENCH_THREADS").unwrap_or(2),
        model: std::env::var_os("BENCH_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join(".cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf")),
        prefill_iters: 3,
        peer_batch: true,
        tsv: None,
    };
    if let Ok(rows) = std::env::var("BENCH_ROWS") {
        options.rows = rows.split(',').map(Row::parse).collect::<Result<_>>()?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("`{name}` needs a value"));
        match arg.as_str() {
            // cargo bench passes `--bench` to harness = false targets.
            "--bench" => {}
            "--rows" => options.rows = value("--rows")?.split(',').map(Row::parse).collect::<Result<_>>()?,
            "--engines" => {
                options.engines = value("--engines")?.split(',').map(EngineKind::parse).collect::<Result<_>>()?
            }
            "--threads" => options.threads = value("--threads")?.parse().context("`--threads` takes a number")?,
            "--model" => options.model = PathBuf::from(value("--model")?),
            "--prefill-iters" => {
                options.prefill_iters = value("--prefill-iters")?.parse().context("`--prefill-iters` takes a number")?
            }
            "--peer" => {
                options.peer_batch = match value("--peer")?.as_str() {
                    "batch" => true,
                    "sequential" => false,
                    other => bail!("unknown peer mode `{other}`\n\nhint: `--peer batch` or `--peer sequential`"),
                }
            }
            "--tsv" => options.tsv = Some(PathBuf::from(value("--tsv")?)),
            "-h" | "--help" => {
                println!(
                    "cargo bench --bench throughput -- [--rows prefill,1,8,32] [--engines synth,candle] [--threads 2]\n\
                     \x20   [--model PATH] [--prefill-iters 3] [--peer batch|sequential] [--tsv PATH]\n\
                     env: BENCH_ROWS, BENCH_THREADS, BENCH_MODEL"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n\nhint: run `cargo bench --bench throughput -- --help`"),
        }
    }
    if !options.model.exists() {
        bail!(
            "model `{}` not found\n\nhint: run `scripts/fetch-assets.sh`, or pass `--model PATH`",
            options.model.display()
        );
    }
    Ok(options)
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

fn parent(options: &Options) -> Result<()> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    println!("# synth throughput bench");
    println!("machine: {} | nproc {} | threads {}", cpu_model(), nproc(), options.threads);
    println!("commit:  {}", git_commit());
    println!("model:   {}", options.model.display());
    println!("load:    {}", load_average());
    println!(
        "peer:    candle-transformers quantized_llama::ModelWeights, {}",
        if options.peer_batch {
            "the sequences of a row as one same-length batch"
        } else {
            "the sequences of a row one after another"
        }
    );
    println!("greedy, stop tokens ignored; decode rows: {PROMPT_TOKENS}-token prompts, {NEW_TOKENS} new tokens each\n");

    let mut results: Vec<(Row, EngineKind, Measurement)> = Vec::new();
    for &row in &options.rows {
        for &engine in &options.engines {
            eprint!("running {} / {} ... ", engine.name(), row.label());
            let m = run_child(&exe, options, engine, row)?;
            eprintln!("{:.1} tok/s", m.tokens as f64 / m.seconds);
            results.push((row, engine, m));
        }
    }
    print_table(options, &results);

    if let Some(path) = &options.tsv {
        let mut out = std::fs::File::create(path).with_context(|| format!("creating `{}`", path.display()))?;
        writeln!(out, "row\tengine\ttok_per_s\tload_s\tpeak_rss_mib")?;
        for (row, engine, m) in &results {
            writeln!(
                out,
                "{}\t{}\t{:.2}\t{:.3}\t{:.1}",
                row.key(),
                engine.name(),
                m.tokens as f64 / m.seconds,
                m.load_seconds,
                m.peak_rss_kib as f64 / 1024.0
            )?;
        }
    }
    Ok(())
}

fn run_child(exe: &Path, options: &Options, engine: EngineKind, row: Row) -> Result<Measurement> {
    let threads = options.threads.to_string();
    let output = Command::new(exe)
        .env(CHILD_ENV, format!("{}:{}", engine.name(), row.key()))
        .env("BENCH_MODEL", &options.model)
        .env("BENCH_PREFILL_ITERS", options.prefill_iters.to_string())
        .env("BENCH_PEER_BATCH", if options.peer_batch { "1" } else { "0" })
        // candle sizes its rayon pool and its own barrier pool from these, once.
        .env("RAYON_NUM_THREADS", &threads)
        .env("CANDLE_NUM_THREADS", &threads)
        .output()
        .context("running the bench child")?;
    if !output.status.success() {
        bail!(
            "{} / {} failed ({}):\n{}",
            engine.name(),
            row.label(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("the bench child printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("reading the child's result `{line}`"))
}

fn print_table(options: &Options, results: &[(Row, EngineKind, Measurement)]) {
    let get =
        |row: Row, engine: EngineKind| results.iter().find(|(r, e, _)| *r == row && *e == engine).map(|(_, _, m)| m);
    let rate = |m: Option<&Measurement>| m.map(|m| m.tokens as f64 / m.seconds);
    let fmt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    println!(
        "{:<20} {:>12} {:>12} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "row", "synth tok/s", "candle tok/s", "ratio", "load s", "load s", "peak MiB", "peak MiB"
    );
    println!(
        "{:<20} {:>12} {:>12} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "", "", "(peer)", "s/peer", "synth", "candle", "synth", "candle"
    );
    for &row in &options.rows {
        let (s, c) = (get(row, EngineKind::Synth), get(row, EngineKind::Candle));
        let ratio = rate(s).zip(rate(c)).map(|(s, c)| s / c);
        println!(
            "{:<20} {:>12} {:>12} {:>8} {:>9} {:>9} {:>10} {:>10}",
            row.label(),
            fmt(rate(s), 1),
            fmt(rate(c), 1),
            fmt(ratio, 2),
            fmt(s.map(|m| m.load_seconds), 3),
            fmt(c.map(|m| m.load_seconds), 3),
            fmt(s.map(|m| m.peak_rss_kib as f64 / 1024.0), 0),
            fmt(c.map(|m| m.peak_rss_kib as f64 / 1024.0), 0),
        );
    }
    let breakdowns: Vec<_> =
        options.rows.iter().filter_map(|&row| Some((row, get(row, EngineKind::Synth)?.steps.as_ref()?))).collect();
    if !breakdowns.is_empty() {
        println!("\nsynth forwards by kind (steps with prompt tokens / decode-only steps; ms per step, logits copy-out included;");
        println!("'other' = share of wall time outside forward: scheduling, sampling)");
        println!(
            "{:<20} {:>8} {:>12} {:>8} {:>12} {:>10}",
            "row", "prefill", "ms/prefill", "decode", "ms/decode", "other"
        );
        for (row, b) in breakdowns {
            let m = get(row, EngineKind::Synth).expect("has a breakdown");
            let other = m.seconds - b.prefill_seconds - b.decode_seconds;
            println!(
                "{:<20} {:>8} {:>12.2} {:>8} {:>12.2} {:>9.1}%",
                row.label(),
                b.prefill_steps,
                per_step(b.prefill_seconds, b.prefill_steps),
                b.decode_steps,
                per_step(b.decode_seconds, b.decode_steps),
                100.0 * other / m.seconds,
            );
        }
    }
    println!("\nload after run: {}", load_average());
}

fn per_step(seconds: f64, steps: usize) -> f64 {
    if steps == 0 {
        0.0
    } else {
        1000.0 * seconds / steps as f64
    }
}

// ---- child: one engine, one row ----

fn child(spec: &str) -> Result<()> {
    let (engine, row) = spec.split_once(':').context("bad child spec")?;
    let (engine, row) = (EngineKind::parse(engine)?, Row::parse(row)?);
    let model = PathBuf::from(std::env::var_os("BENCH_MODEL").context("BENCH_MODEL is not set")?);
    let prefill_iters = env_usize("BENCH_PREFILL_ITERS").unwrap_or(3).max(1);
    let peer_batch = std::env::var("BENCH_PEER_BATCH").map_or(true, |v| v == "1");
    let m = match engine {
        EngineKind::Synth => synth_row(&model, row, prefill_iters)?,
        EngineKind::Candle => candle_row(&model, row, prefill_iters, peer_batch)?,
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

/// The prompts: deterministic pseudo-random ids, a different prompt per sequence.
fn prompt(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % vocab as u64) as u32
        })
        .collect()
}

fn greedy(max_new_tokens: usize) -> SamplingParams {
    SamplingParams { temperature: 0.0, top_p: 1.0, top_k: 0, max_new_tokens, seed: 0 }
}

/// The engine with each forward timed.
struct Timed {
    engine: Engine,
    steps: StepBreakdown,
}

impl BatchModel for Timed {
    fn max_len(&self) -> usize {
        BatchModel::max_len(&self.engine)
    }
    fn slots(&self) -> usize {
        BatchModel::slots(&self.engine)
    }
    fn forward(&mut self, batch: &[SeqStep]) -> Result<Logits> {
        let started = Instant::now();
        let rows = self.engine.forward(batch)?;
        let total = started.elapsed();
        if batch.iter().any(|s| s.tokens.len() > 1) {
            self.steps.prefill_steps += 1;
            self.steps.prefill_seconds += total.as_secs_f64();
        } else {
            self.steps.decode_steps += 1;
            self.steps.decode_seconds += total.as_secs_f64();
        }
        Ok(rows)
    }
}

fn synth_row(model: &Path, row: Row, prefill_iters: usize) -> Result<Measurement> {
    let started = Instant::now();
    let decoder = load_gguf_decoder(model, &Device::Cpu)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let vocab = decoder.dims.vocab;
    let (concurrency, prompt_len, new_tokens) = match row {
        Row::Prefill => (1, PREFILL_TOKENS, 1),
        Row::Decode(n) => (n, PROMPT_TOKENS, NEW_TOKENS),
    };
    // Slots exactly as long as the work: what a caller sizing the cache for it would do.
    let engine = Engine::new(decoder, concurrency, prompt_len + new_tokens, usize::MAX)?;
    let mut model = Timed { engine, steps: StepBreakdown::default() };
    let config = SchedulerConfig { prefill_chunk: concurrency * prompt_len, stop_tokens: vec![] };
    let requests = |seed: u64| -> Vec<Request> {
        (0..concurrency)
            .map(|i| Request { id: i, prompt: prompt(seed + i as u64, prompt_len, vocab), params: greedy(new_tokens) })
            .collect()
    };
    let run = |model: &mut Timed, reqs: Vec<Request>| -> Result<(usize, Duration)> {
        let mut generated = 0;
        let started = Instant::now();
        scheduler::run_to_completion(model, &config, reqs, None, &AlwaysAdmit, |c| {
            generated += c.tokens.len();
            Ok(())
        })?;
        Ok((generated, started.elapsed()))
    };
    // Warm-up: thread pools, page faults on the weights and the cache.
    run(&mut model, requests(1000))?;

    let (tokens, seconds) = match row {
        Row::Prefill => {
            let mut best = Duration::MAX;
            for i in 0..prefill_iters {
                best = best.min(run(&mut model, requests(i as u64))?.1);
            }
            (PREFILL_TOKENS, best.as_secs_f64())
        }
        Row::Decode(_) => {
            model.steps = StepBreakdown::default();
            let (generated, elapsed) = run(&mut model, requests(0))?;
            if generated != concurrency * NEW_TOKENS {
                bail!("synth generated {generated} tokens, expected {}", concurrency * NEW_TOKENS);
            }
            (generated, elapsed.as_secs_f64())
        }
    };
    let steps = matches!(row, Row::Decode(_)).then_some(model.steps);
    Ok(Measurement { tokens, seconds, load_seconds, peak_rss_kib: peak_rss_kib(), steps })
}

fn candle_row(model: &Path, row: Row, prefill_iters: usize, peer_batch: bool) -> Result<Measurement> {
    let started = Instant::now();
    let mut file = std::fs::File::open(model).with_context(|| format!("opening `{}`", model.display()))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let vocab = content.tensor_infos.get("token_embd.weight").context("no `token_embd.weight` tensor")?.shape.dims()[0];
    let mut weights = ModelWeights::from_gguf(content, &mut file, &Device::Cpu)?;
    let load_seconds = started.elapsed().as_secs_f64();

    match row {
        Row::Prefill => {
            let mut best = Duration::MAX;
            for i in 0..=prefill_iters {
                weights.clear_kv_cache();
                let input = Tensor::new(prompt(i as u64, PREFILL_TOKENS, vocab), &Device::Cpu)?.unsqueeze(0)?;
                let started = Instant::now();
                let logits = weights.forward(&input, 0)?.squeeze(0)?.to_vec1::<f32>()?;
                std::hint::black_box(argmax(&logits));
                // Iteration 0 is the warm-up.
                if i > 0 {
                    best = best.min(started.elapsed());
                }
            }
            Ok(Measurement {
                tokens: PREFILL_TOKENS,
                seconds: best.as_secs_f64(),
                load_seconds,
                peak_rss_kib: peak_rss_kib(),
                steps: None,
            })
        }
        Row::Decode(n) => {
            // Warm-up on a short run.
            generate_peer(&mut weights, &[prompt(1000, PROMPT_TOKENS, vocab)], 8)?;
            let prompts: Vec<Vec<u32>> = (0..n).map(|i| prompt(i as u64, PROMPT_TOKENS, vocab)).collect();
            let started = Instant::now();
            let generated = if peer_batch {
                generate_peer(&mut weights, &prompts, NEW_TOKENS)?
            } else {
                let mut total = 0;
                for p in &prompts {
                    total += generate_peer(&mut weights, std::slice::from_ref(p), NEW_TOKENS)?;
                }
                total
            };
            let seconds = started.elapsed().as_secs_f64();
            Ok(Measurement { tokens: generated, seconds, load_seconds, peak_rss_kib: peak_rss_kib(), steps: None })
        }
    }
}

/// Greedy generation for same-length prompts as one batch; returns tokens generated.
///
/// With more than one row the prompts are fed one position at a time (`[b, 1]` steps):
/// `ModelWeights::forward` on `[b > 1, len > 1]` fails in candle 0.11.1 (the last-position
/// slice it hands to the output matmul is not contiguous).
fn generate_peer(weights: &mut ModelWeights, prompts: &[Vec<u32>], new_tokens: usize) -> Result<usize> {
    weights.clear_kv_cache();
    let b = prompts.len();
    let len = prompts[0].len();
    let mut logits = if b == 1 {
        weights.forward(&Tensor::new(prompts[0].as_slice(), &Device::Cpu)?.unsqueeze(0)?, 0)?
    } else {
        let mut logits = None;
        for pos in 0..len {
            let column: Vec<u32> = prompts.iter().map(|p| p[pos]).collect();
            logits = Some(weights.forward(&Tensor::from_vec(column, (b, 1), &Device::Cpu)?, pos)?);
        }
        logits.context("empty prompt")?
    };
    let mut generated = 0;
    for pos in len..len + new_tokens {
        let rows = logits.to_vec2::<f32>()?;
        let next: Vec<u32> = rows.iter().map(|r| argmax(r)).collect();
        generated += b;
        if pos + 1 == len + new_tokens {
            break;
        }
        logits = weights.forward(&Tensor::from_vec(next, (b, 1), &Device::Cpu)?, pos)?;
    }
    Ok(generated)
}

// ---- machine facts ----

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).and_then(|l| Some(l.split_once(':')?.1.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown".into() };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|o| !o.stdout.is_empty());
    format!("{}{}", String::from_utf8_lossy(&head.stdout).trim(), if dirty { " (uncommitted changes)" } else { "" })
}

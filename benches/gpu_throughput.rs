//! synth's engine at the shapes of a real model with random weights made on the device:
//! `batch` concurrent sequences, each a `prompt`-token prompt followed by exactly `new`
//! generated tokens (greedy, no stop tokens), through the same engine, scheduler and
//! on-device sampler `synth run` uses. Prints one JSON line; benches/cuda/run.sh runs it next
//! to PyTorch + transformers `generate` (benches/cuda/hf_generate.py) on the same shapes.
//!
//!     cargo bench --features cuda --bench gpu_throughput -- --device cuda \
//!         --config benches/cuda/llama-3.1-8b-instruct.json --batch 32 [--prompt 256 --new 256]
//!
//! `--device cpu` with a small config runs the same code on the CPU (the tests of the bench
//! itself: benches/cuda/run.sh --smoke).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use synth::engine::kv_cache::KvCache;
use synth::engine::models::random_weights;
use synth::engine::scheduler::{self, AlwaysAdmit};
use synth::engine::{Engine, Request, SamplingParams, SchedulerConfig};

struct Args {
    device: String,
    config: String,
    batch: usize,
    prompt: usize,
    new: usize,
    prefill_chunk: usize,
}

fn parse() -> Result<Args> {
    let mut args =
        Args { device: "cuda".into(), config: String::new(), batch: 1, prompt: 256, new: 256, prefill_chunk: 8192 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue; // what `cargo bench` adds
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().with_context(|| format!("{flag} {value}: not a number"));
        match flag.as_str() {
            "--device" => args.device = value.clone(),
            "--config" => args.config = value.clone(),
            "--batch" => args.batch = number()?,
            "--prompt" => args.prompt = number()?,
            "--new" => args.new = number()?,
            "--prefill-chunk" => args.prefill_chunk = number()?,
            _ => bail!("unknown argument `{flag}`\n\nhint: --device cuda --config FILE --batch N [--prompt 256 --new 256 --prefill-chunk 8192]"),
        }
    }
    if args.config.is_empty() || args.batch == 0 || args.prompt == 0 || args.new == 0 {
        bail!("--config FILE is required; --batch, --prompt and --new must be positive");
    }
    Ok(args)
}

/// Parameters of the model `config.json` describes (weights of the decoder and output head).
fn parameters(config: &serde_json::Value) -> Result<u64> {
    let n = |key: &str| config.get(key).and_then(|v| v.as_u64()).with_context(|| format!("config has no `{key}`"));
    let (h, inter, layers, heads, kv, vocab) = (
        n("hidden_size")?,
        n("intermediate_size")?,
        n("num_hidden_layers")?,
        n("num_attention_heads")?,
        n("num_key_value_heads")?,
        n("vocab_size")?,
    );
    let hd = config.get("head_dim").and_then(|v| v.as_u64()).unwrap_or(h / heads);
    let tied = config.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(false);
    let qk_norm = if config.get("model_type").and_then(|v| v.as_str()) == Some("qwen3") { 2 * hd } else { 0 };
    let per_layer = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter + 2 * h + qk_norm;
    Ok(vocab * h * if tied { 1 } else { 2 } + layers * per_layer + h)
}

fn main() -> Result<()> {
    let args = parse()?;
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0).context("opening CUDA device 0 (build with --features cuda)")?,
        other => bail!("--device {other}: expected cpu or cuda"),
    };
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading `{}`", args.config))?;
    let config: serde_json::Value = serde_json::from_str(&text)?;

    let start = Instant::now();
    let decoder = random_weights(&text, &device)?;
    device.synchronize()?;
    let load_s = start.elapsed().as_secs_f64();
    let d = decoder.dims.clone();
    let dtype = decoder.dtype;
    let params = parameters(&config)?;
    let max_len = args.prompt + args.new;
    let cache_bytes = KvCache::bytes_per_token(d.n_layers, d.n_kv_heads, d.head_dim, dtype) * max_len * args.batch;
    let mut engine = Engine::new(decoder, args.batch, max_len, cache_bytes)?;
    anyhow::ensure!(engine.slots() == args.batch, "the cache holds {} sequences, not {}", engine.slots(), args.batch);
    let sched = SchedulerConfig { prefill_chunk: args.prefill_chunk, stop_tokens: Vec::new() };

    // Prompts of pseudo-random token ids; every sequence generates exactly `new` tokens.
    let requests = |count: usize, prompt: usize, new: usize| -> Vec<Request> {
        let mut state = 0x5eed_u64;
        (0..count)
            .map(|id| Request {
                id,
                prompt: (0..prompt)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((state >> 33) % d.vocab as u64) as u32
                    })
                    .collect(),
                params: SamplingParams { temperature: 0.0, top_p: 1.0, top_k: 0, max_new_tokens: new, seed: id as u64 },
            })
            .collect()
    };
    // Warm-up: kernels loaded, cuBLAS handles and workspaces made.
    scheduler::run_to_completion(&mut engine, &sched, requests(args.batch.min(4), 16, 4), None, &AlwaysAdmit, |_| {
        Ok(())
    })?;
    device.synchronize()?;

    let mut generated = 0usize;
    let start = Instant::now();
    scheduler::run_to_completion(
        &mut engine,
        &sched,
        requests(args.batch, args.prompt, args.new),
        None,
        &AlwaysAdmit,
        |c| {
            generated += c.tokens.len();
            Ok(())
        },
    )?;
    device.synchronize()?;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        generated == args.batch * args.new,
        "generated {generated} tokens, expected {}",
        args.batch * args.new
    );
    let line = serde_json::json!({
        "engine": "synth",
        "device": args.device,
        "dtype": format!("{dtype:?}").to_lowercase(),
        "batch": args.batch,
        "prompt": args.prompt,
        "new": args.new,
        "params": params,
        "weight_bytes": params * dtype.size_in_bytes() as u64,
        "load_s": load_s,
        "seconds": seconds,
        "generated": generated,
        "tok_s": generated as f64 / seconds,
    });
    println!("{line}");
    Ok(())
}

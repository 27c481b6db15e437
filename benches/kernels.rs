//! synth's packed CPU matmuls (src/engine/quant.rs, kquant.rs) against candle's `QMatMul` on
//! the same quantized weights, one shape at a time, side by side: where a step's matmul time
//! goes, without the rest of the forward.
//!
//!   cargo bench --bench kernels [-- --types q4k,q5_0,q6k,q8_0 --rows 1,4,32,256 --shapes smollm2,1b]
//!
//! Weights are random normal; every figure is the best of 5 timed runs of ~0.3 s each, on the
//! threads candle's pool has (RAYON_NUM_THREADS). GMAC/s = m·n·k / time.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use synth::engine::quant::PackedLinear;

/// (name, n, k) of each model's matmuls.
fn shapes(model: &str) -> Result<Vec<(&'static str, usize, usize)>> {
    Ok(match model {
        "smollm2" => vec![("q/o 576x576", 576, 576), ("gate/up 1536x576", 1536, 576), ("down 576x1536", 576, 1536)],
        "1b" => vec![("q/o 2048x2048", 2048, 2048), ("gate/up 8192x2048", 8192, 2048), ("down 2048x8192", 2048, 8192)],
        other => bail!("unknown shape set `{other}` (known: smollm2, 1b)"),
    })
}

fn dtype(name: &str) -> Result<GgmlDType> {
    Ok(match name {
        "q4k" => GgmlDType::Q4K,
        "q5k" => GgmlDType::Q5K,
        "q6k" => GgmlDType::Q6K,
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q5_0" => GgmlDType::Q5_0,
        "q4_1" => GgmlDType::Q4_1,
        other => bail!("unknown type `{other}` (known: q4k, q5k, q6k, q8_0, q4_0, q5_0, q4_1)"),
    })
}

/// Seconds per call of `f`: the best of 5 runs of enough calls to take ~0.3 s.
fn time(f: &dyn Fn()) -> f64 {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-6);
    let calls = ((0.3 / once) as usize).clamp(1, 10_000);
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_secs_f64() / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn list(args: &[String], flag: &str, default: &str) -> Vec<String> {
    let value = args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map_or(default, |v| v.as_str());
    value.split(',').map(str::to_string).collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs bench targets too, without `--bench`.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("kernels: measuring only under `cargo bench --bench kernels`; skipped");
        return Ok(());
    }
    let types = list(&args, "--types", "q4k,q5_0,q6k,q8_0");
    let rows: Vec<usize> = list(&args, "--rows", "1,4,32,256")
        .iter()
        .map(|r| r.parse().with_context(|| format!("--rows: `{r}` is not a number")))
        .collect::<Result<_>>()?;
    let models = list(&args, "--shapes", "smollm2,1b");
    let dev = Device::Cpu;
    println!("threads {} | {}", candle_core::utils::get_num_threads(), cpu_name());
    println!(
        "{:<6} {:<20} {:>5} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "type", "shape", "m", "synth ms", "candle ms", "synth", "candle", "ratio"
    );
    println!("{:<6} {:<20} {:>5} {:>10} {:>10} {:>9} {:>9} {:>7}", "", "", "", "", "", "GMAC/s", "GMAC/s", "s/c");
    for model in &models {
        for (name, n, k) in shapes(model)? {
            for t in &types {
                let dtype = dtype(t)?;
                if !k.is_multiple_of(dtype.block_size()) {
                    continue;
                }
                let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
                let q = QTensor::quantize(&w, dtype)?;
                let Some(packed) = PackedLinear::new(&q, false)? else {
                    println!("{t:<6} {name:<20}: no packed kernel");
                    continue;
                };
                let candle = QMatMul::from_qtensor(q)?;
                for &m in &rows {
                    let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
                    let ours = dev.with_context(|| time(&|| drop(packed.forward(&x).expect("synth matmul"))));
                    let theirs = dev.with_context(|| time(&|| drop(candle.forward(&x).expect("candle matmul"))));
                    let gmac = |s: f64| (m * n * k) as f64 / s / 1e9;
                    println!(
                        "{t:<6} {name:<20} {m:>5} {:>10.3} {:>10.3} {:>9.1} {:>9.1} {:>7.2}",
                        ours * 1e3,
                        theirs * 1e3,
                        gmac(ours),
                        gmac(theirs),
                        theirs / ours
                    );
                }
            }
        }
    }
    Ok(())
}

fn cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1));
    let vnni = info.contains("avx512_vnni");
    format!("{} | AVX-512 VNNI: {}", name.unwrap_or("unknown CPU").trim(), if vnni { "yes" } else { "no" })
}

//! Before a model's weights are read on the CPU: will they fit in the memory there is? A model
//! that does not is stopped with an error and a hint, instead of being killed by the kernel's
//! OOM killer halfway through loading.
//!
//! The need is estimated from the weight files: safetensors take their file size (bf16 stays
//! bf16, f32 stays f32) or twice it (f16, widened to f32); a GGUF takes 1.5 times its file
//! size (kquant.rs keeps 4-bit weights at 0.59–0.63 bytes each, 5-, 6- and 8-bit ones at
//! 1.06–1.13, which is 1.55 times a Q5_0 file's 0.69; a tied embedding table is kept both in
//! its file blocks and as the output's tiles; measured: peak RSS 1.41 times a 1B Q4_K_M file,
//! KV cache included). The KV cache comes on top (`--kv-cache-mib`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device};

use super::registry::{ModelSpec, WeightFormat};
use crate::engine::models::weights::{safetensors_dtypes, weight_dtype};
use crate::error::SynthError;

/// `SYNTH_MEMORY_LIMIT_MIB`: the most memory synth assumes it may use, when lower than what
/// the system and its cgroup say.
pub const LIMIT_ENV: &str = "SYNTH_MEMORY_LIMIT_MIB";

const GIB: f64 = (1u64 << 30) as f64;

/// Refuses to load `spec`'s weight `files` on the CPU when they would not fit.
pub fn check_fits(spec: &ModelSpec, files: &[PathBuf], device: &Device) -> Result<()> {
    if !matches!(device, Device::Cpu) {
        return Ok(());
    }
    let need = weight_bytes(spec, files, device)?;
    let Some((available, source)) = available_bytes() else { return Ok(()) };
    if need <= available {
        return Ok(());
    }
    let name = &spec.name;
    let gguf = spec
        .gguf
        .first()
        .map_or(String::new(), |v| format!("a quantized GGUF (`{name}:{}`, see `synth models list`), ", v.quant));
    Err(SynthError::failed(format!(
        "model `{name}` needs about {:.1} GiB of memory for its weights on the CPU, but only {:.1} GiB is available ({source})",
        need as f64 / GIB,
        available as f64 / GIB
    ))
    .hint(format!("use {gguf}a smaller model, `--device cuda`, or free memory; `{LIMIT_ENV}` sets the limit checked here"))
    .into())
}

/// The estimated resident size of the weights once loaded.
fn weight_bytes(spec: &ModelSpec, files: &[PathBuf], device: &Device) -> Result<u64> {
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    if spec.format == WeightFormat::Gguf {
        return Ok(bytes + bytes / 2);
    }
    let mut dtypes = std::collections::BTreeSet::new();
    for file in files {
        dtypes.extend(safetensors_dtypes(file)?);
    }
    let kept = weight_dtype(files, device)? == DType::BF16 || dtypes.iter().all(|d| d == "F32");
    Ok(if kept { bytes } else { bytes * 2 })
}

/// The smallest of: the system's available memory, the cgroup's room, [`LIMIT_ENV`]; and
/// which one it is, for the message.
fn available_bytes() -> Option<(u64, String)> {
    let mut best: Option<(u64, String)> = None;
    let mut offer = |bytes: Option<u64>, what: &str| {
        if let Some(b) = bytes.filter(|&b| best.as_ref().is_none_or(|(min, _)| b < *min)) {
            best = Some((b, what.to_string()));
        }
    };
    offer(mem_available(), "MemAvailable in /proc/meminfo");
    offer(cgroup_room(Path::new("/sys/fs/cgroup")), "the cgroup's memory.max");
    let env = std::env::var(LIMIT_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok());
    offer(env.map(|mib| mib << 20), &format!("`{LIMIT_ENV}`"));
    best
}

fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// cgroup v2: `memory.max - memory.current`, when there is a limit.
fn cgroup_room(dir: &Path) -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().and_then(|t| t.trim().parse::<u64>().ok());
    Some(read("memory.max")?.saturating_sub(read("memory.current").unwrap_or(0)))
}

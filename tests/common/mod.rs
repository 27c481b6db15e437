//! Shared test helpers: where the fetched assets live, and a clear failure when they are absent.
#![allow(dead_code)]

use std::path::PathBuf;

/// `.cache/assets` in the repository, filled by `scripts/fetch-assets.sh`, or `SYNTH_ASSETS`
/// (test binaries carried to another machine, see benches/cuda/run.sh).
pub fn assets() -> PathBuf {
    std::env::var_os("SYNTH_ASSETS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/assets"), PathBuf::from)
}

pub fn smollm2_gguf() -> PathBuf {
    let path = assets().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-assets.sh first", path.display());
    path
}

/// The tokenizer and chat template of a `tokenizer.json` + `tokenizer_config.json` pair in
/// the assets (`llama3_1`, `qwen3`).
pub fn hf_text(name: &str) -> (synth::model::TextCodec, synth::model::ChatTemplate) {
    let dir = assets().join(name);
    let config_path = dir.join("tokenizer_config.json");
    let codec = synth::model::TextCodec::from_files(&dir.join("tokenizer.json"), Some(&config_path), None)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/fetch-assets.sh", dir.display()));
    let config = synth::model::TokenizerConfig::load(&config_path).unwrap();
    let template =
        synth::model::ChatTemplate::new(config.chat_template.unwrap(), config.bos_token, config.eos_token).unwrap();
    (codec, template)
}

/// SmolLM2's tokenizer, template and stop ids, read from its GGUF as `synth` reads them.
pub fn smollm2_text() -> synth::model::ModelText {
    let registry = synth::model::Registry::load(None).unwrap();
    let spec = registry.get("SmolLM2-135M-Instruct").unwrap();
    let resolved =
        synth::model::resolve::resolve_in(spec, Some(&smollm2_gguf()), std::path::Path::new("/nonexistent"), None)
            .unwrap();
    synth::model::ModelText::load(&resolved).unwrap()
}

/// Deterministic pseudo-random token ids (a small LCG), so tests need no tokenizer.
pub fn token_ids(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % vocab as u64) as u32
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A command's stderr as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, that stderr holds every one of `needles`, and no panic.
#[track_caller]
pub fn fails(out: &std::process::Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    }
}

/// A path as the `&str` an argument list takes.
pub fn s(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// A scratch `SYNTH_HOME` holding the SmolLM2 model (linked) and, when asked, the quickstart
/// seed dataset; the Hugging Face cache points at an empty directory so nothing outside the
/// test is used.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    /// Runs `synth args` and SIGKILLs it once `journal` holds more than `lines` lines (it must
    /// get there within 5 minutes); returns whether it was still running, i.e. killed partway.
    pub fn run_killed_after(&self, args: &[&str], journal: &std::path::Path, lines: usize) -> bool {
        let count = || std::fs::read(journal).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
        let quiet = std::process::Stdio::null;
        let mut child = self.command(args).stdout(quiet()).stderr(quiet()).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while child.try_wait().unwrap().is_none() && count() <= lines {
            assert!(std::time::Instant::now() < deadline, "no progress in 5 minutes");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let killed = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        killed
    }

    pub fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::create_dir_all(dir.path().join("hf")).unwrap();
        std::os::unix::fs::symlink(smollm2_gguf(), dir.path().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
        Home { dir }
    }

    pub fn with_quickstart_seed() -> Home {
        let home = Home::new();
        let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/quickstart_seed.jsonl");
        let out = home.synth(&["datasets", "import", seed.to_str().unwrap(), "--id", "dataset_quickstart_seed"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        home
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Runs the `synth` binary with this home, from the repository root.
    pub fn synth(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// The `synth` command [`Home::synth`] runs, to spawn it instead.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_synth"));
        command
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SYNTH_HOME", self.dir.path())
            .env("HF_HUB_CACHE", self.dir.path().join("hf"))
            .env_remove("HF_HOME");
        command
    }
}

/// Runs all prompts through synth's decoder together for `steps` greedy steps: prompts are fed
/// in chunks of at most `chunk` tokens while rows already past their prompt decode, so steps
/// mix prefill and decode. Returns every step's logits per row, and the final sequences.
pub fn run_batched(
    decoder: &synth::engine::Decoder,
    prompts: &[Vec<u32>],
    chunk: usize,
    steps: usize,
) -> (Vec<Vec<Vec<f32>>>, Vec<Vec<u32>>) {
    run_batched_forced(decoder, prompts, chunk, steps, None)
}

/// [`run_batched`], but when `forced` is given row i continues with `forced[i]` instead of its
/// own greedy tokens (teacher forcing), so a low-precision run stays on the oracle's tokens.
pub fn run_batched_forced(
    decoder: &synth::engine::Decoder,
    prompts: &[Vec<u32>],
    chunk: usize,
    steps: usize,
    forced: Option<&[Vec<u32>]>,
) -> (Vec<Vec<Vec<f32>>>, Vec<Vec<u32>>) {
    use synth::engine::sampler::argmax;
    use synth::engine::SeqStep;
    let mut cache = decoder.new_cache(prompts.len(), 256).unwrap();
    let mut fed = vec![0usize; prompts.len()];
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); prompts.len()];
    while out.iter().any(|r| r.len() < steps) {
        let mut batch = Vec::new();
        let mut rows = Vec::new();
        for (i, seq) in seqs.iter().enumerate() {
            if out[i].len() == steps {
                continue;
            }
            let prefilling = fed[i] < prompts[i].len();
            let n = if prefilling { (prompts[i].len() - fed[i]).min(chunk) } else { 1 };
            let start = if prefilling { fed[i] } else { seq.len() - 1 };
            let logits = start + n >= prompts[i].len();
            batch.push(SeqStep { slot: i, start, tokens: &seq[start..start + n], logits });
            rows.push((i, n, logits));
        }
        let logits: Vec<Vec<f32>> = decoder.forward(&batch, &mut cache).unwrap().to_vec2().unwrap();
        let mut logits = logits.into_iter();
        for (i, n, wants) in rows {
            if fed[i] < prompts[i].len() {
                fed[i] += n;
            }
            if wants {
                let row = logits.next().unwrap();
                seqs[i].push(forced.map_or_else(|| argmax(&row), |f| f[i][out[i].len()]));
                out[i].push(row);
            }
        }
    }
    (out, seqs)
}

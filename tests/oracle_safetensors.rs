//! The batched engine on Hugging Face safetensors checkpoints against candle-transformers'
//! f32 Llama and Qwen3, run one prompt at a time. The checkpoints are tiny random-weight
//! models the tests write themselves (see `common/tiny_models.rs`), so nothing is downloaded;
//! the loading errors of sharded checkpoints and bad `config.json` files are checked here too.

mod common;
#[path = "common/tiny_models.rs"]
mod tiny_models;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, qwen3};
use synth::engine::models::{load_safetensors, safetensors_files, AttentionPath, Decoder};
use synth::engine::sampler::argmax;
use synth::error::render;
use synth::model::registry::{ModelSpec, Origin};
use synth::model::resolve::resolve_in;

const STEPS: usize = 32;
/// 49 and 96 are one token past and exactly at chunk boundaries of 48.
const LENGTHS: [usize; 10] = [3, 200, 17, 64, 5, 128, 33, 90, 49, 96];
/// Both sides run f32 with the same weights; what differs is summation order (batched vs.
/// one-row matmuls, candle-transformers' Qwen3 uses a fused CPU flash-attention kernel).
const TOLERANCE: f32 = 1e-4;

/// candle-transformers' model for one sequence: `forward` takes the next tokens at `pos`
/// and returns the last one's logits.
trait Oracle {
    fn reset(&mut self);
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32>;
}

struct LlamaOracle {
    model: llama::Llama,
    config: llama::Config,
    cache: llama::Cache,
}

impl LlamaOracle {
    fn new(config_json: &str, weights: &[std::path::PathBuf]) -> Self {
        let config = serde_json::from_str::<llama::LlamaConfig>(config_json).unwrap().into_config(false);
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, DType::F32, &Device::Cpu) }.unwrap();
        let model = llama::Llama::load(vb, &config).unwrap();
        let cache = llama::Cache::new(true, DType::F32, &config, &Device::Cpu).unwrap();
        Self { model, config, cache }
    }
}

impl Oracle for LlamaOracle {
    fn reset(&mut self) {
        self.cache = llama::Cache::new(true, DType::F32, &self.config, &Device::Cpu).unwrap();
    }
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32> {
        let input = Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        self.model.forward(&input, pos, &mut self.cache).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }
}

struct Qwen3Oracle(qwen3::ModelForCausalLM);

impl Qwen3Oracle {
    fn new(config_json: &str, weights: &[std::path::PathBuf]) -> Self {
        let config: qwen3::Config = serde_json::from_str(config_json).unwrap();
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, DType::F32, &Device::Cpu) }.unwrap();
        Self(qwen3::ModelForCausalLM::new(&config, vb).unwrap())
    }
}

impl Oracle for Qwen3Oracle {
    fn reset(&mut self) {
        self.0.clear_kv_cache();
    }
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32> {
        let input = Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        self.0.forward(&input, pos).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }
}

/// The oracle on one prompt alone, prefilled in chunks of `chunk` tokens (the engine's
/// split, so both do the same float work; see tests/oracle_gguf.rs), then decoding greedily:
/// the logits after the prompt and after each token.
fn oracle(model: &mut dyn Oracle, prompt: &[u32], chunk: usize) -> Vec<Vec<f32>> {
    model.reset();
    let mut logits = Vec::new();
    for (i, piece) in prompt.chunks(chunk).enumerate() {
        logits = model.forward(piece, i * chunk);
    }
    let mut rows = Vec::new();
    for pos in prompt.len()..prompt.len() + STEPS {
        let next = argmax(&logits);
        rows.push(logits);
        logits = model.forward(&[next], pos);
    }
    rows
}

/// Runs every prompt through both, whole and in 48-token chunks, with each of synth's
/// attention paths (per row, as on the CPU for exact models; batched, as on GPUs; fused, as on
/// the CPU for the others); asserts per row and step.
/// Returns the largest logit difference seen.
fn compare(name: &str, decoder: &Decoder, model: &mut dyn Oracle) -> f32 {
    let prompts: Vec<Vec<u32>> =
        LENGTHS.iter().enumerate().map(|(i, &n)| common::token_ids(100 + i as u64, n, decoder.dims.vocab)).collect();
    let mut worst = 0f32;
    let mut closest_call = f32::INFINITY;
    for chunk in [1000, 48] {
        let expected: Vec<Vec<Vec<f32>>> = prompts.iter().map(|p| oracle(model, p, chunk)).collect();
        let fused = decoder.device.is_cpu().then_some(AttentionPath::Fused);
        for path in [AttentionPath::PerRow, AttentionPath::Batched].into_iter().chain(fused) {
            let decoder = decoder.clone().with_attention_path(path);
            let (got, _) = common::run_batched(&decoder, &prompts, chunk, STEPS);
            let mut path_worst = 0f32;
            for (row, prompt) in prompts.iter().enumerate() {
                for step in 0..STEPS {
                    let (e, g) = (&expected[row][step], &got[row][step]);
                    let diff = common::max_abs_diff(e, g);
                    assert!(
                        diff <= TOLERANCE,
                        "{name} {path:?}: chunk {chunk} row {row} (prompt {} tokens) step {step}: max abs diff {diff}",
                        prompt.len()
                    );
                    assert_eq!(
                        argmax(e),
                        argmax(g),
                        "{name} {path:?}: chunk {chunk} row {row} step {step}: greedy token differs"
                    );
                    path_worst = path_worst.max(diff);
                    closest_call = closest_call.min(top2_gap(e));
                }
            }
            eprintln!("{name} {path:?} chunk {chunk}: max abs logit diff {path_worst:e}");
            worst = worst.max(path_worst);
        }
    }
    eprintln!("{name}: max abs logit diff {worst:e}; smallest top-2 logit gap {closest_call:e}");
    worst
}

fn top2_gap(logits: &[f32]) -> f32 {
    let best = argmax(logits) as usize;
    let second =
        logits.iter().enumerate().filter(|&(i, _)| i != best).map(|(_, &x)| x).fold(f32::NEG_INFINITY, f32::max);
    logits[best] - second
}

#[test]
fn tiny_llama_sharded_from_the_hf_cache_matches_candle_transformers() {
    let hub = tempfile::tempdir().unwrap();
    let mut tiny = tiny_models::write(hub.path(), "synth-test/tiny-llama", &tiny_models::llama_config(false), 2);
    tiny.add_file("tokenizer.json", b"{}");
    tiny.add_file("tokenizer_config.json", b"{}");
    // The way `synth` finds a model: a registry entry resolved against the hub cache.
    let spec = ModelSpec::parse(
        &serde_json::json!({
            "name": "tiny-llama",
            "hfRepo": tiny.repo,
            "architecture": "llama",
            "format": "safetensors",
            "files": tiny.files,
            "chatTemplate": "tokenizer_config",
            "stopTokens": ["<|eot|>"],
            "contextLength": 1024
        })
        .to_string(),
        Origin::User("tiny-llama.json".into()),
    )
    .unwrap();
    let resolved = resolve_in(&spec, None, Path::new("/nonexistent-synth-home"), Some(hub.path())).unwrap();
    let snapshot = resolved.source.path();
    let weights = safetensors_files(snapshot).unwrap();
    let names: Vec<_> = weights.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
    assert_eq!(names, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    assert!(
        weights.iter().all(|p| p.starts_with(snapshot)),
        "shards are read through the snapshot's links: {weights:?}"
    );

    let config = resolved.file("config.json").unwrap();
    let decoder = load_safetensors(config, &weights, &Device::Cpu).unwrap();
    let mut model = LlamaOracle::new(&tiny.config_json(), &weights);
    compare("llama (untied, 2 shards)", &decoder, &mut model);
}

#[test]
fn tiny_llama_with_tied_embeddings_matches_candle_transformers() {
    let hub = tempfile::tempdir().unwrap();
    let tiny = tiny_models::write(hub.path(), "synth-test/tiny-llama-tied", &tiny_models::llama_config(true), 1);
    let weights = safetensors_files(&tiny.snapshot).unwrap();
    assert_eq!(weights, [tiny.snapshot.join("model.safetensors")]);
    let decoder = load_safetensors(&tiny.config_path(), &weights, &Device::Cpu).unwrap();
    let mut model = LlamaOracle::new(&tiny.config_json(), &weights);
    compare("llama (tied)", &decoder, &mut model);
}

/// candle-transformers' Qwen3 takes chunks at an offset correctly on CPU: its fused
/// flash-attention kernel masks key `j` for query `i` when `j > offset + i`.
#[test]
fn tiny_qwen3_matches_candle_transformers() {
    let hub = tempfile::tempdir().unwrap();
    let tiny = tiny_models::write(hub.path(), "synth-test/tiny-qwen3", &tiny_models::qwen3_config(), 1);
    let weights = safetensors_files(&tiny.snapshot).unwrap();
    let decoder = load_safetensors(&tiny.config_path(), &weights, &Device::Cpu).unwrap();
    assert_eq!(decoder.dims.head_dim, 32);
    let mut model = Qwen3Oracle::new(&tiny.config_json(), &weights);
    compare("qwen3 (tied, head_dim 32)", &decoder, &mut model);
}

/// The device `SYNTH_TEST_DEVICE` names: `cpu` (the default) or `cuda` (a build with
/// `--features cuda` on a GPU machine; see benches/cuda/run.sh).
fn test_device() -> Device {
    match std::env::var("SYNTH_TEST_DEVICE").as_deref() {
        Err(_) | Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::new_cuda(0).expect("SYNTH_TEST_DEVICE=cuda needs a build with --features cuda and a GPU"),
        Ok(other) => panic!("SYNTH_TEST_DEVICE={other}: expected cpu or cuda"),
    }
}

/// Largest logit difference allowed, relative to the row's largest logit: exact-ish in f32;
/// bf16 (CUDA) keeps 8 significant bits per activation and weight.
fn device_tolerance(decoder: &Decoder) -> f32 {
    if decoder.dtype == DType::F32 {
        1e-4
    } else {
        5e-2
    }
}

/// The engine on the test device, with that device's default attention path and dtype
/// (on CUDA: batched attention, bf16 weights and KV cache), against the f32 oracle on the CPU.
/// Teacher-forced: both continue with the oracle's greedy tokens, so a near-tie that bf16
/// breaks the other way does not send the rest of the row down another path; a greedy token
/// must agree wherever the oracle's top-2 gap is wider than the tolerance.
fn compare_on_test_device(
    name: &str,
    config: &std::path::Path,
    weights: &[std::path::PathBuf],
    model: &mut dyn Oracle,
) {
    let device = test_device();
    let decoder = load_safetensors(config, weights, &device).unwrap();
    // The tiny checkpoints are f32: candle's matmuls, so the exact path's attention.
    assert_eq!(decoder.attention_path, AttentionPath::for_device(&device, true, decoder.dims.head_dim));
    let tolerance = device_tolerance(&decoder);
    let prompts: Vec<Vec<u32>> =
        LENGTHS.iter().enumerate().map(|(i, &n)| common::token_ids(300 + i as u64, n, decoder.dims.vocab)).collect();
    for chunk in [1000, 48] {
        let expected: Vec<Vec<Vec<f32>>> = prompts.iter().map(|p| oracle(model, p, chunk)).collect();
        let forced: Vec<Vec<u32>> = expected.iter().map(|rows| rows.iter().map(|r| argmax(r)).collect()).collect();
        let (got, _) = common::run_batched_forced(&decoder, &prompts, chunk, STEPS, Some(&forced));
        let mut worst = 0f32;
        for row in 0..prompts.len() {
            for step in 0..STEPS {
                let (e, g) = (&expected[row][step], &got[row][step]);
                let scale = e.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
                let relative = common::max_abs_diff(e, g) / scale;
                assert!(relative <= tolerance, "{name} on {device:?}: chunk {chunk} row {row} step {step}: logits differ by {relative} of the largest");
                if top2_gap(e) > 2.0 * tolerance * scale {
                    assert_eq!(
                        argmax(e),
                        argmax(g),
                        "{name} on {device:?}: chunk {chunk} row {row} step {step}: greedy token differs"
                    );
                }
                worst = worst.max(relative);
            }
        }
        eprintln!("{name} on {device:?} ({:?}, {:?}), chunk {chunk}: largest logit difference {worst:e} of the row's largest logit", decoder.dtype, decoder.attention_path);
    }
}

#[test]
fn tiny_models_on_the_test_device_match_candle_transformers() {
    let hub = tempfile::tempdir().unwrap();
    let tiny = tiny_models::write(hub.path(), "synth-test/tiny-llama", &tiny_models::llama_config(false), 2);
    let weights = safetensors_files(&tiny.snapshot).unwrap();
    compare_on_test_device(
        "llama",
        &tiny.config_path(),
        &weights,
        &mut LlamaOracle::new(&tiny.config_json(), &weights),
    );
    let tiny = tiny_models::write(hub.path(), "synth-test/tiny-qwen3", &tiny_models::qwen3_config(), 1);
    let weights = safetensors_files(&tiny.snapshot).unwrap();
    compare_on_test_device(
        "qwen3",
        &tiny.config_path(),
        &weights,
        &mut Qwen3Oracle::new(&tiny.config_json(), &weights),
    );
}

// Loading errors.

fn error_text<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
    render(&result.expect_err("expected an error"))
}

#[test]
fn safetensors_files_reports_a_missing_shard() {
    let hub = tempfile::tempdir().unwrap();
    let tiny = tiny_models::write(hub.path(), "synth-test/tiny-llama", &tiny_models::llama_config(false), 2);
    std::fs::remove_file(tiny.snapshot.join("model-00002-of-00002.safetensors")).unwrap();
    let err = error_text(safetensors_files(&tiny.snapshot));
    assert!(err.contains("1 of the 2 shards named by"), "{err}");
    assert!(err.contains("model-00002-of-00002.safetensors`"), "{err}");
    assert!(err.contains("hint: download the missing shards"), "{err}");
    // The index file itself may be given; an interrupted download leaves a dangling link.
    let index = tiny.snapshot.join("model.safetensors.index.json");
    std::os::unix::fs::symlink("../../blobs/not-there", tiny.snapshot.join("model-00002-of-00002.safetensors"))
        .unwrap();
    let err = error_text(safetensors_files(&index));
    assert!(err.contains("1 of the 2 shards"), "{err}");
}

#[test]
fn safetensors_files_rejects_a_malformed_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    for (text, expected) in [
        ("{\"weight_map\": ", "not valid JSON"),
        ("{\"metadata\": {}}", "no `weight_map` object"),
        ("{\"weight_map\": []}", "no `weight_map` object"),
        ("{\"weight_map\": {}}", "`weight_map` is empty"),
        ("{\"weight_map\": {\"lm_head.weight\": 3}}", "`weight_map` entry `lm_head.weight` is not a file name"),
        (
            "{\"weight_map\": {\"lm_head.weight\": \"../x.safetensors\"}}",
            "names `../x.safetensors`, which is not a file inside",
        ),
        ("{\"weight_map\": {\"lm_head.weight\": \"/x.safetensors\"}}", "names `/x.safetensors`"),
    ] {
        std::fs::write(&index, text).unwrap();
        let err = error_text(safetensors_files(dir.path()));
        assert!(err.contains("model.safetensors.index.json`: ") && err.contains(expected), "{text}: {err}");
    }
    std::fs::remove_file(&index).unwrap();
    let err = error_text(safetensors_files(dir.path()));
    assert!(err.contains("holds neither `model.safetensors` nor `model.safetensors.index.json`"), "{err}");
}

#[test]
fn load_safetensors_names_config_json_in_its_errors() {
    let hub = tempfile::tempdir().unwrap();
    let tiny = tiny_models::write(hub.path(), "synth-test/tiny-qwen3", &tiny_models::qwen3_config(), 1);
    let weights = safetensors_files(&tiny.snapshot).unwrap();
    let config = hub.path().join("config.json");
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = tiny_models::qwen3_config();
        edit(&mut value);
        std::fs::write(&config, value.to_string()).unwrap();
        error_text(load_safetensors(&config, &weights, &Device::Cpu))
    };

    let err = with(&|c| c["model_type"] = "mistral".into());
    assert!(err.contains("config.json`: model_type `mistral` is not supported (supported: `llama`, `qwen3`)"), "{err}");
    let err = with(&|c| {
        c.as_object_mut().unwrap().remove("model_type");
    });
    assert!(err.contains("config.json` has no `model_type`"), "{err}");
    let err = with(&|c| {
        c.as_object_mut().unwrap().remove("rms_norm_eps");
    });
    assert!(err.contains("config.json`") && err.contains("missing field `rms_norm_eps`"), "{err}");
    let err = with(&|c| c["head_dim"] = "wide".into());
    assert!(err.contains("config.json`") && err.contains("head_dim"), "{err}");
}

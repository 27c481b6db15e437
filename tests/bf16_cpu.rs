//! bf16 safetensors on the CPU stay bf16 (f32 sums, src/engine/bf16.rs): about 2 bytes per
//! parameter in memory instead of f32's 4, measured as the process's resident size; and a model
//! too large for the memory there is stops with an error before loading, not with a kill.

mod common;
#[path = "common/tiny_models.rs"]
mod tiny_models;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama;
use common::{fails, Home};
use synth::engine::models::load_safetensors;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_bf16_checkpoint_loads_on_the_cpu_at_about_two_bytes_per_parameter() {
    // A 1B-like layer shape at 6 layers: about 133M parameters, 266 MB in bf16.
    let mut config = tiny_models::llama_config(false);
    for (key, value) in [
        ("hidden_size", 1024),
        ("intermediate_size", 2816),
        ("num_hidden_layers", 6),
        ("num_attention_heads", 16),
        ("num_key_value_heads", 4),
        ("vocab_size", 32000),
    ] {
        config[key] = value.into();
    }
    config["torch_dtype"] = "bfloat16".into();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let weights_path = dir.path().join("model.safetensors");
    let params = {
        let tensors = tiny_models::weights(&config);
        let map: HashMap<String, Tensor> =
            tensors.iter().map(|(n, t)| (n.clone(), t.to_dtype(DType::BF16).unwrap())).collect();
        candle_core::safetensors::save(&map, &weights_path).unwrap();
        tensors.iter().map(|(_, t)| t.elem_count()).sum::<usize>()
    };

    let before = rss_bytes();
    let decoder = load_safetensors(&config_path, std::slice::from_ref(&weights_path), &Device::Cpu).unwrap();
    let per_param = rss_bytes().saturating_sub(before) as f64 / params as f64;
    eprintln!("{params} parameters: {per_param:.2} bytes each in memory");
    assert!((1.7..2.4).contains(&per_param), "{per_param:.2} bytes per parameter");

    // The same weights widened to f32 in candle-transformers' Llama: the logits agree up to
    // f32 summation order (sums of up to 2816 products, through 6 layers: ~1e-4 relative).
    let llama_config = serde_json::from_value::<llama::LlamaConfig>(config.clone()).unwrap().into_config(false);
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &Device::Cpu) }.unwrap();
    let model = llama::Llama::load(vb, &llama_config).unwrap();
    let mut cache = llama::Cache::new(true, DType::F32, &llama_config, &Device::Cpu).unwrap();
    let prompt = common::token_ids(7, 40, 32000);
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let want: Vec<f32> = model.forward(&input, 0, &mut cache).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let (logits, _) = common::run_batched(&decoder, &[prompt], 64, 1);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = common::max_abs_diff(&want, &logits[0][0]);
    assert!(diff <= 5e-4 * scale.max(1.0), "max abs logit diff {diff} (largest logit {scale})");
}

#[test]
fn a_model_larger_than_the_memory_limit_stops_before_loading() {
    let home = Home::new();
    let out = home
        .command(&["generate", "--device", "cpu", "--model", "SmolLM2-135M-Instruct", "--prompt", "hi"])
        .env("SYNTH_MEMORY_LIMIT_MIB", "64")
        .output()
        .unwrap();
    fails(
        &out,
        1,
        &["model `SmolLM2-135M-Instruct` needs about 0.1 GiB", "only 0.1 GiB is available", "SYNTH_MEMORY_LIMIT_MIB"],
    );
}

//! The device sampler (what CUDA and Metal runs use: logits stay on the device, only token ids
//! come back) driven through the real engine and scheduler on the SmolLM2 GGUF, run on the CPU:
//! greedy generations are the host sampler's token for token, and sampled ones are reproducible
//! and independent of the batch size.

mod common;

use candle_core::Device;
use synth::engine::scheduler::{self, AlwaysAdmit};
use synth::engine::{Engine, Request, SamplingParams, SchedulerConfig};
use synth::model::load_gguf_decoder;

fn generate(device_sampling: bool, max_batch: usize, temperature: f64, top_p: f64, top_k: usize) -> Vec<Vec<u32>> {
    let decoder = load_gguf_decoder(&common::smollm2_gguf(), &Device::Cpu).unwrap();
    let mut engine = Engine::new(decoder, max_batch, 96, usize::MAX).unwrap().with_device_sampling(device_sampling);
    let requests: Vec<Request> = (0..6)
        .map(|i| Request {
            id: i,
            prompt: common::token_ids(i as u64, 5 + 9 * i, 49152),
            params: SamplingParams { temperature, top_p, top_k, max_new_tokens: 24, seed: 100 + i as u64 },
        })
        .collect();
    let config = SchedulerConfig { prefill_chunk: 64, stop_tokens: vec![] };
    let mut out = vec![Vec::new(); 6];
    scheduler::run_to_completion(&mut engine, &config, requests, None, &AlwaysAdmit, |done| {
        out[done.id] = done.tokens;
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn greedy_on_the_device_is_the_host_sampler_token_for_token() {
    assert_eq!(generate(true, 6, 0.0, 1.0, 0), generate(false, 6, 0.0, 1.0, 0));
}

#[test]
fn sampling_on_the_device_is_reproducible_and_batch_invariant() {
    let all = generate(true, 6, 0.8, 0.9, 40);
    assert!(all.iter().all(|row| row.len() == 24));
    assert_eq!(all, generate(true, 2, 0.8, 0.9, 40), "max batch 6 vs 2");
    assert_ne!(all, generate(true, 6, 0.0, 1.0, 0), "sampling at 0.8 looks greedy");
}

//! The batched engine against candle-transformers' quantized Llama, run one prompt at a time,
//! on the real SmolLM2-135M-Instruct GGUF.

mod common;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use synth::engine::sampler::argmax;
use synth::model::load_gguf_decoder;

const STEPS: usize = 32;
const LENGTHS: [usize; 8] = [3, 200, 17, 64, 5, 128, 33, 90];

/// Oracle: candle-transformers' model on one prompt alone, prefilled in chunks of `chunk`
/// tokens, then decoding greedily with its own KV cache; the logits after the prompt and
/// after each token.
///
/// The chunking is the same as the engine's because on this Q4_1 model logits are sensitive
/// to float summation order: activations are requantized to 8 bits before every matmul, so a
/// one-ulp difference can flip a quantization step. The oracle fed a 200-token prompt whole
/// and the same oracle fed it in 48-token chunks differ by ~0.6 in the logits, so equal work
/// is the only fair comparison.
fn oracle(model: &mut ModelWeights, prompt: &[u32], chunk: usize) -> Vec<Vec<f32>> {
    model.clear_kv_cache();
    let mut rows = Vec::new();
    let mut logits = Vec::new();
    for (i, piece) in prompt.chunks(chunk).enumerate() {
        let input = Tensor::new(piece, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        logits = model.forward(&input, i * chunk).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
    }
    for pos in prompt.len()..prompt.len() + STEPS {
        let next = argmax(&logits);
        rows.push(logits);
        let input = Tensor::new(&[next], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        logits = model.forward(&input, pos).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
    }
    rows
}

#[test]
fn batched_gguf_matches_candle_transformers_one_prompt_at_a_time() {
    let decoder = load_gguf_decoder(&common::smollm2_gguf(), &Device::Cpu).unwrap();
    let prompts: Vec<Vec<u32>> =
        LENGTHS.iter().enumerate().map(|(i, &n)| common::token_ids(i as u64, n, decoder.dims.vocab)).collect();
    let path = common::smollm2_gguf();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    // Whole prompts in one step, then prompts fed 48 tokens at a time while other rows decode.
    for chunk in [1000, 48] {
        let expected: Vec<Vec<Vec<f32>>> = prompts.iter().map(|p| oracle(&mut model, p, chunk)).collect();
        let (logits, _) = common::run_batched(&decoder, &prompts, chunk, STEPS);
        for (row, prompt) in prompts.iter().enumerate() {
            for step in 0..STEPS {
                let (e, g) = (&expected[row][step], &logits[row][step]);
                let diff = common::max_abs_diff(e, g);
                assert!(
                    diff <= 1e-2,
                    "chunk {chunk} row {row} (prompt {} tokens) step {step}: max abs diff {diff}",
                    prompt.len()
                );
                assert_eq!(argmax(e), argmax(g), "chunk {chunk} row {row} step {step}: greedy token differs");
            }
        }
    }
}

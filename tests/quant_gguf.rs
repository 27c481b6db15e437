//! The packed CPU matmuls against candle's QMatMul on every weight of the real SmolLM2 GGUF:
//! the results must be the same f32 bits (see src/engine/quant.rs for why).

mod common;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul};
use candle_core::{Device, Module, Tensor};
use synth::engine::quant::{exact_capable, PackedLinear};

#[test]
fn packed_matmuls_are_bit_identical_to_candle_on_every_smollm2_weight() {
    let path = common::smollm2_gguf();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let (mut packed_count, mut q4_1_count) = (0, 0);
    for name in names {
        let w = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        let Ok((n, k)) = w.shape().dims2() else { continue };
        let dtype = w.dtype();
        q4_1_count += usize::from(dtype == GgmlDType::Q4_1);
        // The bundled file is one whose every matrix can give candle's bits, so the loader
        // asks for exact kernels throughout (`Gguf::exact`).
        assert!(exact_capable(dtype, k), "`{name}` ({dtype:?}, k = {k}) has no exact kernel");
        let Some(packed) = PackedLinear::new(&w, true).unwrap() else {
            assert_ne!(dtype, GgmlDType::Q4_1, "`{name}`: every Q4_1 weight must be packed");
            continue;
        };
        packed_count += 1;
        let reference = QMatMul::from_qtensor(w).unwrap();
        // The wide output matrix is slow in candle; fewer row counts there.
        let ms: &[usize] = if n > 10_000 { &[1, 9] } else { &[1, 3, 8, 33] };
        for (seed, &m) in ms.iter().enumerate() {
            let x = activations(seed as u64 + packed_count as u64, m, k);
            let want: Vec<u32> = reference
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|f| f.to_bits())
                .collect();
            let got: Vec<u32> = packed
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|f| f.to_bits())
                .collect();
            let differ = want.iter().zip(&got).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "`{name}` ({dtype:?}, {n}x{k}), m = {m}: {differ} of {} outputs differ", want.len());
        }
    }
    assert!(q4_1_count > 0 && packed_count >= q4_1_count, "{packed_count} packed, {q4_1_count} Q4_1");
    eprintln!("{packed_count} weights bit-identical ({q4_1_count} Q4_1)");
}

/// Activations with the spread of a real hidden state: mostly small, a few large outliers.
fn activations(seed: u64, m: usize, k: usize) -> Tensor {
    let ids = common::token_ids(seed, m * k, 1 << 20);
    let xs: Vec<f32> = ids
        .iter()
        .map(|&i| {
            let u = i as f32 / (1 << 20) as f32 - 0.5;
            if i % 97 == 0 {
                u * 40.0
            } else {
                u * 2.0
            }
        })
        .collect();
    Tensor::from_vec(xs, (m, k), &Device::Cpu).unwrap()
}

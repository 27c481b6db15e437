//! Reading weights into the shared [`Decoder`]: GGUF metadata and tensors under llama.cpp's
//! names, Hugging Face safetensors under transformers' names, and the dtype each device uses.

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::decoder::{self, Attention, Decoder, Dims, Layer, Mlp, Rope};

/// Dense weights and activations: f32 on CPU (its matmuls are fastest and exact there),
/// bf16 on CUDA, f16 on Metal.
pub fn activation_dtype(device: &Device) -> DType {
    match device {
        Device::Cpu => DType::F32,
        Device::Cuda(_) => DType::BF16,
        Device::Metal(_) => DType::F16,
    }
}

/// A GGUF file being read: metadata lookups with errors that name the key.
pub struct Gguf {
    pub content: gguf_file::Content,
    pub file: std::fs::File,
    pub device: Device,
    /// Whether every matrix in the file can go through a matmul that gives candle's bits (see
    /// [`crate::engine::quant::exact_capable`]): then all of them do, and synth's output is
    /// candle's; otherwise every layer takes the fastest kernel for its type.
    pub exact: bool,
}

impl Gguf {
    pub fn new(content: gguf_file::Content, file: std::fs::File, device: &Device) -> Self {
        let exact = content.tensor_infos.values().all(|info| match info.shape.dims() {
            [_, k] => crate::engine::quant::exact_capable(info.ggml_dtype, *k),
            _ => true,
        });
        Self { content, file, device: device.clone(), exact }
    }

    fn value(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content.metadata.get(key).with_context(|| format!("GGUF metadata key `{key}` is missing"))
    }
    pub fn string(&self, key: &str) -> Result<String> {
        Ok(self.value(key)?.to_string().map_err(|e| anyhow::anyhow!("GGUF metadata `{key}`: {e}"))?.clone())
    }
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.value(key)?;
        let n = v
            .to_u32()
            .map(u64::from)
            .or_else(|_| v.to_u64())
            .map_err(|e| anyhow::anyhow!("GGUF metadata `{key}`: {e}"))?;
        Ok(n as usize)
    }
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.value(key)?.to_f32().map_err(|e| anyhow::anyhow!("GGUF metadata `{key}`: {e}"))
    }
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    pub fn qtensor(&mut self, name: &str) -> Result<candle_core::quantized::QTensor> {
        self.content
            .tensor(&mut self.file, name, &self.device)
            .map_err(|e| anyhow::anyhow!("GGUF tensor `{name}`: {e}"))
    }
    pub fn linear(&mut self, name: &str) -> Result<decoder::Linear> {
        Ok(decoder::Linear::from_qtensor(self.qtensor(name)?, self.exact)?)
    }
    pub fn dense(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.qtensor(name)?.dequantize(&self.device)?)
    }
    pub fn norm(&mut self, name: &str, eps: f64) -> Result<decoder::RmsNorm> {
        Ok(decoder::RmsNorm { weight: self.dense(name)?, eps })
    }
}

/// Parses a family's `config.json` fields, naming the offending field in the error.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(config_json: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(config_json);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("field `{path}`: {inner}")
        }
    })
}

/// Safetensors weight helpers shared by the families' loaders.
pub(crate) fn dense_linear(vb: &VarBuilder, out_dim: usize, in_dim: usize) -> Result<decoder::Linear> {
    Ok(decoder::Linear::from_dense(vb.get((out_dim, in_dim), "weight")?)?)
}

/// A norm's weight in the activations' dtype (the weights may be kept in bf16 on the CPU).
pub(crate) fn dense_norm(vb: &VarBuilder, dim: usize, eps: f64) -> Result<decoder::RmsNorm> {
    let dtype = activation_dtype(vb.device());
    Ok(decoder::RmsNorm { weight: vb.get(dim, "weight")?.to_dtype(dtype)?, eps })
}

/// The dtype safetensors weights are loaded in: the activations' (see [`activation_dtype`]),
/// except that a bf16 checkpoint stays bf16 on the CPU, computed with f32 sums.
pub fn weight_dtype(weights: &[std::path::PathBuf], device: &Device) -> Result<DType> {
    if !matches!(device, Device::Cpu) {
        return Ok(activation_dtype(device));
    }
    let mut all_bf16 = !weights.is_empty();
    for path in weights {
        all_bf16 &= safetensors_dtypes(path)?.iter().all(|d| d == "BF16");
    }
    Ok(if all_bf16 { DType::BF16 } else { DType::F32 })
}

/// The distinct `dtype`s in a safetensors file's header (8-byte length, then JSON).
pub fn safetensors_dtypes(path: &std::path::Path) -> Result<std::collections::BTreeSet<String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(|| format!("`{}` is too short for a safetensors file", path.display()))?;
    let len = u64::from_le_bytes(len);
    anyhow::ensure!(len <= 100 << 20, "`{}`: safetensors header of {len} bytes is too large", path.display());
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).with_context(|| format!("`{}`: truncated safetensors header", path.display()))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("`{}`: the safetensors header is not JSON", path.display()))?;
    let tensors = header.as_object().into_iter().flatten().filter(|(name, _)| *name != "__metadata__");
    Ok(tensors.filter_map(|(_, info)| info.get("dtype")?.as_str().map(String::from)).collect())
}

/// What a family's `config.json` says about its decoder body, beyond [`Dims`].
pub(crate) struct HfShape {
    pub dims: Dims,
    pub intermediate: usize,
    pub eps: f64,
    /// Qwen3's per-head query/key norms.
    pub qk_norm: bool,
    /// The output head is the embedding table.
    pub tied: bool,
    pub rope: Rope,
}

/// Reads a Hugging Face checkpoint's decoder body (the blocks, final norm and output head)
/// under the names both families use.
pub(crate) fn hf_decoder(vb: &VarBuilder, shape: HfShape, device: &Device) -> Result<Decoder> {
    let HfShape { dims, intermediate, eps, qk_norm, tied, rope } = shape;
    let (h, hd) = (dims.hidden, dims.head_dim);
    let (qd, kvd) = (dims.n_heads * hd, dims.n_kv_heads * hd);
    let m = vb.pp("model");
    let embed = m.pp("embed_tokens").get((dims.vocab, h), "weight")?;
    let mut layers = Vec::with_capacity(dims.n_layers);
    for i in 0..dims.n_layers {
        let l = m.pp(format!("layers.{i}"));
        let a = l.pp("self_attn");
        let p = l.pp("mlp");
        layers.push(Layer {
            attn_norm: dense_norm(&l.pp("input_layernorm"), h, eps)?,
            attn: Attention {
                q: dense_linear(&a.pp("q_proj"), qd, h)?,
                k: dense_linear(&a.pp("k_proj"), kvd, h)?,
                v: dense_linear(&a.pp("v_proj"), kvd, h)?,
                o: dense_linear(&a.pp("o_proj"), h, qd)?,
                q_norm: if qk_norm { Some(dense_norm(&a.pp("q_norm"), hd, eps)?) } else { None },
                k_norm: if qk_norm { Some(dense_norm(&a.pp("k_norm"), hd, eps)?) } else { None },
            },
            mlp_norm: dense_norm(&l.pp("post_attention_layernorm"), h, eps)?,
            mlp: Mlp {
                gate: dense_linear(&p.pp("gate_proj"), intermediate, h)?,
                up: dense_linear(&p.pp("up_proj"), intermediate, h)?,
                down: dense_linear(&p.pp("down_proj"), h, intermediate)?,
            },
        });
    }
    let lm_head = if tied {
        decoder::Linear::from_dense(embed.clone())?
    } else {
        dense_linear(&vb.pp("lm_head"), dims.vocab, h)?
    };
    let dtype = activation_dtype(device);
    // bf16 weights on the CPU go through bf16.rs's kernel, not candle's matmul.
    let exact = vb.dtype() != DType::BF16;
    let attention_path = decoder::AttentionPath::for_device(device, exact, hd);
    Ok(Decoder {
        norm: dense_norm(&m.pp("norm"), h, eps)?,
        embed: decoder::Embedding::Dense(embed),
        layers,
        lm_head,
        rope,
        dims,
        dtype,
        device: device.clone(),
        attention_path,
    })
}

/// Reads a GGUF file's decoder body under llama.cpp's tensor names; the output head is the
/// embedding table when the file has no `output.weight`. Activations are f32: quantized
/// matmuls take f32 on every device.
pub(crate) fn gguf_decoder(
    g: &mut Gguf,
    dims: Dims,
    eps: f64,
    qk_norm: bool,
    embed: candle_core::quantized::QTensor,
    rope: Rope,
) -> Result<Decoder> {
    let mut layers = Vec::with_capacity(dims.n_layers);
    for i in 0..dims.n_layers {
        let p = format!("blk.{i}");
        layers.push(Layer {
            attn_norm: g.norm(&format!("{p}.attn_norm.weight"), eps)?,
            attn: Attention {
                q: g.linear(&format!("{p}.attn_q.weight"))?,
                k: g.linear(&format!("{p}.attn_k.weight"))?,
                v: g.linear(&format!("{p}.attn_v.weight"))?,
                o: g.linear(&format!("{p}.attn_output.weight"))?,
                q_norm: if qk_norm { Some(g.norm(&format!("{p}.attn_q_norm.weight"), eps)?) } else { None },
                k_norm: if qk_norm { Some(g.norm(&format!("{p}.attn_k_norm.weight"), eps)?) } else { None },
            },
            mlp_norm: g.norm(&format!("{p}.ffn_norm.weight"), eps)?,
            mlp: Mlp {
                gate: g.linear(&format!("{p}.ffn_gate.weight"))?,
                up: g.linear(&format!("{p}.ffn_up.weight"))?,
                down: g.linear(&format!("{p}.ffn_down.weight"))?,
            },
        });
    }
    let device = g.device.clone();
    let table = decoder::Embedding::from_qtensor(&embed, &device)?;
    let lm_head = if g.has_tensor("output.weight") {
        g.linear("output.weight")?
    } else {
        decoder::Linear::from_qtensor(embed, g.exact)?
    };
    let attention_path = decoder::AttentionPath::for_device(&device, g.exact, dims.head_dim);
    Ok(Decoder {
        norm: g.norm("output_norm.weight", eps)?,
        embed: table,
        layers,
        lm_head,
        rope,
        dims,
        dtype: DType::F32,
        device,
        attention_path,
    })
}

//! `--device`: which candle device runs the model.

use anyhow::Result;
use candle_core::Device;

use crate::error::SynthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA if this build has it and a GPU answers, else Metal likewise, else CPU.
    Auto,
    Cpu,
    Cuda,
    Metal,
}

/// Opens the device, or says which build feature is missing.
pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if !cfg!(feature = "cuda") {
                return Err(missing_feature("cuda"));
            }
            Device::new_cuda(0).map_err(|e| {
                SynthError::failed(format!("cannot open CUDA device 0: {e}"))
                    .hint("check `nvidia-smi`, or run with `--device cpu`")
                    .into()
            })
        }
        DeviceChoice::Metal => {
            if !cfg!(feature = "metal") {
                return Err(missing_feature("metal"));
            }
            Device::new_metal(0).map_err(|e| SynthError::failed(format!("cannot open Metal device 0: {e}")).into())
        }
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                if let Ok(device) = Device::new_cuda(0) {
                    return Ok(device);
                }
            }
            if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                if let Ok(device) = Device::new_metal(0) {
                    return Ok(device);
                }
            }
            Ok(Device::Cpu)
        }
    }
}

fn missing_feature(feature: &str) -> anyhow::Error {
    SynthError::invalid(format!(
        "`--device {feature}` needs a synth built with the `{feature}` feature, and this one was not"
    ))
    .hint(format!("rebuild with `cargo build --release --features {feature}`, or run with `--device cpu`"))
    .into()
}

/// A short name for logs and manifests.
pub fn name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_without_the_feature_names_the_feature() {
        if cfg!(feature = "cuda") {
            return;
        }
        let err = open(DeviceChoice::Cuda).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        let text = crate::error::render(&err);
        assert!(text.contains("`cuda` feature") && text.contains("--features cuda"), "{text}");
    }
}

//! `--device`: which candle devices run the model. `cpu`, `auto`, `cuda`, `metal` (device 0),
//! `cuda:N`, a list `cuda:0,2`, or `cuda:all` (likewise `metal:`); one engine runs per device.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use candle_core::Device;

use crate::error::SynthError;

/// The kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CUDA if this build has it and a GPU answers, else Metal likewise, else CPU.
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    fn flag(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Backend::Cuda => "CUDA",
            Backend::Metal => "Metal",
            other => other.flag(),
        }
    }
}

/// Device numbers are kept as a bit set, so a choice is `Copy`; 64 GPUs per machine is far
/// more than any host has.
const MAX_ORDINALS: usize = 64;

/// Which devices of a backend: every one present, or those listed (ascending, no repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Devices {
    All,
    Listed(u64),
}

impl Devices {
    fn one(ordinal: usize) -> Devices {
        Devices::Listed(1 << ordinal)
    }

    /// The listed ordinals in ascending order; `None` for `All`.
    pub fn listed(self) -> Option<Vec<usize>> {
        match self {
            Devices::All => None,
            Devices::Listed(bits) => Some((0..MAX_ORDINALS).filter(|i| bits & (1 << i) != 0).collect()),
        }
    }
}

/// A parsed `--device`: a backend and which of its devices. `cuda` means `cuda:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceChoice {
    pub backend: Backend,
    pub devices: Devices,
}

impl DeviceChoice {
    pub const AUTO: DeviceChoice = DeviceChoice { backend: Backend::Auto, devices: Devices::Listed(1) };
    pub const CPU: DeviceChoice = DeviceChoice { backend: Backend::Cpu, devices: Devices::Listed(1) };

    /// Whether this may name more than one device (`cuda:all`, `cuda:0,2`).
    pub fn is_several(&self) -> bool {
        match self.devices {
            Devices::All => true,
            Devices::Listed(bits) => bits.count_ones() > 1,
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.backend.flag())?;
        match (self.backend, self.devices.listed()) {
            (Backend::Auto | Backend::Cpu, _) => Ok(()),
            (_, None) => f.write_str(":all"),
            (_, Some(list)) => {
                let list: Vec<String> = list.iter().map(usize::to_string).collect();
                write!(f, ":{}", list.join(","))
            }
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    /// Parses `--device`; the error is the rule broken (clap names the flag and the value).
    fn from_str(text: &str) -> std::result::Result<DeviceChoice, String> {
        let (name, list) = match text.split_once(':') {
            Some((name, list)) => (name, Some(list)),
            None => (text, None),
        };
        let backend = match name {
            "auto" => Backend::Auto,
            "cpu" => Backend::Cpu,
            "cuda" => Backend::Cuda,
            "metal" => Backend::Metal,
            _ => return Err(format!("`{name}` is not a device: use cpu, cuda, metal or auto, e.g. `cuda:0,2`")),
        };
        let devices = match list {
            None => Devices::one(0),
            Some(_) if matches!(backend, Backend::Auto | Backend::Cpu) => {
                return Err(format!("`{name}` takes no device numbers (they are for `cuda:` and `metal:`)"))
            }
            Some("all") => Devices::All,
            Some(list) => parse_list(list)?,
        };
        Ok(DeviceChoice { backend, devices })
    }
}

/// `0`, `0,2`: device numbers, each below 64, none twice.
fn parse_list(list: &str) -> std::result::Result<Devices, String> {
    let mut bits = 0u64;
    for item in list.split(',') {
        let ordinal: usize = item
            .trim()
            .parse()
            .map_err(|_| format!("`{item}` is not a device number: write `all`, a number or a list such as `0,2`"))?;
        if ordinal >= MAX_ORDINALS {
            return Err(format!("device number `{ordinal}` is too large: at most {}", MAX_ORDINALS - 1));
        }
        if bits & (1 << ordinal) != 0 {
            return Err(format!("device {ordinal} is listed twice"));
        }
        bits |= 1 << ordinal;
    }
    Ok(Devices::Listed(bits))
}

/// Opens the one device the choice names; several (`cuda:all` on a machine with more than one
/// GPU, `cuda:0,2`) is an error for a command that runs one engine.
pub fn open(choice: DeviceChoice) -> Result<Device> {
    let mut devices = open_all(choice)?;
    if devices.len() > 1 {
        return Err(SynthError::invalid(format!(
            "`--device {choice}` names {} devices, and this command runs one engine on one device",
            devices.len()
        ))
        .hint(format!("name one device, e.g. `--device {}:0`", choice.backend.flag()))
        .into());
    }
    Ok(devices.remove(0))
}

/// Opens every device the choice names, in ascending order: one engine runs on each.
pub fn open_all(choice: DeviceChoice) -> Result<Vec<Device>> {
    match choice.backend {
        Backend::Cpu => Ok(vec![Device::Cpu]),
        Backend::Auto => Ok(vec![open_auto()]),
        Backend::Cuda | Backend::Metal => {
            let present = present(choice)?;
            pick(choice, &present)?.into_iter().map(|ordinal| open_one(choice.backend, ordinal)).collect()
        }
    }
}

fn open_auto() -> Device {
    if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
        if let Ok(device) = Device::new_cuda(0) {
            return device;
        }
    }
    if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
        if let Ok(device) = Device::new_metal(0) {
            return device;
        }
    }
    Device::Cpu
}

fn open_one(backend: Backend, ordinal: usize) -> Result<Device> {
    let opened = match backend {
        Backend::Metal => Device::new_metal(ordinal),
        _ => Device::new_cuda(ordinal),
    };
    opened.map_err(|e| {
        SynthError::failed(format!("cannot open {} device {ordinal}: {e}", backend.title()))
            .hint("check `nvidia-smi` (or the Metal device), or run with `--device cpu`")
            .into()
    })
}

/// The ordinals of `choice` among the devices `present` (their names, by ordinal), or an error
/// naming the devices there are.
pub fn pick(choice: DeviceChoice, present: &[String]) -> Result<Vec<usize>> {
    let title = choice.backend.title();
    if present.is_empty() {
        return Err(SynthError::not_found(format!("`--device {choice}`: this machine has no {title} device"))
            .hint("check `nvidia-smi` and `CUDA_VISIBLE_DEVICES`, or run with `--device cpu`")
            .into());
    }
    let Some(listed) = choice.devices.listed() else { return Ok((0..present.len()).collect()) };
    if let Some(missing) = listed.iter().find(|&&i| i >= present.len()) {
        let names: Vec<String> =
            present.iter().enumerate().map(|(i, name)| format!("{}:{i} ({name})", choice.backend.flag())).collect();
        return Err(SynthError::not_found(format!(
            "`--device {choice}`: there is no {title} device {missing}; this machine has {}: {}",
            present.len(),
            names.join(", ")
        ))
        .hint(format!("pick from those, or `--device {}:all` for every one", choice.backend.flag()))
        .into());
    }
    Ok(listed)
}

/// The names of the backend's devices, by ordinal; an error when this build lacks the backend.
fn present(choice: DeviceChoice) -> Result<Vec<String>> {
    match choice.backend {
        Backend::Cuda => cuda_devices(choice),
        Backend::Metal if cfg!(feature = "metal") => Ok(metal_devices()),
        Backend::Metal => Err(missing_feature(choice)),
        Backend::Auto | Backend::Cpu => Ok(vec!["cpu".into()]),
    }
}

#[cfg(feature = "cuda")]
fn cuda_devices(_: DeviceChoice) -> Result<Vec<String>> {
    use candle_core::cuda_backend::cudarc::driver::{result, CudaContext};
    let failed = |e: result::DriverError| {
        SynthError::failed(format!("cannot list the CUDA devices: {e}"))
            .hint("check `nvidia-smi`, or run with `--device cpu`")
    };
    let count = match CudaContext::device_count() {
        Ok(count) => count,
        // No device, or none visible (`CUDA_VISIBLE_DEVICES=`): an empty list, reported by `pick`.
        Err(e) if e.0 == candle_core::cuda_backend::cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => 0,
        Err(e) => return Err(failed(e).into()),
    };
    let name = |i| result::device::get(i).and_then(result::device::get_name).map_err(failed);
    Ok((0..count).map(name).collect::<std::result::Result<Vec<_>, _>>()?)
}

#[cfg(not(feature = "cuda"))]
fn cuda_devices(choice: DeviceChoice) -> Result<Vec<String>> {
    Err(missing_feature(choice))
}

/// Metal has no cheap device count in candle: the devices that open, from 0 up.
fn metal_devices() -> Vec<String> {
    (0..MAX_ORDINALS).map_while(|i| Device::new_metal(i).ok().map(|_| format!("Metal GPU {i}"))).collect()
}

fn missing_feature(choice: DeviceChoice) -> anyhow::Error {
    let feature = choice.backend.flag();
    SynthError::invalid(format!(
        "`--device {choice}` needs a synth built with the `{feature}` feature, and this one was not"
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

    fn parse(text: &str) -> DeviceChoice {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn todays_names_still_parse_and_mean_device_0() {
        assert_eq!(parse("cpu"), DeviceChoice::CPU);
        assert_eq!(parse("auto"), DeviceChoice::AUTO);
        for (text, backend) in [("cuda", Backend::Cuda), ("metal", Backend::Metal)] {
            let choice = parse(text);
            assert_eq!((choice.backend, choice.devices.listed()), (backend, Some(vec![0])));
            assert!(!choice.is_several());
            assert_eq!(choice.to_string(), format!("{text}:0"));
        }
    }

    #[test]
    fn numbers_lists_and_all() {
        assert_eq!(parse("cuda:1").devices.listed(), Some(vec![1]));
        assert_eq!(parse("cuda:2,0").devices.listed(), Some(vec![0, 2]));
        assert_eq!(parse("metal:0, 3").to_string(), "metal:0,3");
        let all = parse("cuda:all");
        assert_eq!((all.devices, all.to_string().as_str()), (Devices::All, "cuda:all"));
        assert!(all.is_several() && parse("cuda:0,2").is_several());
    }

    #[test]
    fn bad_devices_say_the_rule() {
        for (text, rule) in [
            ("gpu", "`gpu` is not a device"),
            ("cuda:", "`` is not a device number"),
            ("cuda:x", "`x` is not a device number"),
            ("cuda:-1", "`-1` is not a device number"),
            ("cuda:0,0", "device 0 is listed twice"),
            ("cuda:64", "`64` is too large: at most 63"),
            ("cpu:0", "`cpu` takes no device numbers"),
            ("auto:all", "`auto` takes no device numbers"),
        ] {
            let err = text.parse::<DeviceChoice>().unwrap_err();
            assert!(err.contains(rule), "{text}: {err}");
        }
    }

    #[test]
    fn picking_a_device_that_is_not_there_names_those_that_are() {
        let h200 = vec!["NVIDIA H200".to_string(), "NVIDIA H200".to_string()];
        assert_eq!(pick(parse("cuda:all"), &h200).unwrap(), vec![0, 1]);
        assert_eq!(pick(parse("cuda:1"), &h200).unwrap(), vec![1]);
        let err = pick(parse("cuda:0,3"), &h200).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 3);
        let text = crate::error::render(&err);
        let named = "`--device cuda:0,3`: there is no CUDA device 3; this machine has 2: cuda:0 (NVIDIA H200), cuda:1 (NVIDIA H200)";
        assert!(text.contains(named) && text.contains("`--device cuda:all`"), "{text}");
        let text = crate::error::render(&pick(parse("cuda:all"), &[]).unwrap_err());
        assert!(text.contains("`--device cuda:all`: this machine has no CUDA device"), "{text}");
    }

    #[test]
    fn cuda_without_the_feature_names_the_feature() {
        if cfg!(feature = "cuda") {
            return;
        }
        for choice in ["cuda", "cuda:1", "cuda:all"] {
            let err = open(parse(choice)).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2);
            let text = crate::error::render(&err);
            assert!(text.contains(&format!("`--device {}` needs", parse(choice))), "{text}");
            assert!(text.contains("`cuda` feature") && text.contains("--features cuda"), "{text}");
        }
    }

    #[test]
    fn the_cpu_opens_as_one_device() {
        assert_eq!(open_all(DeviceChoice::CPU).unwrap().len(), 1);
        assert!(open(DeviceChoice::CPU).unwrap().is_cpu());
    }
}

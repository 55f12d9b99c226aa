//! `--device` parsing and `ebda devices`.

use anyhow::{Result, bail};
use candle_core::Device;
use std::str::FromStr;

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 if this build has CUDA and a GPU is present, else CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!("expected auto, cpu, cuda or cuda:N, got {s:?}")),
            },
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this binary was built with `--features cuda`.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

impl DeviceChoice {
    /// Opens the device; CUDA from a CPU-only build is an error, not a panic.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if CUDA_COMPILED && candle_core::utils::cuda_is_available() => {
                Ok(Device::new_cuda(0)?)
            }
            Self::Auto => Ok(Device::Cpu),
            Self::Cuda(_) if !CUDA_COMPILED => bail!(
                "--device {self}: this ebda binary was built without CUDA support; \
                 rebuild with `cargo build --release --features cuda` (see scripts/build-cuda.sh) \
                 or use --device cpu"
            ),
            Self::Cuda(n) => Device::new_cuda(n)
                .map_err(|e| anyhow::anyhow!("--device {self}: cannot open CUDA device {n}: {e}")),
        }
    }
}

/// Lists the CPU, the CUDA devices (or why there are none) and what `--device` selects.
pub fn list(choice: &DeviceChoice) -> Result<()> {
    let threads = candle_core::utils::get_num_threads();
    let mut simd = Vec::new();
    if candle_core::utils::with_avx() {
        simd.push("avx");
    }
    if candle_core::utils::with_f16c() {
        simd.push("f16c");
    }
    if candle_core::utils::with_neon() {
        simd.push("neon");
    }
    let simd = if simd.is_empty() {
        "none".to_string()
    } else {
        simd.join(", ")
    };
    println!("cpu: available, {threads} threads, SIMD: {simd}");
    if CUDA_COMPILED {
        let mut found = 0;
        while found < 64 {
            match Device::new_cuda(found) {
                Ok(_) => {
                    println!("cuda:{found}: available");
                    found += 1;
                }
                Err(_) => break,
            }
        }
        if found == 0 {
            println!("cuda: compiled in, but no CUDA device could be opened");
        }
    } else {
        println!("cuda: not compiled in (this build is CPU-only; build with --features cuda)");
    }
    match choice.open() {
        Ok(dev) => println!("--device {choice} selects: {}", describe(&dev)),
        Err(err) => bail!("{err}"),
    }
    Ok(())
}

fn describe(dev: &Device) -> String {
    match dev {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => format!("cuda ({:?})", dev.location()),
        Device::Metal(_) => format!("metal ({:?})", dev.location()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_choices() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert!(
            "gpu"
                .parse::<DeviceChoice>()
                .unwrap_err()
                .contains("got \"gpu\"")
        );
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }
}

//! Test support shared by ebda's crates (a dev-dependency only).
//!
//! - [`device`]: the device under test, `EBDA_TEST_DEVICE=cuda` for GPU 0
//!   (`scripts/gpu-check.sh` runs the device-generic tests that way);
//! - [`temp_dir`]: a fresh temporary directory per test;
//! - [`seeded_randn`]: standard-normal test inputs that are the same on
//!   every run (candle's CPU `randn` cannot be seeded);
//! - [`real_data`]: the shared real datasets, `$EBDA_DATA_DIR` or
//!   `../shared/data` beside the repository. A test that needs them and
//!   finds none fails under `EBDA_REQUIRE_REAL_DATA=1` (CI sets it) and
//!   otherwise says on stderr that it skipped — never a silent pass in CI.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::PathBuf;

/// A tensor of standard-normal values drawn from a generator seeded by
/// `seed`: the same values on every run and machine, so a test that checks
/// gradients near kinks (ReLU, max-pool) cannot pass or fail by chance.
pub fn seeded_randn(seed: u64, shape: &[usize], dtype: DType, device: &Device) -> Tensor {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .and_then(|t| t.to_device(device))
        .expect("a host tensor of the given shape")
}

/// The device under test: `EBDA_TEST_DEVICE=cuda` runs on GPU 0, anything
/// else on the CPU. Panics when CUDA is asked for and not available, so a
/// GPU check never quietly runs on the CPU.
pub fn device() -> Device {
    match std::env::var("EBDA_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0)
            .unwrap_or_else(|e| panic!("EBDA_TEST_DEVICE=cuda but no CUDA device: {e}")),
        _ => Device::Cpu,
    }
}

/// A fresh, empty temporary directory for one test, named by `tag` and the
/// process id.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ebda-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The shared real data folder: `$EBDA_DATA_DIR`, else the first
/// `shared/data` above this workspace, else `../shared/data`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("EBDA_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/data"))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| PathBuf::from("../shared/data")),
    }
}

/// `sub` inside the shared real data, if present. Absent: a failure under
/// `EBDA_REQUIRE_REAL_DATA=1`, else `None` and a line on stderr saying the
/// test skipped and why.
pub fn real_data(sub: &str) -> Option<PathBuf> {
    let path = data_dir().join(sub);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("EBDA_REQUIRE_REAL_DATA").as_deref() == Ok("1") {
        panic!(
            "EBDA_REQUIRE_REAL_DATA=1 but {} is missing (set EBDA_DATA_DIR)",
            path.display()
        );
    }
    eprintln!(
        "skipped: real data {} not found (set EBDA_DATA_DIR to run this test)",
        path.display()
    );
    None
}

/// A run directory's `metrics.jsonl` without its wall-clock field
/// (`images_per_s`), which differs between otherwise identical runs.
pub fn metrics_without_timing(run: &std::path::Path) -> Vec<serde_json::Value> {
    let path = run.join("metrics.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("images_per_s");
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_fresh_and_data_paths_join() {
        let d = temp_dir("kit");
        std::fs::write(d.join("x"), "1").unwrap();
        let again = temp_dir("kit");
        assert!(!again.join("x").exists());
        assert!(data_dir().join("mnist").ends_with("data/mnist"));
        std::fs::remove_dir_all(again).unwrap();
    }
}

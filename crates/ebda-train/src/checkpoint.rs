//! Checkpoints: written whole into a fresh directory, then published by an
//! atomic rename of the `latest.json` pointer, so an interrupted write never
//! damages the last good checkpoint.
//!
//! ```text
//! checkpoints/
//!   latest.json            {"iteration": 1000, "dir": "iter-00001000"}
//!   iter-00001000/
//!     shared.safetensors   extractor + classifier (with BN running statistics)
//!     critic.safetensors   or discriminator.safetensors
//!     optim.safetensors    optimizer moments (critic_optim.safetensors for EBDA)
//!     state.json           iteration, sampler and RNG positions, optimizer step counts
//!     checksums.json       SHA-256 of every file above, written last
//! ```
//!
//! A checkpoint is verified against its checksums before it is loaded. When
//! the newest one is damaged (a flipped byte, a truncated file, a file gone),
//! [`latest_intact`] falls back to the newest older checkpoint that verifies
//! and says so; when none does, the error names every checkpoint and what is
//! wrong with it — a run never resumes from garbage.

use crate::Error;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use ebda_data::SamplerState;
use ebda_nn::{RngState, named_vars};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The non-tensor part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Iterations completed.
    pub iteration: usize,
    pub source_sampler: SamplerState,
    pub target_sampler: SamplerState,
    /// Dropout generator position.
    pub rng: RngState,
    /// Steps taken per variable, per optimizer.
    pub optimizer_steps: BTreeMap<String, HashMap<String, u64>>,
    /// Training wall time so far (seconds, evaluation excluded).
    pub train_seconds: f64,
    /// Wall time so far (seconds, everything included).
    pub wall_seconds: f64,
    /// The evaluation interval in progress, for a checkpoint written between
    /// evaluations (on a signal); absent at evaluation points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowState>,
}

/// Step statistics of an unfinished evaluation interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Steps in the interval so far.
    pub steps: usize,
    /// Per statistic, the sum over those steps.
    pub sums: Vec<(String, f64)>,
}

/// The pointer file naming the latest complete checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Latest {
    iteration: usize,
    dir: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    let f = std::fs::File::open(&tmp).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The process's file-creation mask (Linux: `/proc/self/status`; 022
/// where it cannot be read).
#[cfg(unix)]
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Gives `path` the permissions a file created with `std::fs::write` gets
/// (0666 less the umask). The safetensors writer goes through a temporary
/// file created 0600, which would keep checkpoints and feature files from
/// the rest of a group sharing a run directory.
pub fn set_created_permissions(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = 0o666 & !umask();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Saves every variable of `map` (sorted names) to a safetensors file.
pub fn save_vars(map: &VarMap, path: &Path) -> Result<(), Error> {
    let tensors: HashMap<String, Tensor> = named_vars(map)
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    save_tensors(&tensors, path)
}

fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), Error> {
    candle_core::safetensors::save(tensors, path).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    set_created_permissions(path)
}

fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, Error> {
    candle_core::safetensors::load(path, device).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Fills every variable of `map` from `path`; a missing, extra or
/// differently shaped tensor is an error naming it.
pub fn load_vars(map: &VarMap, path: &Path, device: &Device) -> Result<(), Error> {
    let mut tensors = load_tensors(path, device)?;
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    for (name, var) in named_vars(map) {
        let t = tensors
            .remove(&name)
            .ok_or_else(|| bad(format!("no tensor {name:?} (the model expects it)")))?;
        let non_finite = ebda_nn::non_finite_count(&t)?;
        if non_finite > 0 {
            return Err(bad(format!(
                "tensor {name:?} holds {non_finite} non-finite value(s) (NaN or ±inf)"
            )));
        }
        if t.shape() != var.shape() {
            return Err(bad(format!(
                "tensor {name:?} has shape {:?}, the model expects {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    if let Some(extra) = tensors.keys().next() {
        return Err(bad(format!(
            "tensor {extra:?} matches no variable of the model (a different architecture?)"
        )));
    }
    Ok(())
}

/// What a checkpoint holds besides the state.
pub struct CheckpointParts<'a> {
    pub var_maps: Vec<(&'a str, &'a VarMap)>,
    pub optimizers: Vec<(&'a str, HashMap<String, Tensor>)>,
}

/// Writes a checkpoint for `state.iteration` and publishes it; keeps the
/// newest `keep` checkpoints.
pub fn save(
    dir: &Path,
    parts: CheckpointParts,
    state: &TrainerState,
    keep: usize,
) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = format!("iter-{:08}", state.iteration);
    let tmp = dir.join(format!("{name}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for (n, map) in &parts.var_maps {
        save_vars(map, &tmp.join(format!("{n}.safetensors")))?;
    }
    for (n, tensors) in &parts.optimizers {
        save_tensors(tensors, &tmp.join(format!("{n}.safetensors")))?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Checkpoint {
        path: tmp.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(tmp.join("state.json"), json).map_err(io(&tmp))?;
    write_checksums(&tmp)?;
    let final_dir = dir.join(&name);
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    let latest = serde_json::to_vec(&Latest {
        iteration: state.iteration,
        dir: name.clone(),
    })
    .expect("plain struct");
    write_atomic(&dir.join("latest.json"), &latest)?;
    prune(dir, keep)?;
    Ok(final_dir)
}

fn prune(dir: &Path, keep: usize) -> Result<(), Error> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("iter-"))
        .collect();
    found.sort();
    // Partial directories of interrupted writes go, and all but the newest `keep`.
    let complete: Vec<&String> = found.iter().filter(|n| !n.ends_with(".partial")).collect();
    let cut = complete.len().saturating_sub(keep);
    for n in found
        .iter()
        .filter(|n| n.ends_with(".partial"))
        .chain(complete[..cut].iter().copied())
    {
        let _ = std::fs::remove_dir_all(dir.join(n));
    }
    Ok(())
}

/// The file of a checkpoint that holds the others' checksums.
pub const CHECKSUMS: &str = "checksums.json";

fn sha256_of(path: &Path) -> Result<String, Error> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The checkpoint's files other than the checksums, sorted by name.
fn payload_files(ckpt: &Path) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = std::fs::read_dir(ckpt)
        .map_err(io(ckpt))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != CHECKSUMS && !n.ends_with(".tmp"))
        .collect();
    names.sort();
    Ok(names)
}

/// Writes `checksums.json` over every other file of `ckpt` (synced).
fn write_checksums(ckpt: &Path) -> Result<(), Error> {
    let mut sums = BTreeMap::new();
    for name in payload_files(ckpt)? {
        let path = ckpt.join(&name);
        let f = std::fs::File::open(&path).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        sums.insert(name, sha256_of(&path)?);
    }
    let json = serde_json::to_vec_pretty(&sums).expect("plain map");
    write_atomic(&ckpt.join(CHECKSUMS), &json)
}

/// Checks every file of checkpoint `ckpt` against its `checksums.json`:
/// `Ok(())` when all match, otherwise the first problem found. A checkpoint
/// written before checksums existed (no `checksums.json`) is accepted if its
/// `state.json` parses.
pub fn verify(ckpt: &Path) -> Result<(), Error> {
    let bad = |reason: String| Error::Checkpoint {
        path: ckpt.to_path_buf(),
        reason,
    };
    let sums_path = ckpt.join(CHECKSUMS);
    if !sums_path.is_file() {
        if !ckpt.is_dir() {
            return Err(bad("missing".into()));
        }
        read_state(ckpt)?;
        tracing::warn!(
            "{}: no {CHECKSUMS} (written by an older ebda); loading it unverified",
            ckpt.display()
        );
        return Ok(());
    }
    let text = std::fs::read(&sums_path).map_err(io(&sums_path))?;
    let sums: BTreeMap<String, String> = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("{CHECKSUMS} does not parse: {e}")))?;
    for (name, want) in &sums {
        let path = ckpt.join(name);
        if !path.is_file() {
            return Err(bad(format!("{name} is missing")));
        }
        let got = sha256_of(&path)?;
        if &got != want {
            return Err(bad(format!(
                "{name} is damaged (SHA-256 {got}, the checkpoint recorded {want})"
            )));
        }
    }
    if !sums.contains_key("state.json") {
        return Err(bad(format!("{CHECKSUMS} does not cover state.json")));
    }
    if let Some(extra) = payload_files(ckpt)?
        .into_iter()
        .find(|n| !sums.contains_key(n))
    {
        return Err(bad(format!("{extra} is not covered by {CHECKSUMS}")));
    }
    Ok(())
}

/// The newest checkpoint under `dir` that verifies, and the damaged newer
/// ones skipped on the way (each with its reason). The pointer's choice
/// comes first, then every complete `iter-*` directory, newest first.
/// `Ok(None)`: no checkpoint at all. An error: checkpoints exist and none is
/// intact; it names each and what is wrong.
pub fn latest_intact(dir: &Path) -> Result<Option<(PathBuf, Vec<Error>)>, Error> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let mut skipped = Vec::new();
    match latest(dir) {
        Ok(Some(p)) => candidates.push(p),
        Ok(None) => {}
        Err(e) => skipped.push(e),
    }
    if dir.is_dir() {
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("iter-") && !n.ends_with(".partial"))
            .collect();
        found.sort();
        for n in found.into_iter().rev() {
            let p = dir.join(n);
            if !candidates.contains(&p) {
                candidates.push(p);
            }
        }
    }
    if candidates.is_empty() && skipped.is_empty() {
        return Ok(None);
    }
    for c in candidates {
        match verify(&c) {
            Ok(()) => return Ok(Some((c, skipped))),
            Err(e) => skipped.push(e),
        }
    }
    Err(Error::Checkpoint {
        path: dir.to_path_buf(),
        reason: format!(
            "no intact checkpoint to resume from: {}",
            skipped
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })
}

/// The directory named by `latest.json`, if any (not verified: see
/// [`latest_intact`]).
pub fn latest(dir: &Path) -> Result<Option<PathBuf>, Error> {
    let pointer = dir.join("latest.json");
    if !pointer.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&pointer).map_err(io(&pointer))?;
    let latest: Latest = serde_json::from_slice(&text).map_err(|e| Error::Checkpoint {
        path: pointer.clone(),
        reason: e.to_string(),
    })?;
    let path = dir.join(&latest.dir);
    if !path.join("state.json").is_file() {
        return Err(Error::Checkpoint {
            path,
            reason: "latest.json names a checkpoint without state.json".into(),
        });
    }
    Ok(Some(path))
}

/// Reads a checkpoint's state.
pub fn read_state(ckpt: &Path) -> Result<TrainerState, Error> {
    let path = ckpt.join("state.json");
    let text = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Checkpoint {
        path,
        reason: e.to_string(),
    })
}

/// Reads an optimizer's tensors from a checkpoint.
pub fn read_optimizer(
    ckpt: &Path,
    name: &str,
    device: &Device,
) -> Result<HashMap<String, Tensor>, Error> {
    load_tensors(&ckpt.join(format!("{name}.safetensors")), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::Init;

    #[cfg(unix)]
    #[test]
    fn tensor_files_get_the_permissions_of_any_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ebda-ckpt-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = VarMap::new();
        map.get((2, 2), "w", Init::Const(1.0), DType::F32, &Device::Cpu)
            .unwrap();
        let tensors = dir.join("shared.safetensors");
        save_vars(&map, &tensors).unwrap();
        let plain = dir.join("state.json");
        std::fs::write(&plain, "{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // The temporary-file writer alone gives 0600.
        assert_eq!(mode(&tensors), mode(&plain));
        assert_eq!(mode(&plain), 0o666 & !umask());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_checkpoint_tensor_holding_nan_is_refused_at_load() {
        let dir = std::env::temp_dir().join(format!("ebda-ckpt-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = VarMap::new();
        map.get(
            (2, 2),
            "fc.weight",
            Init::Const(1.0),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let path = dir.join("shared.safetensors");
        let nan = Tensor::new(&[[1.0f32, f32::NAN], [0.0, 1.0]], &Device::Cpu).unwrap();
        save_tensors(&HashMap::from([("fc.weight".to_string(), nan)]), &path).unwrap();
        let err = load_vars(&map, &path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"fc.weight\" holds 1 non-finite value(s)"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn verify_catches_every_kind_of_damage() {
        let dir = std::env::temp_dir().join(format!("ebda-ckpt-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ckpt = dir.join("iter-00000010");
        std::fs::create_dir_all(&ckpt).unwrap();
        std::fs::write(ckpt.join("state.json"), b"{}").unwrap();
        std::fs::write(ckpt.join("shared.safetensors"), b"0123456789").unwrap();
        write_checksums(&ckpt).unwrap();
        verify(&ckpt).unwrap();

        std::fs::write(ckpt.join("shared.safetensors"), b"0123456788").unwrap();
        let err = verify(&ckpt).unwrap_err().to_string();
        assert!(err.contains("shared.safetensors is damaged"), "{err}");
        std::fs::write(ckpt.join("shared.safetensors"), b"0123456789").unwrap();

        std::fs::write(ckpt.join("extra.safetensors"), b"x").unwrap();
        let err = verify(&ckpt).unwrap_err().to_string();
        assert!(err.contains("extra.safetensors is not covered"), "{err}");
        std::fs::remove_file(ckpt.join("extra.safetensors")).unwrap();

        std::fs::remove_file(ckpt.join("state.json")).unwrap();
        let err = verify(&ckpt).unwrap_err().to_string();
        assert!(err.contains("state.json is missing"), "{err}");

        std::fs::write(ckpt.join(CHECKSUMS), b"{not json").unwrap();
        let err = verify(&ckpt).unwrap_err().to_string();
        assert!(err.contains("does not parse"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

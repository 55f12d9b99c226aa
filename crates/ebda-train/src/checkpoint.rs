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
//! ```

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
    })
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

/// The directory of the latest complete checkpoint, if any.
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

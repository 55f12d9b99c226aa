//! Precomputed feature vectors in safetensors: `features` `[n, d]` (f32, f16,
//! bf16 or f64) and `labels` `[n]` (any integer type), tensor names configurable.

use crate::dataset::Dataset;
use crate::{Error, Result};
use candle_core::{DType, Device};
use std::path::Path;

/// Reads a safetensors feature file.
pub fn safetensors_features(
    path: &Path,
    features_key: &str,
    labels_key: &str,
    base: u32,
    limit: Option<usize>,
) -> Result<Dataset> {
    if !path.is_file() {
        return Err(crate::io::not_found_or_io(
            path,
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::format(path, format!("not a readable safetensors file: {e}")))?;
    let get = |name: &str| {
        tensors.get(name).ok_or_else(|| {
            let mut present: Vec<&String> = tensors.keys().collect();
            present.sort();
            Error::format(
                path,
                format!("no tensor {name:?} (the file has {present:?})"),
            )
        })
    };
    let x = get(features_key)?;
    let y = get(labels_key)?;
    let (n, dim) = x.dims2().map_err(|_| {
        Error::format(
            path,
            format!("{features_key} has shape {:?}, expected [n, d]", x.dims()),
        )
    })?;
    if y.dims() != [n] {
        return Err(Error::format(
            path,
            format!("{labels_key} has shape {:?}, expected [{n}]", y.dims()),
        ));
    }
    if y.dtype().is_float() {
        return Err(Error::format(
            path,
            format!("{labels_key} is {:?}, expected an integer type", y.dtype()),
        ));
    }
    let values: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let raw: Vec<i64> = y.to_dtype(DType::I64)?.to_vec1()?;
    let labels = raw
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            crate::dataset::shift_label(v as f64, base, limit)
                .map_err(|why| Error::format(path, format!("{labels_key}[{i}] = {v}: label {why}")))
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(crate::dataset::vectors(path, values, dim, labels, limit))
}

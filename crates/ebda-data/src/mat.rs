//! MATLAB v5 `.mat` files: SVHN and precomputed feature matrices.
//!
//! SVHN (Netzer et al., 2011, <http://ufldl.stanford.edu/housenumbers/>):
//! `X` is a `32×32×3×N` `uint8` array and `y` an `N×1` array of labels
//! 1..10, where 10 stands for the digit 0. MATLAB stores arrays column-major,
//! so pixel `(row r, col c, channel k)` of image `n` is
//! `X[r + 32·c + 1024·k + 3072·n]`.
//!
//! Level-5 MAT files, compressed (`miCOMPRESSED`) or not, are parsed with the
//! `matfile` crate; v7.3 files are HDF5 and are reported as such.

use crate::dataset::{Dataset, Samples};
use crate::io::{first_existing, not_found_or_io};
use crate::{Error, Result};
use matfile::{Array, MatFile, NumericData};
use std::path::Path;

/// Parses a whole `.mat` file.
pub fn read_mat(path: &Path) -> Result<MatFile> {
    let bytes = std::fs::read(path).map_err(|e| not_found_or_io(path, e))?;
    if bytes.len() < 128 {
        return Err(Error::format(
            path,
            format!("truncated: {} bytes, a MAT-file header is 128", bytes.len()),
        ));
    }
    if !bytes.starts_with(b"MATLAB") {
        return Err(Error::format(
            path,
            "not a MATLAB .mat file (no 'MATLAB' header text)",
        ));
    }
    if bytes[124..126] == [0x00, 0x02] || bytes[124..126] == [0x02, 0x00] {
        return Err(Error::format(
            path,
            "MATLAB v7.3 (HDF5) file; save it with -v7 or -v6 to read it here",
        ));
    }
    check_elements(path, &bytes)?;
    MatFile::parse(bytes.as_slice())
        .map_err(|e| Error::format(path, format!("not a readable MATLAB v5 file: {e}")))
}

/// Walks the top-level data elements: each must fit in the file, and the
/// last must end where the file ends. (The parser would otherwise drop a
/// truncated trailing variable without a word.)
fn check_elements(path: &Path, bytes: &[u8]) -> Result<()> {
    let little = match &bytes[126..128] {
        b"IM" => true,
        b"MI" => false,
        other => {
            return Err(Error::format(
                path,
                format!(
                    "not a readable MATLAB v5 file: endian indicator {other:?}, expected \"IM\" or \"MI\""
                ),
            ));
        }
    };
    let u32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut at = 128;
    let mut index = 0;
    while at < bytes.len() {
        if at + 8 > bytes.len() {
            return Err(Error::format(
                path,
                format!("truncated: data element {index} at byte {at} has no complete tag"),
            ));
        }
        let (ty, len) = (u32_at(at), u32_at(at + 4) as usize);
        // miCOMPRESSED elements are not padded; everything else is padded to 8 bytes.
        let padded = if ty == 15 { len } else { len.div_ceil(8) * 8 };
        if at + 8 + len > bytes.len() {
            return Err(Error::format(
                path,
                format!(
                    "truncated: data element {index} at byte {at} needs {len} bytes, {} remain",
                    bytes.len() - at - 8
                ),
            ));
        }
        at += 8 + padded.min(bytes.len() - at - 8);
        index += 1;
    }
    Ok(())
}

/// The named variable, or an error listing the variables that are there.
pub fn variable<'m>(path: &Path, mat: &'m MatFile, name: &str) -> Result<&'m Array> {
    mat.find_by_name(name).ok_or_else(|| {
        let present: Vec<&str> = mat.arrays().iter().map(|a| a.name()).collect();
        Error::format(
            path,
            format!("no variable {name:?} (the file has {present:?})"),
        )
    })
}

/// A numeric array's real part as `f64`, whatever its MATLAB class.
pub fn as_f64(array: &Array) -> Vec<f64> {
    match array.data() {
        NumericData::Int8 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt8 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int16 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt16 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int32 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt32 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int64 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        NumericData::UInt64 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        NumericData::Single { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Double { real, .. } => real.clone(),
    }
}

/// Integer labels from a vector variable, minus `base`, each `< limit` if given.
pub fn labels_from(
    path: &Path,
    name: &str,
    values: &[f64],
    base: u32,
    limit: Option<usize>,
) -> Result<Vec<u32>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            crate::dataset::shift_label(v, base, limit)
                .map_err(|why| Error::format(path, format!("{name}[{i}] = {v}: label {why}")))
        })
        .collect()
}

/// SVHN split `train`, `test` or `extra` (`{split}_32x32.mat` under `root`).
pub fn svhn(root: &Path, split: &str) -> Result<Dataset> {
    if !matches!(split, "train" | "test" | "extra") {
        return Err(Error::config(
            "split",
            format!("svhn has splits train, test and extra, got {split:?}"),
        ));
    }
    let path = first_existing(root, &[&format!("{split}_32x32.mat")])?;
    let mat = read_mat(&path)?;
    let x = variable(&path, &mat, "X")?;
    let y = variable(&path, &mat, "y")?;
    let size = x.size().clone();
    if size.len() != 4 || size[0] != 32 || size[1] != 32 || size[2] != 3 {
        return Err(Error::format(
            &path,
            format!("X has size {size:?}, expected [32, 32, 3, N]"),
        ));
    }
    let n = size[3];
    let NumericData::UInt8 { real: raw, .. } = x.data() else {
        return Err(Error::format(&path, "X is not uint8"));
    };
    if n.checked_mul(3072) != Some(raw.len()) {
        return Err(Error::format(
            &path,
            format!("X declares size {size:?} but holds {} values", raw.len()),
        ));
    }
    let y_values = as_f64(y);
    if y_values.len() != n {
        return Err(Error::format(
            &path,
            format!("y has {} labels, X holds {n} images", y_values.len()),
        ));
    }
    // Labels 1..10 with 10 meaning the digit 0.
    let labels = labels_from(&path, "y", &y_values, 1, Some(10))?
        .into_iter()
        .map(|v| (v + 1) % 10)
        .collect();
    // Column-major [32, 32, 3, N] -> row-major [N, 3, 32, 32].
    let mut pixels = vec![0u8; raw.len()];
    for (img, out) in raw.chunks_exact(3072).zip(pixels.chunks_exact_mut(3072)) {
        for k in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    out[k * 1024 + r * 32 + c] = img[r + 32 * c + 1024 * k];
                }
            }
        }
    }
    let lo = pixels.iter().copied().min().unwrap_or(0);
    let hi = pixels.iter().copied().max().unwrap_or(0);
    Ok(Dataset {
        name: format!("svhn/{split}"),
        samples: Samples::Images {
            pixels,
            dims: [3, 32, 32],
        },
        labels,
        num_classes: 10,
        class_names: None,
        files: vec![path],
        value_range: Some((f32::from(lo), f32::from(hi))),
    })
}

/// A feature matrix and labels from a `.mat` file with the given variable
/// names (e.g. `fts`/`labels`, `fea`/`gnd`). A matrix of size `n×d` (or
/// `d×n` when only that matches the number of labels) gives `n` vectors.
pub fn mat_features(
    path: &Path,
    features_key: &str,
    labels_key: &str,
    base: u32,
    limit: Option<usize>,
) -> Result<Dataset> {
    let mat = read_mat(path)?;
    let x = variable(path, &mat, features_key)?;
    let y = variable(path, &mat, labels_key)?;
    let size = x.size().clone();
    if size.len() != 2 {
        return Err(Error::format(
            path,
            format!("{features_key} has size {size:?}, expected a 2-D matrix"),
        ));
    }
    let y_values = as_f64(y);
    let n = y_values.len();
    let values = as_f64(x);
    // Column-major: element (i, j) of an r×c matrix is values[i + r·j].
    let (rows, cols) = (size[0], size[1]);
    if rows.checked_mul(cols) != Some(values.len()) {
        return Err(Error::format(
            path,
            format!(
                "{features_key} declares size {rows}×{cols} but holds {} values",
                values.len()
            ),
        ));
    }
    let (dim, row_major): (usize, Vec<f32>) = if rows == n {
        (
            cols,
            (0..rows)
                .flat_map(|i| (0..cols).map(move |j| (i, j)))
                .map(|(i, j)| values[i + rows * j] as f32)
                .collect(),
        )
    } else if cols == n {
        (rows, values.iter().map(|&v| v as f32).collect())
    } else {
        return Err(Error::format(
            path,
            format!("{features_key} is {rows}×{cols} but {labels_key} has {n} labels"),
        ));
    };
    let labels = labels_from(path, labels_key, &y_values, base, limit)?;
    Ok(crate::dataset::vectors(path, row_major, dim, labels, limit))
}

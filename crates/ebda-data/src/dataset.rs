//! The in-memory form of a dataset, whatever its on-disk format.

use std::path::{Path, PathBuf};

/// How the samples of a dataset are held.
#[derive(Clone, Debug)]
pub enum Samples {
    /// Decoded images, `u8`, row-major `[n, c, h, w]` (digits: decoded once, compact).
    Images { pixels: Vec<u8>, dims: [usize; 3] },
    /// Image files, decoded in parallel when a batch is assembled (Office-31,
    /// image lists).
    Files { paths: Vec<PathBuf> },
    /// Feature vectors, `f32`, row-major `[n, d]`.
    Vectors { values: Vec<f32>, dim: usize },
}

/// A labelled dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Short description, e.g. `mnist/train`.
    pub name: String,
    pub samples: Samples,
    /// One class id per sample, `< num_classes`.
    pub labels: Vec<u32>,
    pub num_classes: usize,
    /// Class names where the format has them (Office-31 folders).
    pub class_names: Option<Vec<String>>,
    /// The files the dataset was read from (for manifests and checksums).
    pub files: Vec<PathBuf>,
    /// The range of values as stored on disk (e.g. `[0, 255]` for MNIST,
    /// `[−1, 1]` for USPS), where the reader saw them.
    pub value_range: Option<(f32, f32)>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of samples per class, indexed by class id.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &y in &self.labels {
            counts[y as usize] += 1;
        }
        counts
    }

    /// Shape of one stored sample: `[c, h, w]`, `[d]`, or `None` for files
    /// (whose size is known only once decoded).
    pub fn stored_dims(&self) -> Option<Vec<usize>> {
        match &self.samples {
            Samples::Images { dims, .. } => Some(dims.to_vec()),
            Samples::Vectors { dim, .. } => Some(vec![*dim]),
            Samples::Files { .. } => None,
        }
    }
}

/// Shifts a raw label by the first label `base` and checks it against
/// `limit` classes; the error says why, to be prefixed with where.
pub(crate) fn shift_label(raw: f64, base: u32, limit: Option<usize>) -> Result<u32, String> {
    if raw.fract() != 0.0 || raw < f64::from(base) {
        return Err(format!("is not an integer >= {base}"));
    }
    let y = (raw - f64::from(base)) as u64;
    match limit {
        Some(k) if y >= k as u64 => Err(format!(
            "out of range {base}..{}",
            k as u64 + u64::from(base) - 1
        )),
        _ => Ok(y as u32),
    }
}

/// A dataset of feature vectors `[n, dim]` read from `path`; `limit` classes
/// if given, else the largest label + 1.
pub(crate) fn vectors(
    path: &Path,
    values: Vec<f32>,
    dim: usize,
    labels: Vec<u32>,
    limit: Option<usize>,
) -> Dataset {
    let num_classes = limit.unwrap_or_else(|| labels.iter().max().map_or(0, |&m| m as usize + 1));
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    Dataset {
        name: format!("features/{file}"),
        samples: Samples::Vectors { values, dim },
        labels,
        num_classes,
        class_names: None,
        files: vec![path.to_path_buf()],
        value_range: Some((lo, hi)),
    }
}

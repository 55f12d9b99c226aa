//! The in-memory form of a dataset, whatever its on-disk format.

use std::path::PathBuf;

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

//! Data specs: which dataset, where, which part — as written in an experiment config.

use crate::dataset::Dataset;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The on-disk formats ebda reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Mnist,
    Usps,
    Svhn,
    MnistM,
    Office31,
    ImageList,
    Features,
}

/// A dataset to read, e.g. `{"format": "mnist", "root": "data/mnist", "split": "train"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSpec {
    pub format: Format,
    /// Directory of the files; for `features`, the `.safetensors` or `.mat` file.
    pub root: PathBuf,
    /// `train` or `test` (`svhn` also `extra`); unused by `office31`,
    /// `image_list` and `features`.
    pub split: String,
    /// Office-31 domain: `amazon`, `dslr` or `webcam`.
    pub domain: String,
    /// `image_list`: the list file, relative to `root` unless absolute.
    pub list: PathBuf,
    /// `features`: name of the feature matrix (e.g. `features`, `fts`, `fea`).
    pub features_key: String,
    /// `features`: name of the label vector (e.g. `labels`, `gnd`).
    pub labels_key: String,
    /// `image_list` and `features`: the value of the first label (0 or 1 in
    /// MATLAB-made files); labels are shifted to start at 0.
    pub label_base: u32,
    /// `image_list` and `features`: number of classes; labels must be below it.
    /// `null`: the largest label + 1.
    pub num_classes: Option<usize>,
    /// `features`: normalisations applied in order to the vectors when they
    /// are read, e.g. `["l1", "zscore"]` (the SURF protocol of JDA/CORAL).
    pub normalize: Vec<VectorNorm>,
}

/// A normalisation of feature vectors, applied to the whole set as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorNorm {
    /// Each vector divided by the sum of its absolute values (histograms
    /// to frequencies); an all-zero vector stays zero.
    L1,
    /// Each vector divided by its Euclidean norm; an all-zero vector stays zero.
    L2,
    /// Each dimension centred and divided by its standard deviation over the
    /// set (n − 1 in the denominator, as MATLAB's `zscore`); a constant
    /// dimension becomes 0. Statistics are the set's own, so a target domain
    /// is standardised with its own (unlabelled) statistics.
    Zscore,
}

impl VectorNorm {
    /// Applies the normalisation to `n` row-major vectors of `dim` values.
    pub fn apply(self, values: &mut [f32], dim: usize) {
        if dim == 0 {
            return;
        }
        match self {
            VectorNorm::L1 | VectorNorm::L2 => {
                for row in values.chunks_exact_mut(dim) {
                    let norm = if self == VectorNorm::L1 {
                        row.iter().map(|v| f64::from(v.abs())).sum::<f64>()
                    } else {
                        row.iter()
                            .map(|&v| f64::from(v) * f64::from(v))
                            .sum::<f64>()
                            .sqrt()
                    };
                    if norm > 0.0 {
                        row.iter_mut()
                            .for_each(|v| *v = (f64::from(*v) / norm) as f32);
                    }
                }
            }
            VectorNorm::Zscore => {
                let n = values.len() / dim;
                let mut mean = vec![0f64; dim];
                for row in values.chunks_exact(dim) {
                    for (m, &v) in mean.iter_mut().zip(row) {
                        *m += f64::from(v);
                    }
                }
                mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
                let mut var = vec![0f64; dim];
                for row in values.chunks_exact(dim) {
                    for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                        *s += (f64::from(v) - m).powi(2);
                    }
                }
                let std: Vec<f64> = var
                    .iter()
                    .map(|s| (s / (n.saturating_sub(1).max(1)) as f64).sqrt())
                    .collect();
                for row in values.chunks_exact_mut(dim) {
                    for ((v, m), s) in row.iter_mut().zip(&mean).zip(&std) {
                        *v = if *s > 0.0 {
                            ((f64::from(*v) - m) / s) as f32
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            format: Format::Mnist,
            root: PathBuf::from("data/mnist"),
            split: "train".into(),
            domain: String::new(),
            list: PathBuf::new(),
            features_key: "features".into(),
            labels_key: "labels".into(),
            label_base: 0,
            num_classes: None,
            normalize: Vec::new(),
        }
    }
}

impl DataSpec {
    /// A spec of `format` at `root` with `split`, other fields default.
    pub fn new(format: Format, root: impl Into<PathBuf>, split: &str) -> Self {
        Self {
            format,
            root: root.into(),
            split: split.into(),
            ..Self::default()
        }
    }

    /// Checks the fields the format uses; keys are relative to the spec.
    pub fn validate(&self) -> Result<()> {
        let splits: &[&str] = match self.format {
            Format::Mnist | Format::Usps | Format::MnistM => &["train", "test"],
            Format::Svhn => &["train", "test", "extra"],
            _ => &[],
        };
        if !splits.is_empty() && !splits.contains(&self.split.as_str()) {
            return Err(Error::config(
                "split",
                format!(
                    "must be one of {splits:?} for {:?}, got {:?}",
                    self.format, self.split
                ),
            ));
        }
        if self.root.as_os_str().is_empty() {
            return Err(Error::config("root", "must not be empty"));
        }
        match self.format {
            Format::Office31
                if !crate::images::OFFICE31_DOMAINS.contains(&self.domain.as_str()) =>
            {
                Err(Error::config(
                    "domain",
                    format!("must be one of amazon, dslr, webcam, got {:?}", self.domain),
                ))
            }
            Format::ImageList if self.list.as_os_str().is_empty() => Err(Error::config(
                "list",
                "the image list file must be given for image_list",
            )),
            Format::Features if self.features_key.is_empty() || self.labels_key.is_empty() => {
                Err(Error::config(
                    "features_key",
                    "features_key and labels_key must not be empty",
                ))
            }
            _ if !self.normalize.is_empty() && self.format != Format::Features => {
                Err(Error::config(
                    "normalize",
                    format!(
                        "applies to feature vectors (format features), not to {:?}",
                        self.format
                    ),
                ))
            }
            _ if self.num_classes == Some(0) => {
                Err(Error::config("num_classes", "must be > 0, got 0"))
            }
            _ => Ok(()),
        }
    }

    /// Reads the dataset (and normalises feature vectors as configured).
    pub fn load(&self) -> Result<Dataset> {
        let mut data = self.read()?;
        if let crate::dataset::Samples::Vectors { values, dim } = &mut data.samples {
            for norm in &self.normalize {
                norm.apply(values, *dim);
            }
            if !self.normalize.is_empty() {
                data.value_range = Some(
                    values
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                            (l.min(v), h.max(v))
                        }),
                );
            }
        }
        Ok(data)
    }

    fn read(&self) -> Result<Dataset> {
        self.validate()?;
        let root: &Path = &self.root;
        match self.format {
            Format::Mnist => crate::digits::mnist(root, &self.split),
            Format::Usps => crate::digits::usps(root, &self.split),
            Format::Svhn => crate::mat::svhn(root, &self.split),
            Format::MnistM => crate::images::mnist_m(root, &self.split),
            Format::Office31 => crate::images::office31(root, &self.domain),
            Format::ImageList => {
                crate::images::image_list(root, &self.list, self.label_base, self.num_classes)
            }
            Format::Features => {
                let ext = root
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                match ext.as_str() {
                    "mat" => crate::mat::mat_features(
                        root,
                        &self.features_key,
                        &self.labels_key,
                        self.label_base,
                        self.num_classes,
                    ),
                    "safetensors" => crate::features::safetensors_features(
                        root,
                        &self.features_key,
                        &self.labels_key,
                        self.label_base,
                        self.num_classes,
                    ),
                    _ => Err(Error::config(
                        "root",
                        format!(
                            "features files end in .safetensors or .mat, got {}",
                            root.display()
                        ),
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_norms_by_hand() {
        // Two vectors of 3: [1, -3, 0] and [0, 0, 0].
        let mut v = vec![1.0, -3.0, 0.0, 0.0, 0.0, 0.0];
        VectorNorm::L1.apply(&mut v, 3);
        assert_eq!(v, [0.25, -0.75, 0.0, 0.0, 0.0, 0.0]);
        let mut v = vec![3.0, 4.0, 0.0, 0.0];
        VectorNorm::L2.apply(&mut v, 2);
        assert_eq!(v, [0.6, 0.8, 0.0, 0.0]);
        // Columns [1, 2, 3] (mean 2, n−1 std 1) and [5, 5, 5] (constant → 0).
        let mut v = vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
        VectorNorm::Zscore.apply(&mut v, 2);
        assert_eq!(v, [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn normalize_is_refused_outside_feature_vectors() {
        let spec = DataSpec {
            normalize: vec![VectorNorm::Zscore],
            ..DataSpec::new(Format::Mnist, "data/mnist", "train")
        };
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("normalize") && e.contains("Mnist"), "{e}");
        let bad: std::result::Result<DataSpec, _> =
            serde_json::from_str(r#"{"format": "features", "normalize": ["l3"]}"#);
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("l3") && e.contains("zscore"), "{e}");
    }
}

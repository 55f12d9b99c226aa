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
            _ if self.num_classes == Some(0) => {
                Err(Error::config("num_classes", "must be > 0, got 0"))
            }
            _ => Ok(()),
        }
    }

    /// Reads the dataset.
    pub fn load(&self) -> Result<Dataset> {
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

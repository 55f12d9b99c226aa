//! Datasets for domain adaptation, read from their original on-disk formats,
//! turned into batches of candle tensors.
//!
//! | format      | files read                                                   | stored as |
//! |-------------|--------------------------------------------------------------|-----------|
//! | `mnist`     | `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`          | `u8` images |
//! | `usps`      | `usps[.bz2]`, `usps.t[.bz2]` (libsvm text, labels 1..10, pixels in [−1, 1]) | `u8` images |
//! | `svhn`      | `{train,test,extra}_32x32.mat` (MATLAB v5; `X` 32×32×3×N, `y` with 10 = digit 0) | `u8` images |
//! | `mnist_m`   | `mnist_m_{split}/*.png` + `mnist_m_{split}_labels.txt`        | `u8` images |
//! | `office31`  | `<domain>/images/<class>/*.jpg`, 31 classes in one fixed sorted list | files, decoded per batch |
//! | `image_list`| a text file of `relative/path label` lines under a root       | files, decoded per batch |
//! | `features`  | safetensors (`features` [n, d], `labels` [n]) or `.mat` with named variables | `f32` vectors |
//!
//! Bad input is an [`Error`] naming the file and the cause — wrong magic,
//! truncated file, count mismatch, label out of range, undecodable image —
//! never a panic and never a silently skipped sample.
//!
//! [`Loader`] draws seeded batches endlessly ([`Sampler`]; its position is
//! part of a checkpoint) and preprocesses them to the configured input
//! ([`InputConfig`]); [`eval_batches`] walks a dataset in order.
//!
//! ```no_run
//! use ebda_data::{DataSpec, Format, InputConfig, Loader, Sampling};
//! use std::sync::Arc;
//!
//! let mnist = DataSpec::new(Format::Mnist, "data/mnist", "train").load()?;
//! let mut loader = Loader::new(Arc::new(mnist), InputConfig::default(), 64, 0, Sampling::Shuffle)?;
//! let batch = loader.next_batch(&candle_core::Device::Cpu)?; // inputs [64, 1, 28, 28]
//! # Ok::<(), ebda_data::Error>(())
//! ```

mod dataset;
pub mod digits;
mod error;
pub mod features;
pub mod fetch;
mod grid;
pub mod images;
mod io;
mod loader;
pub mod mat;
mod preprocess;
mod sampler;
mod spec;
pub mod synthetic;

pub use dataset::{Dataset, Samples};
pub use error::{Error, Result};
pub use grid::write_grid;
pub use images::{OFFICE31_CLASSES, OFFICE31_DOMAINS};
pub use io::{read_maybe_compressed, sha256_file};
pub use loader::{Batch, HostBatch, Loader, assemble, assemble_host, eval_batches};
pub use preprocess::{Augment, IMAGENET_MEAN, IMAGENET_STD, InputConfig};
pub use sampler::{Sampler, SamplerState, Sampling, mix};
pub use spec::{DataSpec, Format, VectorNorm};

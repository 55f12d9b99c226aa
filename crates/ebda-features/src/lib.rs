//! Feature extractors `F: x ↦ f ∈ ℝ^D` for domain adaptation, behind one trait.
//!
//! | arch    | input        | architecture                                                   | D   |
//! |---------|--------------|----------------------------------------------------------------|-----|
//! | `lenet` | `1×28×28`    | conv 1→20 k5, pool 2, ReLU; conv 20→50 k5, Dropout2d 0.5, pool 2, ReLU; fc 800→500, ReLU, Dropout 0.5 | 500 |
//! | `dtn`   | `3×32×32`    | 3 × (conv k5 s2 p2, BN, Dropout2d 0.1/0.3/0.5, ReLU) with 64/128/256 channels; fc 4096→512, BN, ReLU, Dropout 0.5 | 512 |
//! | `mlp`   | `in_dim`     | (Linear, ReLU, Dropout) per hidden width, for precomputed feature vectors | last width |
//!
//! LeNet and DTN match the digits backbones of the Transfer-Learning-Library
//! (tllib `tllib/vision/models/digits.py`: `LeNet`, `DTN`), which follow the
//! ADDA/CDAN digits networks (Tzeng et al., CVPR 2017; Long et al., NeurIPS
//! 2018, `thuml/CDAN` `pytorch/network.py`). Pooling uses
//! [`ebda_nn::max_pool2d`], whose backward is exact (candle 0.11.1's is not).
//!
//! An optional bottleneck `Linear → BatchNorm1d → ReLU` (tllib's
//! `ImageClassifier` bottleneck) maps the backbone output to `bottleneck` dims.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use ebda_features::FeaturesConfig;
//!
//! let map = VarMap::new();
//! let vb = ebda_nn::seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
//! let lenet = FeaturesConfig::default().init(vb, &ebda_nn::Rng::new(0))?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
//! assert_eq!(lenet.forward_t(&x, false)?.dims(), &[2, 500]);
//! assert_eq!(ebda_nn::parameter_count(&map), 426_070);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dtn;
mod lenet;
mod mlp;

pub use dtn::Dtn;
pub use lenet::LeNet;
pub use mlp::Mlp;

use candle_core::Tensor;
use candle_nn::{BatchNorm, Module, ModuleT, VarBuilder};
use ebda_nn::Linear;
use ebda_nn::Rng;
use serde::{Deserialize, Serialize};

/// Errors of the feature extractors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range; `key` is relative to the features section.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// An input batch does not have the shape the extractor was built for.
    #[error("{arch} input: {reason}")]
    Input { arch: &'static str, reason: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A feature extractor: one forward for training and evaluation, one output width.
pub trait FeatureExtractor: Send + Sync {
    /// Features of a batch; `train` enables dropout and batch statistics
    /// (and updates BN running statistics).
    ///
    /// # Shapes
    /// `[b, ...input_dims()] -> [b, out_dim()]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Width `D` of the features.
    fn out_dim(&self) -> usize;

    /// Shape of one input sample, e.g. `[1, 28, 28]` or `[2048]`.
    fn input_dims(&self) -> Vec<usize>;

    /// The learning-rate group of the extractor's variable `name` (relative
    /// to the `VarBuilder` it was built from): the backbone — pretrained in
    /// transfer settings, trained at `optim.backbone_lr_mult` — or the
    /// layers added on top of it (a bottleneck).
    fn group(&self, name: &str) -> Group {
        match name.strip_prefix(BACKBONE) {
            Some(rest) if rest.starts_with('.') => Group::Backbone,
            _ => Group::NewLayers,
        }
    }
}

/// The variables of an extractor's backbone live under `BACKBONE.`.
pub const BACKBONE: &str = "backbone";

/// A variable's learning-rate group (see [`FeatureExtractor::group`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The backbone's variables.
    Backbone,
    /// Layers added on top of the backbone.
    NewLayers,
}

/// The backbone architectures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// LeNet for 28×28 digits (MNIST, USPS resized).
    #[default]
    Lenet,
    /// DTN for 32×32 digits (SVHN, MNIST-M).
    Dtn,
    /// MLP over precomputed feature vectors.
    Mlp,
}

/// Configuration of a feature extractor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Backbone architecture.
    pub arch: Arch,
    /// Input channels of a convolutional backbone (LeNet: 1 as in tllib;
    /// DTN: 3). `null` takes the architecture's own.
    pub in_channels: Option<usize>,
    /// Input width of the `mlp` backbone (e.g. 2048 for ResNet-50 features).
    pub in_dim: usize,
    /// Hidden widths of the `mlp` backbone; the last is the feature width.
    pub hidden: Vec<usize>,
    /// Dropout before the output (LeNet, DTN) or after each MLP layer; `null`
    /// keeps the reference 0.5.
    pub dropout: Option<f64>,
    /// The reference's channel dropout inside the conv blocks (LeNet 0.5;
    /// DTN 0.1, 0.3, 0.5).
    pub spatial_dropout: bool,
    /// Optional bottleneck width (`Linear → BatchNorm1d → ReLU`) on top.
    pub bottleneck: Option<usize>,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Lenet,
            in_channels: None,
            in_dim: 2048,
            hidden: vec![500],
            dropout: None,
            spatial_dropout: true,
            bottleneck: None,
        }
    }
}

fn invalid(key: &'static str, reason: String) -> Error {
    Error::Config { key, reason }
}

/// Reference dropout before the output layer of every backbone (tllib).
const REFERENCE_DROPOUT: f64 = 0.5;

impl FeaturesConfig {
    /// Checks every field; the error names the field and the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == Some(0) {
            return Err(invalid("in_channels", "must be > 0, got 0".into()));
        }
        if let Some(p) = self.dropout
            && !(0.0..=1.0).contains(&p)
        {
            return Err(invalid("dropout", format!("must be in [0, 1], got {p}")));
        }
        if self.bottleneck == Some(0) {
            return Err(invalid("bottleneck", "must be > 0, got 0".into()));
        }
        if self.arch == Arch::Mlp {
            if self.in_dim == 0 {
                return Err(invalid("in_dim", "must be > 0 for arch mlp, got 0".into()));
            }
            if self.hidden.is_empty() {
                return Err(invalid(
                    "hidden",
                    "must list at least one width for arch mlp, got []".into(),
                ));
            }
            if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
                return Err(invalid(
                    "hidden",
                    format!("widths must be > 0, got 0 at index {i}"),
                ));
            }
        }
        Ok(())
    }

    /// The feature width `D` this config produces.
    pub fn out_dim(&self) -> usize {
        if let Some(b) = self.bottleneck {
            return b;
        }
        match self.arch {
            Arch::Lenet => lenet::OUT_DIM,
            Arch::Dtn => dtn::OUT_DIM,
            Arch::Mlp => self.hidden.last().copied().unwrap_or(self.in_dim),
        }
    }

    fn dropout_p(&self) -> f64 {
        self.dropout.unwrap_or(REFERENCE_DROPOUT)
    }

    /// Builds the extractor; backbone variables live under [`BACKBONE`]`.`,
    /// the bottleneck's under `bottleneck.` (see [`FeatureExtractor::group`]).
    pub fn init(&self, vb: VarBuilder, rng: &Rng) -> Result<Box<dyn FeatureExtractor>> {
        self.validate()?;
        let backbone: Box<dyn FeatureExtractor> = match self.arch {
            Arch::Lenet => Box::new(LeNet::new(
                self.in_channels.unwrap_or(lenet::IN_CHANNELS),
                self.dropout_p(),
                self.spatial_dropout,
                vb.pp(BACKBONE),
                rng,
            )?),
            Arch::Dtn => Box::new(Dtn::new(
                self.in_channels.unwrap_or(dtn::IN_CHANNELS),
                self.dropout_p(),
                self.spatial_dropout,
                vb.pp(BACKBONE),
                rng,
            )?),
            Arch::Mlp => Box::new(Mlp::new(
                self.in_dim,
                &self.hidden,
                self.dropout_p(),
                vb.pp(BACKBONE),
                rng,
            )?),
        };
        match self.bottleneck {
            None => Ok(backbone),
            Some(dim) => {
                let vb = vb.pp("bottleneck");
                let fc = ebda_nn::linear(backbone.out_dim(), dim, vb.pp("fc"))?;
                let bn = ebda_nn::batch_norm(dim, vb.pp("bn"))?;
                Ok(Box::new(WithBottleneck {
                    backbone,
                    fc,
                    bn,
                    dim,
                }))
            }
        }
    }
}

/// A backbone followed by `Linear → BatchNorm1d → ReLU`.
struct WithBottleneck {
    backbone: Box<dyn FeatureExtractor>,
    fc: Linear,
    bn: BatchNorm,
    dim: usize,
}

impl FeatureExtractor for WithBottleneck {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.backbone.forward_t(x, train)?; // [b, D_backbone]
        let z = self.fc.forward(&f)?; // [b, dim]
        Ok(ebda_nn::relu(&self.bn.forward_t(&z, train)?)?)
    }

    fn out_dim(&self) -> usize {
        self.dim
    }

    fn input_dims(&self) -> Vec<usize> {
        self.backbone.input_dims()
    }
}

/// Checks `[b, c, h, w]` against an expected `[c, h, w]`.
pub(crate) fn check_image(arch: &'static str, x: &Tensor, want: [usize; 3]) -> Result<()> {
    match x.dims() {
        [b, c, h, w] if *b > 0 && [*c, *h, *w] == want => Ok(()),
        dims => Err(Error::Input {
            arch,
            reason: format!(
                "expected [batch > 0, {}, {}, {}], got {dims:?}",
                want[0], want[1], want[2]
            ),
        }),
    }
}

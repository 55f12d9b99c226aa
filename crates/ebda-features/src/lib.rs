//! Feature extractors `F: x ↦ f ∈ ℝ^D` for domain adaptation, behind one trait.
//!
//! | backbone | input       | architecture                                                   | D   |
//! |---------|--------------|----------------------------------------------------------------|-----|
//! | `lenet` | `1×28×28`    | conv 1→20 k5, pool 2, ReLU; conv 20→50 k5, Dropout2d 0.5, pool 2, ReLU; fc 800→500, ReLU, Dropout 0.5 | 500 |
//! | `dann_mnist` | `3×28×28` | conv 3→32 k5, ReLU, pool 2; conv 32→48 k5, ReLU, pool 2 (DANN paper, MNIST → MNIST-M) | 768 |
//! | `dtn`   | `3×32×32`    | 3 × (conv k5 s2 p2, BN, Dropout2d 0.1/0.3/0.5, ReLU) with 64/128/256 channels; fc 4096→512, BN, ReLU, Dropout 0.5 | 512 |
//! | `mlp`   | `in_dim`     | (Linear, ReLU, Dropout) per hidden width, for precomputed feature vectors; none: the vectors themselves | last width (or `in_dim`) |
//! | `resnet`| `3×224×224`  | torchvision's ResNet-18/34/50/101 (v1.5), global average pool, no `fc`; trainable or frozen BN; ImageNet weights from `.pth` / `.safetensors` | 512 / 2048 |
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
//! Each backbone owns its settings ([`BackboneConfig`]): a config says
//! `"backbone": "dtn"` or `"backbone": {"mlp": {"in_dim": 800}}`. Adding a
//! backbone is one module implementing [`FeatureExtractor`] and one variant
//! of [`BackboneConfig`] with its config.
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

mod dann_mnist;
mod dtn;
mod lenet;
mod mlp;
mod pth_check;
mod resnet;
pub mod weights;

pub use dann_mnist::DannMnist;
pub use dtn::Dtn;
pub use lenet::LeNet;
pub use mlp::Mlp;
pub use resnet::{BnMode, DEPTHS as RESNET_DEPTHS, ResNet, ResNetSpec};

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
    Config { key: String, reason: String },
    /// An input batch does not have the shape the extractor was built for.
    #[error("{arch} input: {reason}")]
    Input { arch: &'static str, reason: String },
    /// A pretrained weights file cannot be read or does not fit the network.
    #[error("weights file {file}: {reason}")]
    Weights { file: String, reason: String },
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
    /// Not trained at all (e.g. the affine parameters of a frozen BatchNorm).
    Frozen,
}

/// Reference dropout before the output layer of every backbone (tllib).
const REFERENCE_DROPOUT: f64 = 0.5;

/// LeNet's settings (28×28 digits: MNIST, USPS resized).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LenetConfig {
    /// Input channels (1 as in tllib; 3 for RGB digits).
    pub in_channels: usize,
    /// Dropout before the output (tllib: 0.5).
    pub dropout: f64,
    /// The reference's channel dropout (0.5) on conv2's output.
    pub spatial_dropout: bool,
}

impl Default for LenetConfig {
    fn default() -> Self {
        Self {
            in_channels: lenet::IN_CHANNELS,
            dropout: REFERENCE_DROPOUT,
            spatial_dropout: true,
        }
    }
}

/// Settings of the DANN paper's MNIST → MNIST-M extractor (RGB 28×28).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DannMnistConfig {
    /// Input channels (3: MNIST replicated to RGB, MNIST-M).
    pub in_channels: usize,
    /// Dropout on the 768 features (the paper uses none).
    pub dropout: f64,
}

impl Default for DannMnistConfig {
    fn default() -> Self {
        Self {
            in_channels: dann_mnist::IN_CHANNELS,
            dropout: 0.0,
        }
    }
}

/// DTN's settings (32×32 digits: SVHN, MNIST-M).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DtnConfig {
    /// Input channels (3).
    pub in_channels: usize,
    /// Dropout before the output (tllib: 0.5).
    pub dropout: f64,
    /// The reference's channel dropout in the conv blocks (0.1, 0.3, 0.5).
    pub spatial_dropout: bool,
}

impl Default for DtnConfig {
    fn default() -> Self {
        Self {
            in_channels: dtn::IN_CHANNELS,
            dropout: REFERENCE_DROPOUT,
            spatial_dropout: true,
        }
    }
}

/// The MLP's settings (precomputed feature vectors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    /// Input width (e.g. 2048 for ResNet-50 features).
    pub in_dim: usize,
    /// Hidden widths; the last is the feature width. Empty: the input
    /// vectors are the features (cached backbone features under a bottleneck).
    pub hidden: Vec<usize>,
    /// Dropout after each layer.
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            in_dim: 2048,
            hidden: vec![500],
            dropout: REFERENCE_DROPOUT,
        }
    }
}

/// A ResNet's settings (ImageNet-style images: Office-31, Office-Home).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResnetConfig {
    /// 18, 34, 50 or 101 (torchvision's networks).
    pub depth: usize,
    /// Pretrained weights: a torchvision `.pth` (zip format) or a timm /
    /// Hugging Face `.safetensors` file (`ebda data fetch resnet50` gets
    /// torchvision's). Without it the network starts from torchvision's
    /// random initialisation, and the log says so.
    pub weights: Option<String>,
    /// Use BatchNorm's running statistics in training too, never updating them.
    pub frozen_bn: bool,
    /// With `frozen_bn`: whether BatchNorm's γ and β still train.
    pub bn_affine_trainable: bool,
    /// Side of the square input images (224 for ImageNet-pretrained networks).
    pub input_size: usize,
    /// Divides every stage's width (1 = torchvision's network); for small
    /// test networks built by the same code.
    pub width_divisor: usize,
}

impl Default for ResnetConfig {
    fn default() -> Self {
        Self {
            depth: 50,
            weights: None,
            frozen_bn: false,
            bn_affine_trainable: true,
            input_size: 224,
            width_divisor: 1,
        }
    }
}

impl ResnetConfig {
    /// The network's shape, if the depth is one torchvision defines.
    pub fn spec(&self) -> Option<ResNetSpec> {
        ResNetSpec::of_depth(self.depth).map(|s| s.narrowed(self.width_divisor))
    }
}

ebda_config::tagged_config! {
    /// The backbone and its own settings. In a config: `"backbone": "dtn"`
    /// (its defaults) or `"backbone": {"mlp": {"in_dim": 800}}`.
    pub enum BackboneConfig {
        "lenet" => Lenet(LenetConfig),
        "dann_mnist" => DannMnist(DannMnistConfig),
        "dtn" => Dtn(DtnConfig),
        "mlp" => Mlp(MlpConfig),
        "resnet" => Resnet(ResnetConfig),
    }
}

impl Default for BackboneConfig {
    fn default() -> Self {
        Self::Lenet(LenetConfig::default())
    }
}

/// Configuration of a feature extractor: a backbone and an optional
/// bottleneck on top.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    pub backbone: BackboneConfig,
    /// Optional bottleneck width (`Linear → BatchNorm1d → ReLU`) on top.
    pub bottleneck: Option<usize>,
}

fn invalid(key: impl Into<String>, reason: String) -> Error {
    Error::Config {
        key: key.into(),
        reason,
    }
}

fn check_dropout(key: &str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(key, format!("must be in [0, 1], got {p}")))
    }
}

fn check_channels(key: &str, c: usize) -> Result<()> {
    if c == 0 {
        Err(invalid(key, "must be > 0, got 0".into()))
    } else {
        Ok(())
    }
}

impl FeaturesConfig {
    /// A config of `backbone` with its defaults and no bottleneck.
    pub fn of(backbone: BackboneConfig) -> Self {
        Self {
            backbone,
            bottleneck: None,
        }
    }

    /// Checks every field; the error names the field (relative to the
    /// features section) and the bad value.
    pub fn validate(&self) -> Result<()> {
        let at = |field: &str| format!("backbone.{}.{field}", self.backbone.name());
        match &self.backbone {
            BackboneConfig::Lenet(c) => {
                check_channels(&at("in_channels"), c.in_channels)?;
                check_dropout(&at("dropout"), c.dropout)?;
            }
            BackboneConfig::Dtn(c) => {
                check_channels(&at("in_channels"), c.in_channels)?;
                check_dropout(&at("dropout"), c.dropout)?;
            }
            BackboneConfig::DannMnist(c) => {
                check_channels(&at("in_channels"), c.in_channels)?;
                check_dropout(&at("dropout"), c.dropout)?;
            }
            BackboneConfig::Mlp(c) => {
                check_dropout(&at("dropout"), c.dropout)?;
                if c.in_dim == 0 {
                    return Err(invalid(at("in_dim"), "must be > 0, got 0".into()));
                }
                if let Some(i) = c.hidden.iter().position(|&h| h == 0) {
                    return Err(invalid(
                        at("hidden"),
                        format!("widths must be > 0, got 0 at index {i}"),
                    ));
                }
            }
            BackboneConfig::Resnet(c) => {
                if c.spec().is_none() {
                    return Err(invalid(
                        at("depth"),
                        format!("must be one of {:?}, got {}", resnet::DEPTHS, c.depth),
                    ));
                }
                if c.width_divisor == 0 || c.width_divisor > 64 {
                    return Err(invalid(
                        at("width_divisor"),
                        format!("must be in 1..=64, got {}", c.width_divisor),
                    ));
                }
                if c.input_size < 32 {
                    return Err(invalid(
                        at("input_size"),
                        format!("must be ≥ 32, got {}", c.input_size),
                    ));
                }
                if c.weights.as_deref() == Some("") {
                    return Err(invalid(
                        at("weights"),
                        "is empty; omit it for random initialisation".into(),
                    ));
                }
            }
        }
        if self.bottleneck == Some(0) {
            return Err(invalid("bottleneck", "must be > 0, got 0".into()));
        }
        Ok(())
    }

    /// The pretrained weights file the backbone starts from, if any.
    pub fn weights_file(&self) -> Option<&str> {
        match &self.backbone {
            BackboneConfig::Resnet(c) => c.weights.as_deref(),
            _ => None,
        }
    }

    /// The width of the backbone's output (before any bottleneck).
    pub fn backbone_dim(&self) -> usize {
        match &self.backbone {
            BackboneConfig::Lenet(_) => lenet::OUT_DIM,
            BackboneConfig::Dtn(_) => dtn::OUT_DIM,
            BackboneConfig::DannMnist(_) => dann_mnist::OUT_DIM,
            BackboneConfig::Mlp(c) => c.hidden.last().copied().unwrap_or(c.in_dim),
            BackboneConfig::Resnet(c) => c.spec().map_or(0, |s| s.out_dim()),
        }
    }

    /// The feature width `D` this config produces.
    pub fn out_dim(&self) -> usize {
        self.bottleneck.unwrap_or_else(|| self.backbone_dim())
    }

    /// Builds the extractor; backbone variables live under [`BACKBONE`]`.`,
    /// the bottleneck's under `bottleneck.` (see [`FeatureExtractor::group`]).
    pub fn init(&self, vb: VarBuilder, rng: &Rng) -> Result<Box<dyn FeatureExtractor>> {
        self.validate()?;
        let vbb = vb.pp(BACKBONE);
        let backbone: Box<dyn FeatureExtractor> = match &self.backbone {
            BackboneConfig::Lenet(c) => Box::new(LeNet::new(
                c.in_channels,
                c.dropout,
                c.spatial_dropout,
                vbb,
                rng,
            )?),
            BackboneConfig::Dtn(c) => Box::new(Dtn::new(
                c.in_channels,
                c.dropout,
                c.spatial_dropout,
                vbb,
                rng,
            )?),
            BackboneConfig::DannMnist(c) => {
                Box::new(DannMnist::new(c.in_channels, c.dropout, vbb, rng)?)
            }
            BackboneConfig::Mlp(c) => Box::new(Mlp::new(c.in_dim, &c.hidden, c.dropout, vbb, rng)?),
            BackboneConfig::Resnet(c) => Box::new(init_resnet(c, vbb)?),
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

    fn group(&self, name: &str) -> Group {
        match name.strip_prefix(BACKBONE) {
            Some(rest) if rest.starts_with('.') => self.backbone.group(name),
            _ => Group::NewLayers,
        }
    }
}

/// Builds a ResNet and, when the config names a weights file, writes the
/// file's values into it (every variable must be there with its shape).
fn init_resnet(c: &ResnetConfig, vb: VarBuilder) -> Result<ResNet> {
    let spec = c.spec().ok_or_else(|| {
        invalid(
            "backbone.resnet.depth",
            format!("unsupported depth {}", c.depth),
        )
    })?;
    let mode = BnMode {
        frozen: c.frozen_bn,
        affine_trainable: c.bn_affine_trainable,
    };
    let net = ResNet::new(spec, mode, c.input_size, vb)?;
    if let Some(file) = &c.weights {
        let path = std::path::Path::new(file);
        net.load(&weights::to_torchvision(weights::read(path)?), file)?;
    }
    Ok(net)
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

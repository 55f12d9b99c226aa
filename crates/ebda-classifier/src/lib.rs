//! Label classifier head, cross-entropy and accuracy.
//!
//! The head maps features to class logits: a single linear layer
//! `z = W·f + b` (the DANN/tllib digits setting, `nn.Linear(500, 10)`), or an
//! MLP `Linear → ReLU → Dropout → … → Linear` when `hidden` is non-empty.
//!
//! Cross-entropy with optional label smoothing `ε` follows PyTorch's
//! `F.cross_entropy(label_smoothing=ε)` (Szegedy et al., "Rethinking the
//! Inception Architecture", CVPR 2016):
//! `L = (1 − ε)·(−log p_y) + ε · mean_k(−log p_k)`.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use ebda_classifier::{ClassifierConfig, accuracy, cross_entropy};
//!
//! let map = VarMap::new();
//! let vb = ebda_nn::seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
//! let cfg = ClassifierConfig { in_dim: 4, num_classes: 3, ..Default::default() };
//! let head = cfg.init(vb, &ebda_nn::Rng::new(0))?;
//! let logits = head.forward_t(&Tensor::ones((2, 4), DType::F32, &Device::Cpu)?, false)?; // [2, 3]
//! let labels = Tensor::new(&[0u32, 2], &Device::Cpu)?;
//! let loss = cross_entropy(&logits, &labels, 0.0)?;
//! assert!(loss.to_scalar::<f32>()? > 0.0);
//! assert!((0.0..=1.0).contains(&accuracy(&logits, &labels)?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use candle_core::{D, DType, Tensor};
use candle_nn::VarBuilder;
use ebda_nn::Mlp;
use ebda_nn::{Dropout, Rng};
use serde::{Deserialize, Serialize};

/// Errors of the classifier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range; `key` is relative to the classifier section.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// A tensor handed in does not have the expected shape or type.
    #[error("classifier input: {0}")]
    Input(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Configuration of the label [`Classifier`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Feature dimension (the extractor's output; LeNet: 500).
    pub in_dim: usize,
    /// Number of classes (digits: 10, Office-31: 31).
    pub num_classes: usize,
    /// Hidden widths of an MLP head; empty for a linear head.
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer of an MLP head (unused by a linear head).
    pub dropout: f64,
    /// Label smoothing `ε ∈ [0, 1)` of the cross-entropy.
    pub label_smoothing: f64,
}

impl Default for ClassifierConfig {
    /// A linear 500 → 10 head without smoothing, as in the DANN digits setting
    /// (tllib `examples/domain_adaptation/image_classification`, LeNet head).
    fn default() -> Self {
        Self {
            in_dim: 500,
            num_classes: 10,
            hidden: Vec::new(),
            dropout: 0.5,
            label_smoothing: 0.0,
        }
    }
}

fn invalid(key: &'static str, reason: String) -> Error {
    Error::Config { key, reason }
}

impl ClassifierConfig {
    /// Checks every field; the error names the field and the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.in_dim == 0 {
            return Err(invalid("in_dim", "must be > 0, got 0".into()));
        }
        if self.num_classes < 2 {
            return Err(invalid(
                "num_classes",
                format!("must be >= 2, got {}", self.num_classes),
            ));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(invalid(
                "hidden",
                format!("widths must be > 0, got 0 at index {i}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(invalid(
                "dropout",
                format!("must be in [0, 1], got {}", self.dropout),
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(invalid(
                "label_smoothing",
                format!("must be in [0, 1), got {}", self.label_smoothing),
            ));
        }
        Ok(())
    }

    /// Builds the head; variables are `layers.{i}.{weight,bias}` under `vb`.
    pub fn init(&self, vb: VarBuilder, rng: &Rng) -> Result<Classifier> {
        self.validate()?;
        let mut widths = vec![self.in_dim];
        widths.extend(&self.hidden);
        widths.push(self.num_classes);
        let dropout =
            Dropout::new(self.dropout, rng).map_err(|e| invalid("dropout", e.to_string()))?;
        Ok(Classifier {
            config: self.clone(),
            mlp: Mlp::new(&widths, false, dropout, false, vb)?,
        })
    }
}

/// The label classifier head.
#[derive(Clone, Debug)]
pub struct Classifier {
    config: ClassifierConfig,
    mlp: Mlp,
}

impl Classifier {
    /// The configuration the head was built from.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Class logits.
    ///
    /// # Shapes
    /// `[b, in_dim] -> [b, num_classes]`
    pub fn forward_t(&self, f: &Tensor, train: bool) -> Result<Tensor> {
        match f.dims() {
            [_, d] if *d == self.config.in_dim => {}
            dims => {
                return Err(Error::Input(format!(
                    "expected features of shape [batch, {}], got {dims:?}",
                    self.config.in_dim
                )));
            }
        }
        Ok(self.mlp.forward_t(f, train)?)
    }

    /// Cross-entropy with the configured label smoothing.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        cross_entropy(logits, labels, self.config.label_smoothing)
    }
}

fn check_labels(logits: &Tensor, labels: &Tensor) -> Result<(usize, usize)> {
    let (b, k) = logits.dims2().map_err(|_| {
        Error::Input(format!(
            "logits must be [batch, classes], got {:?}",
            logits.dims()
        ))
    })?;
    if labels.dims() != [b] {
        return Err(Error::Input(format!(
            "labels must be [{b}] to match logits {:?}, got {:?}",
            logits.dims(),
            labels.dims()
        )));
    }
    if labels.dtype() != DType::U32 {
        return Err(Error::Input(format!(
            "labels must be u32, got {:?}",
            labels.dtype()
        )));
    }
    Ok((b, k))
}

/// Mean cross-entropy with label smoothing `ε`:
/// `(1 − ε)·(−log p_y) + ε·mean_k(−log p_k)`, computed from `log_softmax`.
///
/// # Shapes
/// `logits: [b, k]`, `labels: [b]` (u32) → `[]`
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, smoothing: f64) -> Result<Tensor> {
    check_labels(logits, labels)?;
    let log_p = log_softmax(logits)?; // [b, k]
    let nll = candle_nn::loss::nll(&log_p, labels)?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let uniform = log_p.mean(D::Minus1)?.mean_all()?.neg()?;
    Ok(((nll * (1.0 - smoothing))? + (uniform * smoothing)?)?)
}

/// `log p = z − max(z) − log Σ e^{z − max(z)}` over the last axis. The max
/// is a constant shift (detached): the result does not depend on it, so no
/// gradient is routed through it (candle-nn's `log_softmax` differentiates
/// through a `max` whose backward feeds every tied logit with rounding noise).
///
/// # Shapes
/// `[b, k] -> [b, k]`
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.detach().max_keepdim(D::Minus1)?; // [b, 1]
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?; // [b, 1]
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// Predicted classes (argmax of the logits).
///
/// # Shapes
/// `[b, k] -> [b]` (u32)
pub fn predict(logits: &Tensor) -> Result<Tensor> {
    Ok(logits.argmax(D::Minus1)?)
}

/// Number of correct predictions.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    check_labels(logits, labels)?;
    let hits = predict(logits)?
        .eq(labels)?
        .to_dtype(DType::U32)?
        .sum_all()?;
    Ok(hits.to_scalar::<u32>()? as usize)
}

/// Share of correct predictions, in [0, 1].
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let (b, _) = check_labels(logits, labels)?;
    if b == 0 {
        return Err(Error::Input("accuracy of an empty batch".into()));
    }
    Ok(correct(logits, labels)? as f64 / b as f64)
}

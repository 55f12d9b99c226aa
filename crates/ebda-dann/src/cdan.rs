//! CDAN's conditioning (Long, Cao, Wang & Jordan, "Conditional Adversarial
//! Domain Adaptation", NeurIPS 2018): the discriminator sees the features
//! `f` together with the classifier's prediction `g = softmax(C(f))`.
//!
//! - [`multilinear`]: `T(f, g) = g ⊗ f`, flattened (`row c·F + j = g_c f_j`),
//!   as tllib's `MultiLinearMap`;
//! - [`RandomizedMultilinear`]: `T(f, g) = (f R_f) ⊙ (g R_g) / √d` with fixed
//!   Gaussian `R_f`, `R_g` (the paper's variant when `F·C > 4096`);
//! - [`entropy_weights`]: CDAN+E's `w = 1 + e^{−H(g)}`, normalised so the
//!   weights of a batch sum to its size;
//! - [`weighted_bce_with_logits`]: the discriminator's loss with those weights.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let f = Tensor::new(&[[1f32, 2.]], &Device::Cpu)?;      // [1, 2]
//! let g = Tensor::new(&[[0.25f32, 0.75]], &Device::Cpu)?; // [1, 2]
//! let h = ebda_dann::multilinear(&f, &g)?;                // [1, 4]
//! assert_eq!(h.to_vec2::<f32>()?, vec![vec![0.25, 0.5, 0.75, 1.5]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::{Error, Result};
use candle_core::{D, Tensor};
use candle_nn::VarBuilder;

fn check_pair(f: &Tensor, g: &Tensor) -> Result<(usize, usize, usize)> {
    match (f.dims(), g.dims()) {
        ([b, fd], [bg, c]) if b == bg => Ok((*b, *fd, *c)),
        (a, b) => Err(Error::Input(format!(
            "features [batch, F] and predictions [batch, C] expected, got {a:?} and {b:?}"
        ))),
    }
}

/// `g ⊗ f` per row, flattened.
///
/// # Shapes
/// `f: [b, F]`, `g: [b, C]` → `[b, C·F]`
pub fn multilinear(f: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (b, fd, c) = check_pair(f, g)?;
    let outer = g.unsqueeze(2)?.broadcast_mul(&f.unsqueeze(1)?)?; // [b, C, F]
    Ok(outer.reshape((b, c * fd))?)
}

/// The randomized multilinear map with fixed random matrices.
#[derive(Clone, Debug)]
pub struct RandomizedMultilinear {
    rf: Tensor,
    rg: Tensor,
    dim: usize,
}

impl RandomizedMultilinear {
    /// `R_f [F, d]` and `R_g [C, d]` drawn from N(0, 1) by `vb` (a seeded
    /// builder); they are constants, never trained.
    pub fn new(features: usize, classes: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Config {
                key: "random_dim",
                reason: "must be > 0, got 0".into(),
            });
        }
        let init = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        };
        Ok(Self {
            rf: vb.get_with_hints((features, dim), "rf", init)?.detach(),
            rg: vb.get_with_hints((classes, dim), "rg", init)?.detach(),
            dim,
        })
    }

    /// `(f R_f) ⊙ (g R_g) / √d`.
    ///
    /// # Shapes
    /// `f: [b, F]`, `g: [b, C]` → `[b, d]`
    pub fn forward(&self, f: &Tensor, g: &Tensor) -> Result<Tensor> {
        check_pair(f, g)?;
        let a = f.matmul(&self.rf)?; // [b, d]
        let b = g.matmul(&self.rg)?; // [b, d]
        Ok(((a * b)? / (self.dim as f64).sqrt())?)
    }

    /// Output width `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// CDAN+E's sample weights from predictions `g` (rows summing to 1):
/// `w_i = 1 + e^{−H(g_i)}`, `H(g) = −Σ_c g_c log(g_c + 1e-5)` (tllib's
/// `entropy`), scaled so that `Σ_i w_i = b`. Confident predictions weigh more.
///
/// # Shapes
/// `g: [b, C]` → `[b]`
pub fn entropy_weights(g: &Tensor) -> Result<Tensor> {
    let b = g.dim(0)?;
    let h = (g * (g + 1e-5)?.log()?)?.sum(D::Minus1)?.neg()?; // [b]
    let w = (h.neg()?.exp()? + 1.0)?;
    let total = w.sum_all()?;
    Ok((w.broadcast_div(&total)? * b as f64)?)
}

/// `mean_i w_i · ℓ(z_i, y_i)` with `ℓ` the binary cross-entropy on logits
/// (stable value, exact gradient `w_i (σ(z_i) − y_i) / b`, see
/// [`crate::bce_with_logits`]); the weights carry no gradient.
///
/// # Shapes
/// `z, y, w: [b]` → `[]`
pub fn weighted_bce_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    if logits.dims() != targets.dims() || logits.dims() != weights.dims() {
        return Err(Error::Input(format!(
            "logits {:?}, targets {:?} and weights {:?} differ in shape",
            logits.dims(),
            targets.dims(),
            weights.dims()
        )));
    }
    let targets = targets.to_dtype(logits.dtype())?;
    let w = weights.detach().to_dtype(logits.dtype())?;
    let z = logits.detach();
    let softplus = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let value = ((z.relu()? - (&z * &targets)?)? + softplus)?; // [b]
    let slope = (candle_nn::ops::sigmoid(&z)? - &targets)?; // ∂ℓ/∂z = σ(z) − y
    let gradient = (slope * (logits - &z)?)?; // 0 in value
    Ok(((value + gradient)? * w)?.mean_all()?)
}

//! Dropout with seeded, checkpointable masks.
//!
//! Training mode zeroes each element (or, for [`Dropout2d`], each whole
//! channel) with probability `p` and scales the survivors by `1/(1 − p)`, as
//! PyTorch's `nn.Dropout` / `nn.Dropout2d` do; evaluation mode is the
//! identity. Masks are drawn on the host from the shared [`Rng`] and moved to
//! the input's device, so a seed fixes them on every backend.

use crate::{Error, Rng};
use candle_core::{Result, Tensor};
use rand::RngCore as _;

fn check_p(p: f64) -> std::result::Result<(), Error> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "dropout",
            reason: format!("probability must be in [0, 1], got {p}"),
        })
    }
}

/// Draws `n` mask values: 0 with probability `p`, else `1/(1−p)`.
///
/// Element `i` is dropped when the `i`-th uniform draw `u ∈ [0, 1)` of the
/// stream is below `p`. `rand` makes `u` from the top 53 bits `k` of a
/// `u64` as `k · 2⁻⁵³`, so `u < p ⇔ k < ⌈p · 2⁵³⌉`: compared as integers,
/// the same masks without a float conversion per element.
fn mask_values(rng: &Rng, n: usize, p: f64) -> Vec<f32> {
    if p >= 1.0 {
        return vec![0.0; n];
    }
    let keep = (1.0 / (1.0 - p)) as f32;
    let threshold = (p * (1u64 << 53) as f64).ceil() as u64;
    let mut g = rng.lock();
    (0..n)
        .map(|_| {
            if (g.next_u64() >> 11) < threshold {
                0.0
            } else {
                keep
            }
        })
        .collect()
}

fn apply_mask(x: &Tensor, mask_shape: &[usize], rng: &Rng, p: f64) -> Result<Tensor> {
    let n = mask_shape.iter().product();
    let mask = Tensor::from_vec(
        mask_values(rng, n, p),
        mask_shape,
        &candle_core::Device::Cpu,
    )?
    .to_dtype(x.dtype())?
    .to_device(x.device())?;
    x.broadcast_mul(&mask)
}

/// Element-wise dropout (PyTorch `nn.Dropout`).
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f64,
    rng: Rng,
}

impl Dropout {
    /// Dropout with probability `p ∈ [0, 1]`, drawing masks from `rng`.
    pub fn new(p: f64, rng: &Rng) -> std::result::Result<Self, Error> {
        check_p(p)?;
        Ok(Self {
            p,
            rng: rng.clone(),
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// # Shapes
    /// any → same
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        apply_mask(x, x.dims(), &self.rng, self.p)
    }
}

/// Channel dropout (PyTorch `nn.Dropout2d`): zeroes whole feature maps.
#[derive(Clone, Debug)]
pub struct Dropout2d {
    p: f64,
    rng: Rng,
}

impl Dropout2d {
    /// Channel dropout with probability `p ∈ [0, 1]`, drawing masks from `rng`.
    pub fn new(p: f64, rng: &Rng) -> std::result::Result<Self, Error> {
        check_p(p)?;
        Ok(Self {
            p,
            rng: rng.clone(),
        })
    }

    /// # Shapes
    /// `[b, c, h, w] -> [b, c, h, w]`; one draw per `(b, c)`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let (b, c, _, _) = x.dims4()?;
        apply_mask(x, &[b, c, 1, 1], &self.rng, self.p)
    }

    /// The multipliers `forward_t` would apply to a `[b, c, …]` input, drawn
    /// from the same stream (`0` or `1/(1 − p)` per `(b, c)`, row-major), for
    /// ops that apply the mask themselves ([`crate::conv_pool_relu`]);
    /// `None` where `forward_t` is the identity (evaluation, `p = 0`).
    pub fn channel_mask(&self, b: usize, c: usize, train: bool) -> Option<Vec<f32>> {
        (train && self.p != 0.0).then(|| mask_values(&self.rng, b * c, self.p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn eval_is_identity_and_train_scales_survivors() {
        let rng = Rng::new(0);
        let x = Tensor::ones((64, 100), DType::F32, &Device::Cpu).unwrap();
        let d = Dropout::new(0.5, &rng).unwrap();
        let y: Vec<f32> = d
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(y.iter().all(|v| *v == 1.0));
        let y: Vec<f32> = d
            .forward_t(&x, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(y.iter().all(|v| *v == 0.0 || *v == 2.0));
        let dropped = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        assert!((dropped - 0.5).abs() < 0.05, "dropped share {dropped}");
    }

    #[test]
    fn channel_dropout_zeroes_whole_maps_and_replays_from_state() {
        let rng = Rng::new(1);
        // A non-constant input, so a map that was kept can be told from one
        // that was scaled wrongly or zeroed in part.
        let (b, c, hw) = (8, 16, 9);
        let xs: Vec<f32> = (0..b * c * hw).map(|i| 1.0 + (i % 7) as f32).collect();
        let x = Tensor::from_vec(xs.clone(), (b, c, 3, 3), &Device::Cpu).unwrap();
        let d = Dropout2d::new(0.5, &rng).unwrap();
        let saved = rng.state();
        let y = d.forward_t(&x, true).unwrap();
        let ys: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        // Each map is either all zero or the input scaled by 1/(1 − p) = 2.
        let mut zeroed = 0;
        for (m, (ym, xm)) in ys.chunks(hw).zip(xs.chunks(hw)).enumerate() {
            if ym.iter().all(|v| *v == 0.0) {
                zeroed += 1;
            } else {
                let want: Vec<f32> = xm.iter().map(|v| 2.0 * v).collect();
                assert_eq!(
                    ym,
                    want.as_slice(),
                    "map {m} neither dropped nor scaled by 2"
                );
            }
        }
        // 128 maps at p = 0.5: some dropped, some kept (a no-op fails here).
        assert!((40..=88).contains(&zeroed), "{zeroed} of 128 maps dropped");
        rng.restore(&saved);
        let again = d.forward_t(&x, true).unwrap();
        let diff = (y - again)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        // Evaluation mode is the identity.
        let eval: Vec<f32> = d
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(eval, xs);
    }

    /// The integer comparison draws the masks `u < p` with `u` from
    /// `rand`'s `random::<f64>()` would: same stream, same masks.
    #[test]
    fn masks_equal_the_float_comparison() {
        use rand::Rng as _;
        for p in [0.1, 0.5, 0.3, 1.0 / 3.0, 0.999, 1e-9] {
            for seed in 0..3 {
                let ours = mask_values(&Rng::new(seed), 10_000, p);
                let rng = Rng::new(seed);
                let mut g = rng.lock();
                let keep = (1.0 / (1.0 - p)) as f32;
                let reference: Vec<f32> = (0..10_000)
                    .map(|_| if g.random::<f64>() < p { 0.0 } else { keep })
                    .collect();
                assert_eq!(ours, reference, "p = {p}, seed {seed}");
            }
        }
    }

    #[test]
    fn bad_probability_is_rejected() {
        let err = Dropout::new(1.5, &Rng::new(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dropout: probability must be in [0, 1], got 1.5"
        );
    }
}

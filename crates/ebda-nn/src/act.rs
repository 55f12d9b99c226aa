//! ReLU with PyTorch's gradient: `y = max(x, 0)`, `∂y/∂x = 1[x > 0]`.
//!
//! candle 0.11.1's `relu` backward multiplies by `x ≥ 0`, so it passes the
//! gradient at exactly `x = 0`; PyTorch's (`threshold_backward`) does not.
//! Exact zeros reach a ReLU wherever an upstream op zeroes values (dropout
//! masks, constant inputs), so the two disagree in practice, not only in
//! theory. On the CPU [`relu`] is one op whose backward reads the saved
//! output (`∂L/∂x = ∂L/∂y · 1[y > 0]`); elsewhere [`relu_generic`] computes
//! the same with tensor ops.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! let x = Var::from_tensor(&Tensor::new(&[-1f32, 0., 2.], &Device::Cpu)?)?;
//! let y = ebda_nn::relu(&x)?; // [0, 0, 2]
//! let g = y.sum_all()?.backward()?;
//! // dy/dx = 1[x > 0]: no gradient at x = 0
//! assert_eq!(g.get(&x).unwrap().to_vec1::<f32>()?, vec![0., 0., 1.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::ops::{contiguous, cpu_float};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

/// `max(x, 0)` with the gradient `1[x > 0]` (see the module docs), on any
/// device.
///
/// # Shapes
/// any -> the same
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if cpu_float(x) {
        x.contiguous()?.apply_op1(Relu)
    } else {
        relu_generic(x)
    }
}

/// [`relu`] through candle tensor ops alone: `x · 1[x > 0]`, whose backward
/// is the multiplication by the (constant) mask. The path of every non-CPU
/// device; public so that tests can compare it with the CPU op anywhere.
pub fn relu_generic(x: &Tensor) -> Result<Tensor> {
    x.mul(&x.gt(0.0)?.to_dtype(x.dtype())?)
}

struct Relu;

/// `(dy, y) ↦ dy · 1[y > 0]`.
struct ReluGrad;

/// `max(v, 0)`, NaN kept (as PyTorch's relu), so a diverging run is seen.
fn positive<T: WithDType>(v: T) -> T {
    #[allow(clippy::eq_op)] // v != v: NaN
    let nan = v != v;
    if v > T::zero() || nan { v } else { T::zero() }
}

fn masked<T: WithDType>(dy: &[T], y: &[T]) -> Vec<T> {
    dy.iter()
        .zip(y)
        .map(|(&g, &v)| if v > T::zero() { g } else { T::zero() })
        .collect()
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "ebda-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match storage {
            CpuStorage::F32(d) => CpuStorage::F32(
                contiguous(d, layout)?
                    .iter()
                    .map(|&v| positive(v))
                    .collect(),
            ),
            CpuStorage::F64(d) => CpuStorage::F64(
                contiguous(d, layout)?
                    .iter()
                    .map(|&v| positive(v))
                    .collect(),
            ),
            other => candle_core::bail!("ebda-relu: f32 or f64 expected, got {:?}", other.dtype()),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&res.contiguous()?, &ReluGrad)?,
        ))
    }
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "ebda-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(g), CpuStorage::F32(y)) => {
                CpuStorage::F32(masked(contiguous(g, l1)?, contiguous(y, l2)?))
            }
            (CpuStorage::F64(g), CpuStorage::F64(y)) => {
                CpuStorage::F64(masked(contiguous(g, l1)?, contiguous(y, l2)?))
            }
            (a, b) => candle_core::bail!(
                "ebda-relu-grad: f32 or f64 of one type expected, got {:?} and {:?}",
                a.dtype(),
                b.dtype()
            ),
        };
        Ok((out, l1.shape().clone()))
    }
}

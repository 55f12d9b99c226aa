//! A linear layer `y = x·Wᵀ + b` whose CPU forward and backward are one op.
//!
//! candle-nn's `Linear` is `x.matmul(W.t()) + b`: three graph nodes, and a
//! backward that hands the weight gradient over as the transpose of a
//! `[in, out]` product, so candle adds it to the weight's `[out, in]`
//! gradient through a strided (cache-hostile) element-wise add. Here, on the
//! CPU, one node: the forward is one GEMM onto the broadcast bias, and the
//! backward writes `dW = dYᵀ·X` directly in `[out, in]`, `db = Σ dY` and
//! (only when `x` tracks a gradient) `dX = dY·W`. Other devices, and inputs
//! that are not 2-D, take candle-nn's layer.

use crate::ops::{cpu_float, gemm_par};
use candle_core::{CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor, WithDType};

/// `y = x·Wᵀ + b` with `W: [out, in]`, `b: [out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer with the given weight `[out, in]` and bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    /// # Shapes
    /// `[b, in] -> [b, out]` (any leading dims through candle-nn's path)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (true, [_, k], Some(b)) = (cpu_float(x), x.dims(), &self.bias)
            && self.weight.dims().get(1) == Some(k)
            && self.weight.dtype() == x.dtype()
        {
            return x.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &b.contiguous()?,
                LinearOp,
            );
        }
        candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(x)
    }
}

/// `(x [m, k], W [n, k], b [n]) ↦ x·Wᵀ + b`.
struct LinearOp;

fn forward<T: WithDType>(x: &[T], w: &[T], b: &[T], m: usize, n: usize, k: usize) -> Vec<T> {
    let mut y = Vec::with_capacity(m * n);
    for _ in 0..m {
        y.extend_from_slice(&b[..n]);
    }
    // Wᵀ as the right operand: element (kk, j) is w[j·k + kk].
    gemm_par(m, n, k, &mut y, n, true, x, (k, 1), w, (1, k));
    y
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "ebda-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, kw) = wl.shape().dims2()?;
        if kw != k || bl.shape().elem_count() != n {
            candle_core::bail!(
                "linear: input [{m}, {k}], weight [{n}, {kw}] and bias of {} values do not fit",
                bl.shape().elem_count()
            )
        }
        let y = float_dispatch3!("ebda-linear", (xs, xl), (ws, wl), (bs, bl), |x, w, b| {
            forward(x, w, b, m, n, k)
        });
        Ok((y, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = x.dims2()?;
        let n = w.dim(0)?;
        let need_dx = x.track_op();
        let flat = grad.contiguous()?.apply_op3_no_bwd(
            &x.contiguous()?,
            &w.contiguous()?,
            &LinearGrad { need_dx },
        )?;
        let dx_len = if need_dx { m * k } else { 0 };
        let dx = if need_dx {
            Some(flat.narrow(0, 0, dx_len)?.reshape((m, k))?)
        } else {
            None
        };
        let dw = flat.narrow(0, dx_len, n * k)?.reshape((n, k))?;
        let db = flat.narrow(0, dx_len + n * k, n)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `(dY [m, n], x [m, k], W [n, k]) ↦ [dX = dY·W (when needed) | dW = dYᵀ·x | db = Σ dY]`.
struct LinearGrad {
    need_dx: bool,
}

fn backward<T: WithDType>(
    dy: &[T],
    x: &[T],
    w: &[T],
    (m, n, k): (usize, usize, usize),
    need_dx: bool,
) -> Vec<T> {
    let dx_len = if need_dx { m * k } else { 0 };
    let mut out = vec![T::zero(); dx_len + n * k + n];
    let (dx, rest) = out.split_at_mut(dx_len);
    let (dw, db) = rest.split_at_mut(n * k);
    if need_dx {
        gemm_par(m, k, n, dx, k, false, dy, (n, 1), w, (k, 1));
    }
    // dW [n, k] = dYᵀ (rs 1, cs n) · x (rs k, cs 1).
    gemm_par(n, k, m, dw, k, false, dy, (1, n), x, (k, 1));
    for row in dy.chunks(n) {
        for (s, &v) in db.iter_mut().zip(row) {
            *s += v;
        }
    }
    out
}

impl CustomOp3 for LinearGrad {
    fn name(&self) -> &'static str {
        "ebda-linear-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, n) = gl.shape().dims2()?;
        let (_, k) = xl.shape().dims2()?;
        let dims = (m, n, k);
        let out = float_dispatch3!(
            "ebda-linear-grad",
            (gs, gl),
            (xs, xl),
            (ws, wl),
            |g, x, w| backward(g, x, w, dims, self.need_dx)
        );
        let len = if self.need_dx { m * k } else { 0 } + n * k + n;
        Ok((out, Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Against candle-nn's `Linear`: values and the gradients of x, W, b for
    /// L = Σ g ⊙ y, with and without an input gradient, odd sizes, f32/f64.
    #[test]
    fn equals_candle_nn_linear() {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (1, 1, 1),
            (7, 13, 5),
            (128, 800, 500),
            (64, 500, 1),
            (3, 256, 500),
        ] {
            for dtype in [DType::F32, DType::F64] {
                for x_grad in [true, false] {
                    let r = |s: &[usize]| {
                        Tensor::randn(0f32, 1., s, &dev)
                            .unwrap()
                            .to_dtype(dtype)
                            .unwrap()
                    };
                    let x = Var::from_tensor(&r(&[m, k])).unwrap();
                    let w = Var::from_tensor(&r(&[n, k])).unwrap();
                    let b = Var::from_tensor(&r(&[n])).unwrap();
                    let input = if x_grad {
                        x.as_tensor().clone()
                    } else {
                        x.as_tensor().detach()
                    };
                    let ours = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
                        .forward(&input)
                        .unwrap();
                    let theirs =
                        candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
                            .forward(&input)
                            .unwrap();
                    let g = r(&[m, n]);
                    let tol = if dtype == DType::F64 { 1e-11 } else { 1e-4 };
                    let close = |what: &str, a: &Tensor, b: &Tensor| {
                        assert_eq!(a.dims(), b.dims(), "{what}");
                        let d = (a - b)
                            .unwrap()
                            .abs()
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .max(0)
                            .unwrap();
                        let d = d.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
                        let s = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
                        let s = s
                            .to_dtype(DType::F64)
                            .unwrap()
                            .to_scalar::<f64>()
                            .unwrap()
                            .max(1.0);
                        assert!(
                            d <= tol * s,
                            "{what} ({m}×{k}→{n}, {dtype:?}): max diff {d}"
                        );
                    };
                    close("y", &ours, &theirs);
                    let go = (&ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
                    let gt = (&theirs * &g)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .backward()
                        .unwrap();
                    close("dW", go.get(&w).unwrap(), gt.get(&w).unwrap());
                    close("db", go.get(&b).unwrap(), gt.get(&b).unwrap());
                    if x_grad {
                        close("dx", go.get(&x).unwrap(), gt.get(&x).unwrap());
                    } else {
                        assert!(go.get(x.as_tensor()).is_none());
                    }
                }
            }
        }
    }

    #[test]
    fn non_matrix_inputs_take_candle_nn_path() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (4, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1., 4, &dev).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 5, 3), &dev).unwrap();
        let ours = Linear::new(w.clone(), Some(b.clone())).forward(&x).unwrap();
        let theirs = candle_nn::Linear::new(w, Some(b)).forward(&x).unwrap();
        let d = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }
}

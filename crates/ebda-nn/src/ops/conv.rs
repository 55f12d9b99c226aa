//! The whole convolution `y = W ⋆ x + b` as one op with its own backward.

use super::*;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// A whole convolution `y = W ⋆ x + b` (groups 1, dilation 1) as one op, so
/// that the autograd graph holds one node instead of five full-size ones.
/// Forward, per image: `im2col` into a per-task buffer, then
/// `y_b [out, oh·ow] = W [out, c·k·k] · cols_bᵀ`, written in place.
/// Backward: `dW = Σ_b dY_b · cols_b` (accumulated per task, then summed),
/// `db = Σ dY`, and `dX_b = col2im(dY_bᵀ · W)` only when `x` tracks a gradient.
pub(crate) struct Conv2dOp {
    window: Window,
    /// The forward's `im2col` of the whole batch, reused by the weight gradient.
    cols: Mutex<Option<Arc<Cols>>>,
}

/// A batch's `im2col`, `[b, oh·ow, c·kh·kw]`.
enum Cols {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// The largest `im2col` a convolution keeps from its forward for its backward.
const KEEP_COLS_BYTES: usize = 64 << 20;

impl Cols {
    fn bytes(&self) -> usize {
        match self {
            Cols::F32(v) => v.len() * 4,
            Cols::F64(v) => v.len() * 8,
        }
    }
}

impl Conv2dOp {
    pub fn new(window: Window) -> Self {
        Self {
            window,
            cols: Mutex::new(None),
        }
    }
}

impl candle_core::CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "ebda-conv2d"
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
        let g = self.window;
        let oc = wl.dims()[0];
        fn run<T: WithDType>(
            x: &[T],
            w: &[T],
            bias: &[T],
            g: &Window,
            oc: usize,
        ) -> (Vec<T>, Vec<T>) {
            let (rows, ckk, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
            let one = Window { b: 1, ..*g };
            let mut y = vec![T::zero(); g.b * oc * rows];
            let per = chunk(g.b);
            let fill_bias = |yb: &mut [T]| {
                for (o, row) in yb.chunks_mut(rows).enumerate() {
                    row.fill(bias[o]);
                }
            };
            if g.pointwise() {
                // y_b += W · x_b, x_b [c, h·w] read in place: no im2col.
                y.par_chunks_mut(per * oc * rows)
                    .enumerate()
                    .for_each(|(ci, out)| {
                        for i in 0..out.len() / (oc * rows) {
                            let b = ci * per + i;
                            let yb = &mut out[i * oc * rows..(i + 1) * oc * rows];
                            fill_bias(yb);
                            let xb = &x[b * plane..(b + 1) * plane];
                            gemm(oc, rows, ckk, yb, rows, true, w, (ckk, 1), xb, (rows, 1));
                        }
                    });
                return (y, Vec::new());
            }
            let mut cols = vec![T::zero(); g.b * rows * ckk];
            y.par_chunks_mut(per * oc * rows)
                .zip(cols.par_chunks_mut(per * rows * ckk))
                .enumerate()
                .for_each(|(ci, (out, cbuf))| {
                    for i in 0..out.len() / (oc * rows) {
                        let b = ci * per + i;
                        let cb = &mut cbuf[i * rows * ckk..(i + 1) * rows * ckk]; // [rows, ckk]
                        im2col_one(&x[b * plane..(b + 1) * plane], &one, cb);
                        let yb = &mut out[i * oc * rows..(i + 1) * oc * rows]; // [oc, rows]
                        fill_bias(yb);
                        // y_b += W · colsᵀ: lhs W (rs ckk, cs 1), rhs colsᵀ (rs 1, cs ckk).
                        gemm(oc, rows, ckk, yb, rows, true, w, (ckk, 1), cb, (1, ckk));
                    }
                });
            (y, cols)
        }
        let (out, cols) = match (xs, ws, bs) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                let (y, cols) = run(
                    contiguous(x, xl)?,
                    contiguous(w, wl)?,
                    contiguous(b, bl)?,
                    &g,
                    oc,
                );
                (CpuStorage::F32(y), Cols::F32(cols))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                let (y, cols) = run(
                    contiguous(x, xl)?,
                    contiguous(w, wl)?,
                    contiguous(b, bl)?,
                    &g,
                    oc,
                );
                (CpuStorage::F64(y), Cols::F64(cols))
            }
            _ => {
                candle_core::bail!("ebda-conv2d: input, weight and bias must all be f32 or all f64")
            }
        };
        // Kept for the weight gradient when small (LeNet: a few MB); a large
        // one (ResNet's 3×3 convolutions: 9× the input, hundreds of MB per
        // layer) is recomputed per image in the backward instead.
        if cols.bytes() > 0 && cols.bytes() <= KEEP_COLS_BYTES {
            *self.cols.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cols));
        }
        Ok((out, Shape::from((g.b, oc, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.window;
        let grad = grad.contiguous()?;
        let cols = self.cols.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // [out, c·k·k + 1]: the weight gradient, and the bias gradient in the last column.
        let both = x
            .contiguous()?
            .apply_op2_no_bwd(&grad, &ConvGradWeight(g, cols))?;
        let dw = both
            .narrow(1, 0, g.cols())?
            .contiguous()?
            .reshape(w.shape())?;
        let db = both.narrow(1, g.cols(), 1)?.squeeze(1)?.contiguous()?;
        // The input gradient is skipped where nothing upstream needs it (the first layer's images).
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(&w.contiguous()?, &ConvGradInput(g))?)
        } else {
            None
        };
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `(x, dY) ↦ [dW | db]`: `dW = Σ_b dY_b [out, oh·ow] · cols_b [oh·ow, c·k·k]`
/// (the forward's cols when at hand), and as an extra last column
/// `db = Σ_b Σ_pixels dY_b`. Accumulated per task, then summed.
pub(super) struct ConvGradWeight(Window, Option<Arc<Cols>>);

pub(super) fn grad_weight<T: WithDType>(
    x: &[T],
    dy: &[T],
    g: &Window,
    oc: usize,
    cached: Option<&[T]>,
) -> Vec<T> {
    let (rows, ckk, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
    let one = Window { b: 1, ..*g };
    let cached = cached.filter(|c| c.len() == g.b * rows * ckk);
    let partial: Vec<Vec<T>> = (0..g.b)
        .collect::<Vec<_>>()
        .par_chunks(chunk(g.b))
        .map(|items| {
            let mut dw = vec![T::zero(); oc * (ckk + 1)];
            let mut buf = if cached.is_none() && !g.pointwise() {
                vec![T::zero(); rows * ckk]
            } else {
                Vec::new()
            };
            for &b in items {
                // cols_b [rows, ckk]; for a pointwise window, x_b [c, rows] read transposed.
                let (cols, strides): (&[T], (usize, usize)) = match cached {
                    Some(c) => (&c[b * rows * ckk..(b + 1) * rows * ckk], (ckk, 1)),
                    None if g.pointwise() => (&x[b * plane..(b + 1) * plane], (1, rows)),
                    None => {
                        im2col_one(&x[b * plane..(b + 1) * plane], &one, &mut buf);
                        (&buf, (ckk, 1))
                    }
                };
                let dyb = &dy[b * oc * rows..(b + 1) * oc * rows]; // [oc, rows]
                // dW, with row stride ckk + 1 to leave the bias column free.
                gemm(
                    oc,
                    ckk,
                    rows,
                    &mut dw,
                    ckk + 1,
                    true,
                    dyb,
                    (rows, 1),
                    cols,
                    strides,
                );
                for (o, row) in dyb.chunks(rows).enumerate() {
                    let sum = row.iter().fold(T::zero(), |a, &v| a + v);
                    dw[o * (ckk + 1) + ckk] += sum;
                }
            }
            dw
        })
        .collect();
    let mut total = vec![T::zero(); oc * (ckk + 1)];
    add_partials(&mut total, partial);
    total
}

impl CustomOp2 for ConvGradWeight {
    fn name(&self) -> &'static str {
        "ebda-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let oc = gl.dims()[1];
        let out = match (xs, gs, self.1.as_deref()) {
            (CpuStorage::F32(x), CpuStorage::F32(d), cached) => {
                let c = match cached {
                    Some(Cols::F32(c)) => Some(c.as_slice()),
                    _ => None,
                };
                CpuStorage::F32(grad_weight(
                    contiguous(x, xl)?,
                    contiguous(d, gl)?,
                    g,
                    oc,
                    c,
                ))
            }
            (CpuStorage::F64(x), CpuStorage::F64(d), cached) => {
                let c = match cached {
                    Some(Cols::F64(c)) => Some(c.as_slice()),
                    _ => None,
                };
                CpuStorage::F64(grad_weight(
                    contiguous(x, xl)?,
                    contiguous(d, gl)?,
                    g,
                    oc,
                    c,
                ))
            }
            _ => candle_core::bail!("ebda-conv2d-grad-weight: f32 or f64 expected"),
        };
        Ok((out, Shape::from((oc, g.cols() + 1))))
    }
}

/// `(dY, W) ↦ dX_b = col2im(Wᵀ [c·k·k, out] · dY_b [out, oh·ow])`.
pub(super) struct ConvGradInput(Window);

pub(super) fn grad_input<T: WithDType>(dy: &[T], w: &[T], g: &Window, oc: usize) -> Vec<T> {
    let (rows, ckk, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
    let one = Window { b: 1, ..*g };
    let mut dx = vec![T::zero(); g.b * plane];
    let per = chunk(g.b);
    dx.par_chunks_mut(per * plane)
        .enumerate()
        .for_each(|(ci, out)| {
            let mut dcols = vec![T::zero(); if g.pointwise() { 0 } else { ckk * rows }];
            for i in 0..out.len() / plane {
                let b = ci * per + i;
                let dyb = &dy[b * oc * rows..(b + 1) * oc * rows]; // [oc, rows]
                if g.pointwise() {
                    // dX_b [c, rows] = Wᵀ · dY_b, written in place.
                    let dxb = &mut out[i * plane..(i + 1) * plane];
                    gemm(ckk, rows, oc, dxb, rows, false, w, (1, ckk), dyb, (rows, 1));
                    continue;
                }
                // dcolsᵀ [ckk, rows] = Wᵀ (rs 1, cs ckk) · dY_b (rs rows, cs 1).
                gemm(
                    ckk,
                    rows,
                    oc,
                    &mut dcols,
                    rows,
                    false,
                    w,
                    (1, ckk),
                    dyb,
                    (rows, 1),
                );
                col2im_t_one(&dcols, rows, &one, &mut out[i * plane..(i + 1) * plane]);
            }
        });
    dx
}

impl CustomOp2 for ConvGradInput {
    fn name(&self) -> &'static str {
        "ebda-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let oc = wl.dims()[0];
        let out = match (gs, ws) {
            (CpuStorage::F32(d), CpuStorage::F32(w)) => {
                CpuStorage::F32(grad_input(contiguous(d, gl)?, contiguous(w, wl)?, g, oc))
            }
            (CpuStorage::F64(d), CpuStorage::F64(w)) => {
                CpuStorage::F64(grad_input(contiguous(d, gl)?, contiguous(w, wl)?, g, oc))
            }
            _ => candle_core::bail!("ebda-conv2d-grad-input: f32 or f64 expected"),
        };
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }
}

//! CPU kernels with exact backwards: im2col/col2im for convolutions and a
//! window max-pool with an argmax-routed gradient.
//!
//! candle 0.11.1 computes a convolution's input gradient with a naive CPU
//! `conv_transpose2d` and pools with a reduction whose backward writes
//! several full-size temporaries. Here a convolution is `im2col` + one large
//! GEMM (candle's `matmul`, so the GEMM and its backward are candle's), and
//! the `im2col` backward is `col2im`. These ops run on the CPU only; the
//! layers that use them ([`crate::Conv2d`], [`crate::max_pool2d`]) take
//! candle's own kernels on every other device.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType,
};
use rayon::prelude::*;

/// Geometry of a 2-D window op over `[b, c, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Window {
    pub fn new(
        dims: (usize, usize, usize, usize),
        k: (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let (b, c, h, w) = dims;
        let (kh, kw) = k;
        if stride == 0 || kh == 0 || kw == 0 || h + 2 * pad < kh || w + 2 * pad < kw {
            candle_core::bail!(
                "window {kh}x{kw} stride {stride} pad {pad} does not fit a {h}x{w} input"
            )
        }
        Ok(Self {
            b,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            oh: (h + 2 * pad - kh) / stride + 1,
            ow: (w + 2 * pad - kw) / stride + 1,
        })
    }

    fn cols(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Input row/column of output position `o` and kernel offset `k`, if inside.
    #[inline]
    fn src(&self, o: usize, k: usize, limit: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.pad)
            .filter(|&i| i < limit)
    }
}

fn contiguous<'a, T: WithDType>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("ebda op: the input must be contiguous"),
    }
}

fn im2col<T: WithDType>(x: &[T], g: &Window) -> Vec<T> {
    let (rows, cols) = (g.oh * g.ow, g.cols());
    let mut out = vec![T::zero(); g.b * rows * cols];
    out.par_chunks_mut(rows * cols)
        .enumerate()
        .for_each(|(bi, dst)| {
            let img = &x[bi * g.c * g.h * g.w..(bi + 1) * g.c * g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let row = &mut dst[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
                    let mut j = 0;
                    for ci in 0..g.c {
                        let plane = &img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                        for ky in 0..g.kh {
                            match g.src(oy, ky, g.h) {
                                Some(iy) => {
                                    for kx in 0..g.kw {
                                        if let Some(ix) = g.src(ox, kx, g.w) {
                                            row[j] = plane[iy * g.w + ix];
                                        }
                                        j += 1;
                                    }
                                }
                                None => j += g.kw,
                            }
                        }
                    }
                }
            }
        });
    out
}

fn col2im<T: WithDType>(cols_data: &[T], g: &Window) -> Vec<T> {
    let (rows, cols) = (g.oh * g.ow, g.cols());
    let mut out = vec![T::zero(); g.b * g.c * g.h * g.w];
    out.par_chunks_mut(g.c * g.h * g.w)
        .enumerate()
        .for_each(|(bi, img)| {
            let src = &cols_data[bi * rows * cols..(bi + 1) * rows * cols];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let row = &src[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
                    let mut j = 0;
                    for ci in 0..g.c {
                        let plane = &mut img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                        for ky in 0..g.kh {
                            match g.src(oy, ky, g.h) {
                                Some(iy) => {
                                    for kx in 0..g.kw {
                                        if let Some(ix) = g.src(ox, kx, g.w) {
                                            plane[iy * g.w + ix] += row[j];
                                        }
                                        j += 1;
                                    }
                                }
                                None => j += g.kw,
                            }
                        }
                    }
                }
            }
        });
    out
}

/// `[b, c, h, w] -> [b·oh·ow, c·kh·kw]`: row `(b, oy, ox)` holds the window at
/// that output position, column `(c, ky, kx)`; outside the padded border, 0.
pub(crate) struct Im2Col(pub Window);

/// The adjoint of [`Im2Col`]: sums each column entry back into its input pixel.
pub(crate) struct Col2Im(pub Window);

macro_rules! float_dispatch {
    ($storage:expr, $layout:expr, $f:expr, $op:literal) => {
        match $storage {
            CpuStorage::F32(d) => CpuStorage::F32($f(contiguous(d, $layout)?)),
            CpuStorage::F64(d) => CpuStorage::F64($f(contiguous(d, $layout)?)),
            other => candle_core::bail!("{}: f32 or f64 expected, got {:?}", $op, other.dtype()),
        }
    };
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "ebda-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = float_dispatch!(storage, layout, |x| im2col(x, g), "ebda-im2col");
        Ok((out, Shape::from((g.b * g.oh * g.ow, g.cols()))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "ebda-col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = float_dispatch!(storage, layout, |x| col2im(x, g), "ebda-col2im");
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Im2Col(self.0))?))
    }
}

/// Index (within the image plane) of the first maximum of each window, or
/// `usize::MAX` for a window entirely in the padding (not possible when
/// padding ≤ kernel/2).
fn argmax_windows<T: WithDType>(x: &[T], g: &Window) -> Vec<usize> {
    let planes = g.b * g.c;
    let mut out = vec![usize::MAX; planes * g.oh * g.ow];
    out.par_chunks_mut(g.oh * g.ow)
        .enumerate()
        .for_each(|(p, dst)| {
            let plane = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut best: Option<(T, usize)> = None;
                    for ky in 0..g.kh {
                        let Some(iy) = g.src(oy, ky, g.h) else {
                            continue;
                        };
                        for kx in 0..g.kw {
                            let Some(ix) = g.src(ox, kx, g.w) else {
                                continue;
                            };
                            let v = plane[iy * g.w + ix];
                            // The first maximum wins, as in PyTorch's max_pool2d.
                            if best.is_none_or(|(b, _)| v > b) {
                                best = Some((v, iy * g.w + ix));
                            }
                        }
                    }
                    dst[oy * g.ow + ox] = best.map_or(usize::MAX, |(_, i)| i);
                }
            }
        });
    out
}

/// Window max over `[b, c, h, w]` (padding counts as −∞).
pub(crate) struct MaxPool(pub Window);

/// The max-pool backward: `(x, dy) ↦ dx`, each `dy` added at its window's first maximum.
struct MaxPoolBackward(Window);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "ebda-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        fn pool<T: WithDType>(x: &[T], g: &Window) -> Vec<T> {
            let arg = argmax_windows(x, g);
            let plane_in = g.h * g.w;
            let plane_out = g.oh * g.ow;
            arg.iter()
                .enumerate()
                .map(|(o, &i)| x[(o / plane_out) * plane_in + i])
                .collect()
        }
        let out = float_dispatch!(storage, layout, |x| pool(x, g), "ebda-max-pool2d");
        Ok((out, Shape::from((g.b, g.c, g.oh, g.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPoolBackward(self.0),
        )?))
    }
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "ebda-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        fn scatter<T: WithDType>(x: &[T], dy: &[T], g: &Window) -> Vec<T> {
            let arg = argmax_windows(x, g);
            let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
            let mut dx = vec![T::zero(); x.len()];
            dx.par_chunks_mut(plane_in)
                .enumerate()
                .for_each(|(p, dst)| {
                    for o in 0..plane_out {
                        let i = arg[p * plane_out + o];
                        if i != usize::MAX {
                            dst[i] += dy[p * plane_out + o];
                        }
                    }
                });
            dx
        }
        let out = match (xs, gs) {
            (CpuStorage::F32(x), CpuStorage::F32(d)) => {
                CpuStorage::F32(scatter(contiguous(x, xl)?, contiguous(d, gl)?, g))
            }
            (CpuStorage::F64(x), CpuStorage::F64(d)) => {
                CpuStorage::F64(scatter(contiguous(x, xl)?, contiguous(d, gl)?, g))
            }
            (a, b) => candle_core::bail!(
                "ebda-max-pool2d-backward: f32 or f64 expected, got {:?} and {:?}",
                a.dtype(),
                b.dtype()
            ),
        };
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }
}

/// Whether the CPU kernels here apply to `x`.
pub(crate) fn cpu_float(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)` with explicit (row, column)
/// strides, single-threaded (callers parallelise over images).
#[allow(clippy::too_many_arguments)]
fn gemm<T: WithDType>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    debug_assert!(dst.len() >= (m - 1) * dst_rs + n);
    debug_assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    debug_assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the slices cover every index the strides reach (checked above
    // in debug builds; the callers size them from the same geometry).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Batch items per rayon task: a few tasks per thread, as few as possible.
fn chunk(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// A whole convolution `y = W ⋆ x + b` (groups 1, dilation 1) as one op, so
/// that the autograd graph holds one node instead of five full-size ones.
/// Forward, per image: `im2col` into a per-task buffer, then
/// `y_b [out, oh·ow] = W [out, c·k·k] · cols_bᵀ`, written in place.
/// Backward: `dW = Σ_b dY_b · cols_b` (accumulated per task, then summed),
/// `db = Σ dY`, and `dX_b = col2im(dY_bᵀ · W)` only when `x` tracks a gradient.
pub(crate) struct Conv2dOp(pub Window);

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
        let g = self.0;
        let oc = wl.dims()[0];
        fn run<T: WithDType>(x: &[T], w: &[T], bias: &[T], g: &Window, oc: usize) -> Vec<T> {
            let (rows, ckk, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
            let mut y = vec![T::zero(); g.b * oc * rows];
            y.par_chunks_mut(chunk(g.b) * oc * rows)
                .enumerate()
                .for_each(|(ci, out)| {
                    let first = ci * chunk(g.b);
                    let items = out.len() / (oc * rows);
                    let one = Window { b: 1, ..*g };
                    for i in 0..items {
                        let b = first + i;
                        let cols = im2col(&x[b * plane..(b + 1) * plane], &one); // [rows, ckk]
                        let yb = &mut out[i * oc * rows..(i + 1) * oc * rows]; // [oc, rows]
                        for (o, row) in yb.chunks_mut(rows).enumerate() {
                            row.fill(bias[o]);
                        }
                        // y_b = W · colsᵀ: lhs W (rs ckk, cs 1), rhs colsᵀ (rs 1, cs ckk).
                        gemm(oc, rows, ckk, yb, rows, true, w, (ckk, 1), &cols, (1, ckk));
                    }
                });
            y
        }
        let out = match (xs, ws, bs) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => CpuStorage::F32(run(
                contiguous(x, xl)?,
                contiguous(w, wl)?,
                contiguous(b, bl)?,
                &g,
                oc,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => CpuStorage::F64(run(
                contiguous(x, xl)?,
                contiguous(w, wl)?,
                contiguous(b, bl)?,
                &g,
                oc,
            )),
            _ => {
                candle_core::bail!("ebda-conv2d: input, weight and bias must all be f32 or all f64")
            }
        };
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
        let grad = grad.contiguous()?;
        let dw = x
            .contiguous()?
            .apply_op2_no_bwd(&grad, &ConvGradWeight(self.0))?;
        let db = grad.sum((0, 2, 3))?;
        // The input gradient is skipped where nothing upstream needs it
        // (the first layer's images).
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(&w.contiguous()?, &ConvGradInput(self.0))?)
        } else {
            None
        };
        Ok((dx, Some(dw.reshape(w.shape())?), Some(db)))
    }
}

/// `(x, dY) ↦ dW = Σ_b dY_b [out, oh·ow] · cols_b [oh·ow, c·k·k]`.
struct ConvGradWeight(Window);

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
        let g = self.0;
        let oc = gl.dims()[1];
        fn run<T: WithDType>(x: &[T], dy: &[T], g: &Window, oc: usize) -> Vec<T> {
            let (rows, ckk, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
            let one = Window { b: 1, ..*g };
            let partial: Vec<Vec<T>> = (0..g.b)
                .collect::<Vec<_>>()
                .par_chunks(chunk(g.b))
                .map(|items| {
                    let mut dw = vec![T::zero(); oc * ckk];
                    for &b in items {
                        let cols = im2col(&x[b * plane..(b + 1) * plane], &one); // [rows, ckk]
                        let dyb = &dy[b * oc * rows..(b + 1) * oc * rows]; // [oc, rows]
                        gemm(
                            oc,
                            ckk,
                            rows,
                            &mut dw,
                            ckk,
                            true,
                            dyb,
                            (rows, 1),
                            &cols,
                            (ckk, 1),
                        );
                    }
                    dw
                })
                .collect();
            let mut total = vec![T::zero(); oc * ckk];
            for p in partial {
                for (t, v) in total.iter_mut().zip(p) {
                    *t += v;
                }
            }
            total
        }
        let out = match (xs, gs) {
            (CpuStorage::F32(x), CpuStorage::F32(d)) => {
                CpuStorage::F32(run(contiguous(x, xl)?, contiguous(d, gl)?, &g, oc))
            }
            (CpuStorage::F64(x), CpuStorage::F64(d)) => {
                CpuStorage::F64(run(contiguous(x, xl)?, contiguous(d, gl)?, &g, oc))
            }
            _ => candle_core::bail!("ebda-conv2d-grad-weight: f32 or f64 expected"),
        };
        Ok((out, Shape::from((oc, g.cols()))))
    }
}

/// `(dY, W) ↦ dX_b = col2im(dY_bᵀ [oh·ow, out] · W [out, c·k·k])`.
struct ConvGradInput(Window);

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
        let g = self.0;
        let oc = wl.dims()[0];
        fn run<T: WithDType>(dy: &[T], w: &[T], g: &Window, oc: usize) -> Vec<T> {
            let (rows, ckk, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
            let one = Window { b: 1, ..*g };
            let mut dx = vec![T::zero(); g.b * plane];
            dx.par_chunks_mut(chunk(g.b) * plane)
                .enumerate()
                .for_each(|(ci, out)| {
                    let first = ci * chunk(g.b);
                    let mut dcols = vec![T::zero(); rows * ckk];
                    for i in 0..out.len() / plane {
                        let b = first + i;
                        let dyb = &dy[b * oc * rows..(b + 1) * oc * rows]; // [oc, rows]
                        // dcols [rows, ckk] = dY_bᵀ (rs 1, cs rows) · W (rs ckk, cs 1).
                        gemm(
                            rows,
                            ckk,
                            oc,
                            &mut dcols,
                            ckk,
                            false,
                            dyb,
                            (1, rows),
                            w,
                            (ckk, 1),
                        );
                        out[i * plane..(i + 1) * plane].copy_from_slice(&col2im(&dcols, &one));
                    }
                });
            dx
        }
        let out = match (gs, ws) {
            (CpuStorage::F32(d), CpuStorage::F32(w)) => {
                CpuStorage::F32(run(contiguous(d, gl)?, contiguous(w, wl)?, &g, oc))
            }
            (CpuStorage::F64(d), CpuStorage::F64(w)) => {
                CpuStorage::F64(run(contiguous(d, gl)?, contiguous(w, wl)?, &g, oc))
            }
            _ => candle_core::bail!("ebda-conv2d-grad-input: f32 or f64 expected"),
        };
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }
}

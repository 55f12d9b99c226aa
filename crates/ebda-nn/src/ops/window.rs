//! Window geometry of convolution and pooling, and `im2col`/`col2im`
//! (per image and as ops whose backward is the other).

use super::*;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
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

    pub(crate) fn cols(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Input row/column of output position `o` and kernel offset `k`, if inside.
    #[inline]
    pub(super) fn src(&self, o: usize, k: usize, limit: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.pad)
            .filter(|&i| i < limit)
    }
}

pub(super) fn im2col<T: WithDType>(x: &[T], g: &Window) -> Vec<T> {
    let (rows, cols, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
    let mut out = vec![T::zero(); g.b * rows * cols];
    out.par_chunks_mut(rows * cols)
        .enumerate()
        .for_each(|(bi, dst)| {
            im2col_one(&x[bi * plane..(bi + 1) * plane], g, dst);
        });
    out
}

/// `im2col` of one image `[c, h, w]` into `dst` `[oh·ow, c·kh·kw]`; every
/// entry of `dst` is written (0 in the padding).
pub(crate) fn im2col_one<T: WithDType>(img: &[T], g: &Window, dst: &mut [T]) {
    let cols = g.cols();
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let row = &mut dst[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
            for ci in 0..g.c {
                let plane = &img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                for ky in 0..g.kh {
                    let j = (ci * g.kh + ky) * g.kw;
                    let out = &mut row[j..j + g.kw];
                    match g.src(oy, ky, g.h) {
                        Some(iy) if g.pad == 0 => {
                            // Inside the image: one kernel row.
                            let start = iy * g.w + ox * g.stride;
                            copy_short(out, &plane[start..start + g.kw]);
                        }
                        Some(iy) => {
                            for (kx, v) in out.iter_mut().enumerate() {
                                *v = g
                                    .src(ox, kx, g.w)
                                    .map_or(T::zero(), |ix| plane[iy * g.w + ix]);
                            }
                        }
                        None => out.fill(T::zero()),
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the few values of a kernel row: common
/// widths are copied with their length known at compile time, inline, where
/// a `memmove` call per row would cost more than the copy.
#[inline(always)]
pub(super) fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    fn fixed<const N: usize, T: Copy>(dst: &mut [T], src: &[T]) {
        let (d, s): (&mut [T; N], &[T; N]) = match (dst.try_into(), src.try_into()) {
            (Ok(d), Ok(s)) => (d, s),
            _ => unreachable!("callers pass slices of length N"),
        };
        *d = *s;
    }
    match src.len() {
        1 => fixed::<1, T>(dst, src),
        2 => fixed::<2, T>(dst, src),
        3 => fixed::<3, T>(dst, src),
        4 => fixed::<4, T>(dst, src),
        5 => fixed::<5, T>(dst, src),
        7 => fixed::<7, T>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// The adjoint of [`im2col_one`]: adds `cols` `[oh·ow, c·kh·kw]` into `img` `[c, h, w]`.
pub(crate) fn col2im_one<T: WithDType>(cols_data: &[T], g: &Window, img: &mut [T]) {
    let cols = g.cols();
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let row = &cols_data[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
            for ci in 0..g.c {
                let plane = &mut img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                for ky in 0..g.kh {
                    let Some(iy) = g.src(oy, ky, g.h) else {
                        continue;
                    };
                    let j = (ci * g.kh + ky) * g.kw;
                    for kx in 0..g.kw {
                        if let Some(ix) = g.src(ox, kx, g.w) {
                            plane[iy * g.w + ix] += row[j + kx];
                        }
                    }
                }
            }
        }
    }
}

/// [`col2im_one`] from the transposed layout `[c·kh·kw, oh·ow]` (what
/// `Wᵀ · dY` gives directly): each column row adds along image rows, a
/// contiguous slice at stride 1.
///
/// Row `r` of the columns starts at `cols_t[r · ld]` (`ld ≥ oh·ow`, so the
/// columns of several images can sit side by side).
pub(crate) fn col2im_t_one<T: WithDType>(cols_t: &[T], ld: usize, g: &Window, img: &mut [T]) {
    let rows = g.oh * g.ow;
    for ci in 0..g.c {
        let plane = &mut img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (ci * g.kh + ky) * g.kw + kx;
                let src = &cols_t[r * ld..r * ld + rows];
                // Output columns whose input column ox·s + kx − p is inside.
                let lo = g.pad.saturating_sub(kx).div_ceil(g.stride);
                let hi = ((g.w + g.pad).saturating_sub(kx))
                    .div_ceil(g.stride)
                    .min(g.ow);
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.oh {
                    let Some(iy) = g.src(oy, ky, g.h) else {
                        continue;
                    };
                    let srow = &src[oy * g.ow + lo..oy * g.ow + hi];
                    let x0 = lo * g.stride + kx - g.pad;
                    let drow = &mut plane[iy * g.w..(iy + 1) * g.w];
                    if g.stride == 1 {
                        for (d, &v) in drow[x0..x0 + srow.len()].iter_mut().zip(srow) {
                            *d += v;
                        }
                    } else {
                        for (i, &v) in srow.iter().enumerate() {
                            drow[x0 + i * g.stride] += v;
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn col2im<T: WithDType>(cols_data: &[T], g: &Window) -> Vec<T> {
    let (rows, cols, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
    let mut out = vec![T::zero(); g.b * plane];
    out.par_chunks_mut(plane).enumerate().for_each(|(bi, img)| {
        col2im_one(&cols_data[bi * rows * cols..(bi + 1) * rows * cols], g, img);
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

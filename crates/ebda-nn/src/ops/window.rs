//! Window geometry of convolution and pooling, and per-image `im2col` and
//! its adjoint.

use candle_core::{Result, WithDType};

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

    /// A 1×1 window with stride 1 and no padding: `im2col` of an image
    /// `[c, h·w]` is its transpose, so the GEMMs read the image directly.
    pub(crate) fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Input row/column of output position `o` and kernel offset `k`, if inside.
    #[inline]
    pub(super) fn src(&self, o: usize, k: usize, limit: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.pad)
            .filter(|&i| i < limit)
    }
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

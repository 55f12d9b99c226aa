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
use std::sync::{Arc, Mutex};

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
    fn src(&self, o: usize, k: usize, limit: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.pad)
            .filter(|&i| i < limit)
    }
}

pub(crate) fn contiguous<'a, T: WithDType>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("ebda op: the input must be contiguous"),
    }
}

fn im2col<T: WithDType>(x: &[T], g: &Window) -> Vec<T> {
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
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
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

fn col2im<T: WithDType>(cols_data: &[T], g: &Window) -> Vec<T> {
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

/// Index (within the plane) of the first maximum of each window of one
/// `[h, w]` plane, into `dst` `[oh·ow]`; `usize::MAX` for a window entirely
/// in the padding (not possible when padding ≤ kernel/2).
fn argmax_windows_plane<T: WithDType>(plane: &[T], g: &Window, dst: &mut [usize]) {
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
}

/// 2×2 windows with stride 2 and no padding: the common case, unrolled.
fn argmax_2x2_plane<T: WithDType>(plane: &[T], g: &Window, dst: &mut [usize]) {
    for oy in 0..g.oh {
        let (s0, s1) = (2 * oy * g.w, (2 * oy + 1) * g.w);
        let r0 = &plane[s0..s0 + 2 * g.ow];
        let r1 = &plane[s1..s1 + 2 * g.ow];
        let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
        for (ox, ((a, b), d)) in r0
            .chunks_exact(2)
            .zip(r1.chunks_exact(2))
            .zip(d.iter_mut())
            .enumerate()
        {
            // Scan order (0,0), (0,1), (1,0), (1,1): the first maximum wins.
            let (mut best, mut at) = (a[0], s0 + 2 * ox);
            if a[1] > best {
                (best, at) = (a[1], s0 + 2 * ox + 1);
            }
            if b[0] > best {
                (best, at) = (b[0], s1 + 2 * ox);
            }
            if b[1] > best {
                at = s1 + 2 * ox + 1;
            }
            *d = at;
        }
    }
}

/// The argmax of every window of one plane (see [`argmax_windows_plane`]).
pub(crate) fn argmax_plane<T: WithDType>(plane: &[T], g: &Window, dst: &mut [usize]) {
    if (g.kh, g.kw, g.stride, g.pad) == (2, 2, 2, 0) {
        argmax_2x2_plane(plane, g, dst)
    } else {
        argmax_windows_plane(plane, g, dst)
    }
}

/// Window max over `[b, c, h, w]` (padding counts as −∞). The forward keeps
/// each window's argmax for the backward, so the windows are scanned once.
pub(crate) struct MaxPool {
    window: Window,
    argmax: Mutex<Option<Arc<Vec<usize>>>>,
}

impl MaxPool {
    pub fn new(window: Window) -> Self {
        Self {
            window,
            argmax: Mutex::new(None),
        }
    }
}

/// The max-pool backward: `(x, dy) ↦ dx`, each `dy` added at its window's
/// first maximum (the forward's argmax when it is at hand, else recomputed).
struct MaxPoolBackward(Window, Option<Arc<Vec<usize>>>);

fn argmax_any<T: WithDType>(x: &[T], g: &Window) -> Vec<usize> {
    let mut out = vec![0usize; g.b * g.c * g.oh * g.ow];
    out.par_chunks_mut(g.oh * g.ow)
        .enumerate()
        .for_each(|(p, dst)| argmax_plane(&x[p * g.h * g.w..(p + 1) * g.h * g.w], g, dst));
    out
}

fn gather_max<T: WithDType>(x: &[T], arg: &[usize], g: &Window) -> Vec<T> {
    let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
    arg.iter()
        .enumerate()
        .map(|(o, &i)| x[(o / plane_out) * plane_in + i])
        .collect()
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "ebda-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.window;
        let (out, arg) = match storage {
            CpuStorage::F32(d) => {
                let x = contiguous(d, layout)?;
                let arg = argmax_any(x, g);
                (CpuStorage::F32(gather_max(x, &arg, g)), arg)
            }
            CpuStorage::F64(d) => {
                let x = contiguous(d, layout)?;
                let arg = argmax_any(x, g);
                (CpuStorage::F64(gather_max(x, &arg, g)), arg)
            }
            other => candle_core::bail!(
                "ebda-max-pool2d: f32 or f64 expected, got {:?}",
                other.dtype()
            ),
        };
        *self.argmax.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(arg));
        Ok((out, Shape::from((g.b, g.c, g.oh, g.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let kept = self
            .argmax
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let op = MaxPoolBackward(self.window, kept);
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &op)?,
        ))
    }
}

fn scatter_max<T: WithDType>(
    x: &[T],
    dy: &[T],
    g: &Window,
    known: Option<&Arc<Vec<usize>>>,
) -> Vec<T> {
    let computed;
    let arg: &[usize] = match known.filter(|a| a.len() == dy.len()) {
        Some(a) => a,
        None => {
            computed = argmax_any(x, g);
            &computed
        }
    };
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
        let out = match (xs, gs) {
            (CpuStorage::F32(x), CpuStorage::F32(d)) => CpuStorage::F32(scatter_max(
                contiguous(x, xl)?,
                contiguous(d, gl)?,
                g,
                self.1.as_ref(),
            )),
            (CpuStorage::F64(x), CpuStorage::F64(d)) => CpuStorage::F64(scatter_max(
                contiguous(x, xl)?,
                contiguous(d, gl)?,
                g,
                self.1.as_ref(),
            )),
            (a, b) => candle_core::bail!(
                "ebda-max-pool2d-backward: f32 or f64 expected, got {:?} and {:?}",
                a.dtype(),
                b.dtype()
            ),
        };
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }
}

/// Float types with a pool of reusable buffers (see [`take_buffer`]).
pub(crate) trait Pooled: WithDType {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
}

/// `y ← y + a·x`, element by element (no reassociation, so every code path
/// gives the same bits).
#[inline(always)]
fn axpy_plain<T: WithDType>(y: &mut [T], a: T, x: &[T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// [`axpy_plain`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn axpy_avx512<T: WithDType>(y: &mut [T], a: T, x: &[T]) {
    axpy_plain(y, a, x)
}

/// Whether the CPU has AVX-512 (checked once).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// `y ← y + a·x` with the widest vectors the CPU has.
#[inline]
pub(crate) fn axpy<T: WithDType>(y: &mut [T], a: T, x: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked at run time).
        return unsafe { axpy_avx512(y, a, x) };
    }
    axpy_plain(y, a, x)
}

impl Pooled for f32 {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>> {
        static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
        &POOL
    }
}

impl Pooled for f64 {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>> {
        static POOL: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());
        &POOL
    }
}

/// Buffers kept for reuse, per float type.
const POOLED_BUFFERS: usize = 8;

/// A buffer of `len` values for an array that is rewritten in full before it
/// is read (a batch's im2col): taken from the pool when one fits, so a
/// training step does not zero-fill and fault in tens of MB of fresh memory.
/// Its contents are stale values of earlier use.
pub(crate) fn take_buffer<T: Pooled>(len: usize) -> Vec<T> {
    let mut pool = T::pool().lock().unwrap_or_else(|p| p.into_inner());
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= len)
        .min_by_key(|(_, v)| v.capacity())
        .map(|(i, _)| i);
    let mut v = best.map(|i| pool.swap_remove(i)).unwrap_or_default();
    drop(pool);
    v.resize(len, T::zero());
    v
}

/// Returns a buffer of [`take_buffer`] to the pool.
pub(crate) fn give_buffer<T: Pooled>(v: Vec<T>) {
    let mut pool = T::pool().lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < POOLED_BUFFERS {
        pool.push(v);
    }
}

/// Whether the CPU kernels here apply to `x`.
pub(crate) fn cpu_float(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)` with explicit (row, column)
/// strides, single-threaded (callers parallelise over images).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: WithDType>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
) {
    gemm_with(
        gemm::Parallelism::None,
        (m, n, k),
        (dst, dst_rs, accumulate),
        (lhs, lhs_strides),
        (rhs, rhs_strides),
    )
}

/// Multiply-accumulates above which [`gemm_par`] splits a product over the
/// rayon threads.
const PARALLEL_MACS: usize = 1 << 20;

/// [`gemm`] split over the rayon threads when the product is large (for
/// callers that are not themselves inside a parallel loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_par<T: WithDType>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    gemm_with(
        parallelism,
        (m, n, k),
        (dst, dst_rs, accumulate),
        (lhs, lhs_strides),
        (rhs, rhs_strides),
    )
}

type Operand<'a, T> = (&'a [T], (usize, usize));

fn gemm_with<T: WithDType>(
    parallelism: gemm::Parallelism,
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs, accumulate): (&mut [T], usize, bool),
    (lhs, (lhs_rs, lhs_cs)): Operand<'_, T>,
    (rhs, (rhs_rs, rhs_cs)): Operand<'_, T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs.max(1)).take(m) {
                row[..n].fill(T::zero());
            }
        }
        return;
    }
    // The callers size the slices from the same geometry; checked here so an
    // error there can never become an out-of-bounds access.
    assert!(dst.len() > (m - 1) * dst_rs + n - 1);
    assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above bound every index the strides reach.
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
            parallelism,
        )
    }
}

/// Adds per-task partial sums into `total`.
pub(crate) fn add_partials<T: WithDType>(total: &mut [T], partials: Vec<Vec<T>>) {
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
}

/// Batch items per rayon task: a few tasks per thread, as few as possible.
pub(crate) fn chunk(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

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
            let mut cols = vec![T::zero(); g.b * rows * ckk];
            let mut y = vec![T::zero(); g.b * oc * rows];
            let per = chunk(g.b);
            y.par_chunks_mut(per * oc * rows)
                .zip(cols.par_chunks_mut(per * rows * ckk))
                .enumerate()
                .for_each(|(ci, (out, cbuf))| {
                    for i in 0..out.len() / (oc * rows) {
                        let b = ci * per + i;
                        let cb = &mut cbuf[i * rows * ckk..(i + 1) * rows * ckk]; // [rows, ckk]
                        im2col_one(&x[b * plane..(b + 1) * plane], &one, cb);
                        let yb = &mut out[i * oc * rows..(i + 1) * oc * rows]; // [oc, rows]
                        for (o, row) in yb.chunks_mut(rows).enumerate() {
                            row.fill(bias[o]);
                        }
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
        *self.cols.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cols));
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
struct ConvGradWeight(Window, Option<Arc<Cols>>);

fn grad_weight<T: WithDType>(
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
            let mut buf = if cached.is_none() {
                vec![T::zero(); rows * ckk]
            } else {
                Vec::new()
            };
            for &b in items {
                let cols: &[T] = match cached {
                    Some(c) => &c[b * rows * ckk..(b + 1) * rows * ckk],
                    None => {
                        im2col_one(&x[b * plane..(b + 1) * plane], &one, &mut buf);
                        &buf
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
                    (ckk, 1),
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
struct ConvGradInput(Window);

fn grad_input<T: WithDType>(dy: &[T], w: &[T], g: &Window, oc: usize) -> Vec<T> {
    let (rows, ckk, plane) = (g.oh * g.ow, g.cols(), g.c * g.h * g.w);
    let one = Window { b: 1, ..*g };
    let mut dx = vec![T::zero(); g.b * plane];
    let per = chunk(g.b);
    dx.par_chunks_mut(per * plane)
        .enumerate()
        .for_each(|(ci, out)| {
            let mut dcols = vec![T::zero(); ckk * rows];
            for i in 0..out.len() / plane {
                let b = ci * per + i;
                let dyb = &dy[b * oc * rows..(b + 1) * oc * rows]; // [oc, rows]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axpy_paths_agree_bit_for_bit() {
        // Odd lengths exercise the vector tails.
        for n in [1usize, 7, 16, 25, 33, 500] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let y0: Vec<f32> = (0..n).map(|i| (i as f32 * 1.3).cos()).collect();
            let mut plain = y0.clone();
            axpy_plain(&mut plain, 0.731, &x);
            let mut best = y0.clone();
            axpy(&mut best, 0.731, &x);
            assert_eq!(plain, best, "n = {n}");
            for (i, v) in plain.iter().enumerate() {
                assert_eq!(*v, y0[i] + 0.731 * x[i]);
            }
        }
    }
}

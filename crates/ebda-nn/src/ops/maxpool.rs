//! The window max-pool op: one pass forward keeping each window's first
//! maximum, the gradient scattered there (PyTorch's rule, ties included).

use super::*;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Index (within the plane) of the first maximum of each window of one
/// `[h, w]` plane, into `dst` `[oh·ow]`; `usize::MAX` for a window entirely
/// in the padding (not possible when padding ≤ kernel/2).
pub(super) fn argmax_windows_plane<T: WithDType>(plane: &[T], g: &Window, dst: &mut [usize]) {
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
pub(super) fn argmax_2x2_plane<T: WithDType>(plane: &[T], g: &Window, dst: &mut [usize]) {
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
pub(super) struct MaxPoolBackward(Window, Option<Arc<Vec<usize>>>);

pub(super) fn argmax_any<T: WithDType>(x: &[T], g: &Window) -> Vec<usize> {
    let mut out = vec![0usize; g.b * g.c * g.oh * g.ow];
    out.par_chunks_mut(g.oh * g.ow)
        .enumerate()
        .for_each(|(p, dst)| argmax_plane(&x[p * g.h * g.w..(p + 1) * g.h * g.w], g, dst));
    out
}

pub(super) fn gather_max<T: WithDType>(x: &[T], arg: &[usize], g: &Window) -> Vec<T> {
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

pub(super) fn scatter_max<T: WithDType>(
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

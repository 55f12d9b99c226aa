//! `relu(max_pool(conv(x) · s))` as one op: a convolution, an optional
//! per-(image, channel) scale (channel dropout), max pooling and ReLU — the
//! block LeNet repeats.
//!
//! As separate ops, this block keeps the full-size convolution output, its
//! scaled copy and their gradients alive as graph nodes, and candle's
//! autograd zero-fills and adds a fresh buffer for each of them. Fused, the
//! graph holds one node whose output is the pooled map; the convolution
//! output lives only in a per-task scratch buffer, image by image, and the
//! backward goes straight from the pooled gradient to `dW`, `db` and (when
//! the input tracks a gradient) `dX`.
//!
//! The forward GEMM runs over a few images at a time and the weight gradient
//! is summed from the sparse pooled gradient, so sums may round differently
//! from the separate ops; tests check values and gradients against them.

use crate::ops::{
    Pooled, Window, add_partials, argmax_plane, axpy, chunk, col2im_t_one, contiguous, cpu_float,
    gemm, give_buffer, im2col_one, take_buffer,
};
use crate::{Conv2d, Pool2d};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// What the forward keeps for the backward: per pooled output, the index of
/// its window's maximum in the conv plane, or `usize::MAX` where no gradient
/// flows (the ReLU cut the maximum, or the window lies in the padding).
struct Saved {
    argmax: Vec<usize>,
}

struct ConvPoolRelu {
    conv: Window,
    /// Pool geometry over one conv output plane (`b = c = 1`).
    pool: Window,
    /// Per-(image, channel) multipliers `[b·out]`, applied to the conv output.
    scale: Option<Arc<Vec<f32>>>,
    saved: Mutex<Option<Arc<Saved>>>,
}

/// `max(v, 0)`, NaN kept (as PyTorch's relu), so a diverging run is seen.
fn relu<T: WithDType>(v: T) -> T {
    #[allow(clippy::eq_op)] // v != v: NaN
    let nan = v != v;
    if v > T::zero() || nan { v } else { T::zero() }
}

/// Images per forward GEMM: their im2col and conv output stay in cache
/// (the im2col of a batch would be tens of MB written and read back).
const GEMM_IMAGES: usize = 8;

/// Images per GEMM in the input-gradient pass.
const DX_IMAGES: usize = 16;

/// Forward. Per task (a run of images), a few images at a time: their
/// im2col, one GEMM `Y [out, n·oh·ow] = W · colsᵀ` (+ bias), then per
/// (channel, image) the scale, the window argmax and the ReLU of the maximum.
#[allow(clippy::too_many_arguments)]
fn forward<T: Pooled>(
    x: &[T],
    w: &[T],
    bias: &[T],
    cg: &Window,
    pg: &Window,
    oc: usize,
    scale: Option<&[f32]>,
) -> (Vec<T>, Saved) {
    let (rows, ckk, plane) = (cg.oh * cg.ow, cg.cols(), cg.c * cg.h * cg.w);
    let prow = pg.oh * pg.ow;
    let one = Window { b: 1, ..*cg };
    let mut argmax = vec![0usize; cg.b * oc * prow];
    let mut out = vec![T::zero(); cg.b * oc * prow];
    let per = chunk(cg.b);
    out.par_chunks_mut(per * oc * prow)
        .zip(argmax.par_chunks_mut(per * oc * prow))
        .enumerate()
        .for_each(|(ci, (out, abuf))| {
            let images = out.len() / (oc * prow);
            let group = GEMM_IMAGES.min(images);
            let mut cbuf = take_buffer::<T>(group * rows * ckk);
            let mut y = take_buffer::<T>(oc * group * rows);
            for i0 in (0..images).step_by(GEMM_IMAGES) {
                let m = GEMM_IMAGES.min(images - i0);
                let n = m * rows;
                for i in 0..m {
                    let b = ci * per + i0 + i;
                    im2col_one(
                        &x[b * plane..(b + 1) * plane],
                        &one,
                        &mut cbuf[i * rows * ckk..(i + 1) * rows * ckk],
                    );
                }
                for (o, row) in y[..oc * n].chunks_mut(n).enumerate() {
                    row.fill(bias[o]);
                }
                gemm(oc, n, ckk, &mut y, n, true, w, (ckk, 1), &cbuf, (1, ckk));
                for o in 0..oc {
                    for i in 0..m {
                        let (b, li) = (ci * per + i0 + i, i0 + i);
                        let yp = &mut y[o * n + i * rows..o * n + (i + 1) * rows];
                        if let Some(s) = scale {
                            let s = T::from_f64(f64::from(s[b * oc + o]));
                            yp.iter_mut().for_each(|v| *v *= s);
                        }
                        let k = (li * oc + o) * prow;
                        let arg = &mut abuf[k..k + prow];
                        argmax_plane(yp, pg, arg);
                        for (d, j) in out[k..k + prow].iter_mut().zip(arg.iter_mut()) {
                            *d = if *j == usize::MAX {
                                T::zero()
                            } else {
                                relu(yp[*j])
                            };
                            if *d <= T::zero() {
                                *j = usize::MAX; // no gradient through the ReLU
                            }
                        }
                    }
                }
            }
            give_buffer(cbuf);
            give_buffer(y);
        });
    (out, Saved { argmax })
}

impl CustomOp3 for ConvPoolRelu {
    fn name(&self) -> &'static str {
        "ebda-conv-pool-relu"
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
        let (cg, pg) = (&self.conv, &self.pool);
        let oc = wl.dims()[0];
        let scale = self.scale.as_deref().map(Vec::as_slice);
        let (out, saved) = match (xs, ws, bs) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                let (y, s) = forward(
                    contiguous(x, xl)?,
                    contiguous(w, wl)?,
                    contiguous(b, bl)?,
                    cg,
                    pg,
                    oc,
                    scale,
                );
                (CpuStorage::F32(y), s)
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                let (y, s) = forward(
                    contiguous(x, xl)?,
                    contiguous(w, wl)?,
                    contiguous(b, bl)?,
                    cg,
                    pg,
                    oc,
                    scale,
                );
                (CpuStorage::F64(y), s)
            }
            _ => candle_core::bail!(
                "ebda-conv-pool-relu: input, weight and bias must all be f32 or all f64"
            ),
        };
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(saved));
        Ok((out, Shape::from((cg.b, oc, pg.oh, pg.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let cg = self.conv;
        let oc = w.dim(0)?;
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(saved) = saved else {
            candle_core::bail!("ebda-conv-pool-relu: backward before forward")
        };
        let need_dx = x.track_op();
        let op = ConvPoolReluGrad {
            conv: cg,
            pool: self.pool,
            scale: self.scale.clone(),
            saved,
            need_dx,
        };
        // One flat output: [dX (when needed) | dW with db as an extra last column].
        let flat = grad
            .contiguous()?
            .apply_op3_no_bwd(&x.contiguous()?, &w.contiguous()?, &op)?;
        let dx_len = if need_dx {
            cg.b * cg.c * cg.h * cg.w
        } else {
            0
        };
        let ckk = cg.cols();
        let both = flat
            .narrow(0, dx_len, oc * (ckk + 1))?
            .reshape((oc, ckk + 1))?;
        let dw = both.narrow(1, 0, ckk)?.contiguous()?.reshape(w.shape())?;
        let db = both.narrow(1, ckk, 1)?.squeeze(1)?.contiguous()?;
        let dx = if need_dx {
            Some(flat.narrow(0, 0, dx_len)?.reshape(x.shape())?)
        } else {
            None
        };
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `(dOut, x, W) ↦ [dX | dW | db]`, see [`ConvPoolRelu`].
struct ConvPoolReluGrad {
    conv: Window,
    pool: Window,
    scale: Option<Arc<Vec<f32>>>,
    saved: Arc<Saved>,
    need_dx: bool,
}

/// Backward. Per task: `dW`, `db` from the sparse pooled gradient (through
/// the ReLU to each window's maximum, times the scale) and the saved im2col;
/// where `dX` is needed, the dense `dY [out, n·oh·ow]` and, a few images at a
/// time, `dcolsᵀ = Wᵀ · dY` summed back into `dX`.
#[allow(clippy::too_many_arguments)]
fn backward<T: Pooled>(
    dout: &[T],
    x: &[T],
    w: &[T],
    saved: &Saved,
    cg: &Window,
    pg: &Window,
    oc: usize,
    scale: Option<&[f32]>,
    need_dx: bool,
) -> Vec<T> {
    let (rows, ckk, plane) = (cg.oh * cg.ow, cg.cols(), cg.c * cg.h * cg.w);
    let prow = pg.oh * pg.ow;
    let one = Window { b: 1, ..*cg };
    let dx_len = if need_dx { cg.b * plane } else { 0 };
    let mut result = vec![T::zero(); dx_len + oc * (ckk + 1)];
    let (dx, dwdb) = result.split_at_mut(dx_len);
    let per = chunk(cg.b);
    let tasks: Vec<(usize, &mut [T])> = if need_dx {
        dx.chunks_mut(per * plane).enumerate().collect()
    } else {
        (0..cg.b.div_ceil(per)).map(|t| (t, &mut [][..])).collect()
    };
    let partial: Vec<Vec<T>> = tasks
        .into_par_iter()
        .map(|(t, dxc)| {
            let first = t * per;
            let images = per.min(cg.b - first);
            let n = images * rows;
            // dW and db straight from the pooled gradient: each non-zero
            // entry adds its window maximum's im2col row (a quarter of the
            // dense dY · cols product for 2×2 pools, and no dY to build).
            let mut dw = vec![T::zero(); oc * (ckk + 1)];
            let mut dy = if need_dx {
                vec![T::zero(); oc * n]
            } else {
                Vec::new()
            };
            let mut cb = take_buffer::<T>(rows * ckk);
            for i in 0..images {
                let b = first + i;
                // This image's im2col again: cheaper in cache than a batch's kept in memory.
                im2col_one(&x[b * plane..(b + 1) * plane], &one, &mut cb);
                for o in 0..oc {
                    let s = scale.map(|s| T::from_f64(f64::from(s[b * oc + o])));
                    if s == Some(T::zero()) {
                        continue; // a dropped channel: no gradient
                    }
                    let k = (b * oc + o) * prow;
                    let (row, bias) = dw[o * (ckk + 1)..(o + 1) * (ckk + 1)].split_at_mut(ckk);
                    let mut bsum = T::zero();
                    for p in 0..prow {
                        let j = saved.argmax[k + p];
                        if j == usize::MAX {
                            continue; // cut by the ReLU, or outside the image
                        }
                        let g = match s {
                            Some(s) => dout[k + p] * s,
                            None => dout[k + p],
                        };
                        axpy(row, g, &cb[j * ckk..(j + 1) * ckk]);
                        bsum += g;
                        if need_dx {
                            dy[o * n + i * rows + j] += g;
                        }
                    }
                    bias[0] += bsum;
                }
            }
            give_buffer(cb);
            if need_dx {
                let mut dcols = vec![T::zero(); ckk * DX_IMAGES.min(images) * rows];
                for i0 in (0..images).step_by(DX_IMAGES) {
                    let m = DX_IMAGES.min(images - i0);
                    let ld = m * rows;
                    // dcolsᵀ [ckk, m·rows] = Wᵀ · dY[:, images i0..i0+m].
                    gemm(
                        ckk,
                        ld,
                        oc,
                        &mut dcols,
                        ld,
                        false,
                        w,
                        (1, ckk),
                        &dy[i0 * rows..],
                        (n, 1),
                    );
                    for i in 0..m {
                        let img = &mut dxc[(i0 + i) * plane..(i0 + i + 1) * plane];
                        col2im_t_one(&dcols[i * rows..], ld, &one, img);
                    }
                }
            }
            dw
        })
        .collect();
    add_partials(dwdb, partial);
    result
}

impl CustomOp3 for ConvPoolReluGrad {
    fn name(&self) -> &'static str {
        "ebda-conv-pool-relu-grad"
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
        let (cg, pg) = (&self.conv, &self.pool);
        let oc = wl.dims()[0];
        let scale = self.scale.as_deref().map(Vec::as_slice);
        let out = float_dispatch3!(
            "ebda-conv-pool-relu-grad",
            (gs, gl),
            (xs, xl),
            (ws, wl),
            |g, x, w| backward(g, x, w, &self.saved, cg, pg, oc, scale, self.need_dx)
        );
        let dx_len = if self.need_dx {
            cg.b * cg.c * cg.h * cg.w
        } else {
            0
        };
        Ok((out, Shape::from(dx_len + oc * (cg.cols() + 1))))
    }
}

/// `relu(max_pool(conv(x) · s))`: a convolution, an optional per-(image,
/// channel) multiplier `channel_scale` `[b·out]` (a channel-dropout mask),
/// max pooling and ReLU. On the CPU one fused op (see the module docs);
/// elsewhere, and for grouped or dilated convolutions, the separate ops.
///
/// # Shapes
/// `[b, c, h, w] -> [b, out, ph, pw]`
pub fn conv_pool_relu(
    x: &Tensor,
    conv: &Conv2d,
    pool: &Pool2d,
    channel_scale: Option<&[f32]>,
) -> Result<Tensor> {
    let (b, _, _, _) = x.dims4()?;
    let oc = conv.weight().dim(0)?;
    if let Some(s) = channel_scale
        && s.len() != b * oc
    {
        candle_core::bail!(
            "conv_pool_relu: channel_scale has {} values, expected batch × out channels = {}",
            s.len(),
            b * oc
        )
    }
    let cfg = conv.config();
    let fusable = cpu_float(x)
        && cfg.groups == 1
        && cfg.dilation == 1
        && conv.bias().is_some()
        && pool.stride.0 == pool.stride.1
        && pool.padding.0 == pool.padding.1
        && 2 * pool.padding.0 <= pool.kernel.0.min(pool.kernel.1);
    if let (true, Some(bias)) = (fusable, conv.bias()) {
        let (_, ic, kh, kw) = conv.weight().dims4()?;
        if x.dim(1)? != ic {
            candle_core::bail!(
                "conv2d: input has {} channels, the weight expects {ic}",
                x.dim(1)?
            )
        }
        let cg = Window::new(x.dims4()?, (kh, kw), cfg.stride, cfg.padding)?;
        let pg = Window::new(
            (1, 1, cg.oh, cg.ow),
            pool.kernel,
            pool.stride.0,
            pool.padding.0,
        )?;
        let op = ConvPoolRelu {
            conv: cg,
            pool: pg,
            scale: channel_scale.map(|s| Arc::new(s.to_vec())),
            saved: Mutex::new(None),
        };
        return x
            .contiguous()?
            .apply_op3(&conv.weight().contiguous()?, &bias.contiguous()?, op);
    }
    let y = candle_core::Module::forward(conv, x)?;
    let y = match channel_scale {
        Some(s) => {
            let mask = Tensor::from_slice(s, (b, oc, 1, 1), &candle_core::Device::Cpu)?
                .to_dtype(y.dtype())?
                .to_device(y.device())?;
            y.broadcast_mul(&mask)?
        }
        None => y,
    };
    crate::relu(&pool.forward(&y)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Module, Var};
    use candle_nn::Conv2dConfig;
    use rand::{Rng, SeedableRng};

    struct Case {
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        oc: usize,
        k: usize,
        stride: usize,
        pad: usize,
        pool: Pool2d,
        masked: bool,
        x_grad: bool,
    }

    /// The fused op against the separate ops (our conv, a broadcast mask,
    /// our max-pool, our ReLU): values, and the gradients of x, W, b
    /// for L = Σ g ⊙ out with random g.
    fn check(case: &Case, dtype: DType, seed: u64) {
        let dev = Device::Cpu;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut rand =
            |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let t = |v: Vec<f64>, shape: &[usize]| {
            Tensor::from_vec(v, shape, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let Case {
            b, c, h, w, oc, k, ..
        } = *case;
        let x = Var::from_tensor(&t(rand(b * c * h * w), &[b, c, h, w])).unwrap();
        let wt = Var::from_tensor(&t(rand(oc * c * k * k), &[oc, c, k, k])).unwrap();
        let bias = Var::from_tensor(&t(rand(oc), &[oc])).unwrap();
        // A channel-dropout mask: some channels off, survivors scaled by 1/(1 − 0.3).
        let mask: Vec<f32> = rand(b * oc)
            .iter()
            .map(|&u| if u < -0.4 { 0.0 } else { 1.0 / 0.7 })
            .collect();
        let mask = case.masked.then_some(mask);
        let cfg = Conv2dConfig {
            padding: case.pad,
            stride: case.stride,
            ..Default::default()
        };
        let conv = Conv2d::new(wt.as_tensor().clone(), Some(bias.as_tensor().clone()), cfg);
        let input = if case.x_grad {
            x.as_tensor().clone()
        } else {
            x.as_tensor().detach()
        };
        let fused = conv_pool_relu(&input, &conv, &case.pool, mask.as_deref()).unwrap();
        let y = conv.forward(&input).unwrap();
        let y = match &mask {
            Some(m) => y
                .broadcast_mul(
                    &Tensor::from_slice(m, (b, oc, 1, 1), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                )
                .unwrap(),
            None => y,
        };
        let reference = crate::relu(&case.pool.forward(&y).unwrap()).unwrap();
        assert_eq!(fused.dims(), reference.dims());
        // One GEMM per task instead of one per image: sums may round differently.
        let tol = if dtype == DType::F64 { 1e-12 } else { 2e-6 };
        let close = |what: &str, a: &[f64], r: &[f64]| {
            let scale = r.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (i, (p, q)) in a.iter().zip(r).enumerate() {
                assert!(
                    (p - q).abs() <= tol * scale,
                    "{what}[{i}]: fused {p} vs separate {q} ({dtype:?})"
                );
            }
        };
        let flat = |t: &Tensor| {
            t.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        close("values", &flat(&fused), &flat(&reference));
        let g = t(rand(fused.elem_count()), fused.dims());
        let grads_of = |out: &Tensor| (out * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gr) = (grads_of(&fused), grads_of(&reference));
        let mut vars = vec![("dW", &wt), ("db", &bias)];
        if case.x_grad {
            vars.push(("dx", &x));
        } else {
            assert!(
                gf.get(x.as_tensor()).is_none(),
                "no input gradient when not tracked"
            );
        }
        for (name, v) in vars {
            close(name, &flat(gf.get(v).unwrap()), &flat(gr.get(v).unwrap()));
        }
    }

    #[test]
    fn fused_block_equals_the_separate_ops() {
        let cases = [
            // More images than one input-gradient GEMM takes (and an uneven rest).
            Case {
                b: 37,
                c: 2,
                h: 8,
                w: 9,
                oc: 3,
                k: 3,
                stride: 1,
                pad: 0,
                pool: Pool2d::new(2, 2, 0),
                masked: true,
                x_grad: true,
            },
            // LeNet's two blocks (small batch).
            Case {
                b: 3,
                c: 1,
                h: 28,
                w: 28,
                oc: 4,
                k: 5,
                stride: 1,
                pad: 0,
                pool: Pool2d::new(2, 2, 0),
                masked: false,
                x_grad: false,
            },
            Case {
                b: 5,
                c: 4,
                h: 12,
                w: 12,
                oc: 6,
                k: 5,
                stride: 1,
                pad: 0,
                pool: Pool2d::new(2, 2, 0),
                masked: true,
                x_grad: true,
            },
            // Odd sizes, stride, padding, overlapping pools with padding.
            Case {
                b: 2,
                c: 3,
                h: 11,
                w: 13,
                oc: 5,
                k: 3,
                stride: 2,
                pad: 1,
                pool: Pool2d::new(3, 2, 1),
                masked: true,
                x_grad: true,
            },
            Case {
                b: 3,
                c: 2,
                h: 9,
                w: 7,
                oc: 3,
                k: 3,
                stride: 1,
                pad: 1,
                pool: Pool2d::new(3, 1, 0),
                masked: false,
                x_grad: true,
            },
            Case {
                b: 7,
                c: 2,
                h: 10,
                w: 10,
                oc: 3,
                k: 2,
                stride: 1,
                pad: 0,
                pool: Pool2d::new(3, 3, 0),
                masked: true,
                x_grad: false,
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            for dtype in [DType::F32, DType::F64] {
                check(case, dtype, i as u64);
            }
        }
    }

    #[test]
    fn a_wrong_mask_length_is_an_error() {
        let dev = Device::Cpu;
        let conv = Conv2d::new(
            Tensor::zeros((2, 1, 3, 3), DType::F32, &dev).unwrap(),
            Some(Tensor::zeros(2, DType::F32, &dev).unwrap()),
            Conv2dConfig::default(),
        );
        let x = Tensor::zeros((4, 1, 8, 8), DType::F32, &dev).unwrap();
        let e = conv_pool_relu(&x, &conv, &Pool2d::new(2, 2, 0), Some(&[1.0; 7]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("7 values") && e.contains("= 8"), "{e}");
    }
}

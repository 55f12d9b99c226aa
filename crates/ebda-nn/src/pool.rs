//! Max pooling with an exact backward, for any kernel, stride and padding.
//!
//! `y[b, c, i, j] = max_{0≤u<kh, 0≤v<kw} x̂[b, c, i·sh + u, j·sw + v]`, where `x̂`
//! is `x` padded with −∞ (PyTorch `nn.MaxPool2d`, floor mode, dilation 1).
//! `∂L/∂x` receives the whole `∂L/∂y[b, c, i, j]` at the window's maximum, and
//! overlapping windows (stride < kernel, e.g. ResNet's 3×3/2 stem) add up.
//!
//! candle 0.11.1's `max_pool2d` only supports kernel = stride in its backward
//! and scales the routed gradient by `1/(kh·kw)`: for a 2×2 pool over
//! `[1, 2, 3, 4]` it returns `[0, 0, 0, 0.25]` instead of `[0, 0, 0, 1]`.
//!
//! On the CPU a kernel scans each window once, keeps its argmax for the
//! backward and routes the gradient to the first maximum, as PyTorch does.
//! On other devices the op is composed of candle tensor ops (reshape or
//! `index_select`, then a `max` reduction) and autograd derives the backward;
//! there exact ties inside one window each receive the full gradient — ties
//! have probability zero for continuous inputs, and after a ReLU only exact
//! zeros tie, whose gradient the ReLU then discards. The two paths are
//! tested against each other.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! let x = Var::from_tensor(&Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu)?)?;
//! let y = ebda_nn::max_pool2d(&x, (2, 2), (2, 2), (0, 0))?; // [1, 1, 2, 2] -> [1, 1, 1, 1]
//! let g = y.sum_all()?.backward()?;
//! let dx = g.get(&x).unwrap().flatten_all()?.to_vec1::<f32>()?;
//! assert_eq!(dx, vec![0., 0., 0., 1.]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{D, Result, Tensor};

/// A configured max-pooling layer (see [`max_pool2d`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Pool2d {
    /// A square pool with the given kernel, stride and padding.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
        }
    }

    /// # Shapes
    /// `[b, c, h, w] -> [b, c, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        max_pool2d(x, self.kernel, self.stride, self.padding)
    }
}

/// Pads dims 2 and 3 of a 4-D tensor with −∞.
fn pad_neg_inf(x: &Tensor, ph: usize, pw: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let fill = |shape: (usize, usize, usize, usize)| {
        Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())
    };
    let x = if ph > 0 {
        let band = fill((b, c, ph, w))?;
        Tensor::cat(&[&band, x, &band], 2)?
    } else {
        x.clone()
    };
    if pw > 0 {
        let band = fill((b, c, h + 2 * ph, pw))?;
        Tensor::cat(&[&band, &x, &band], 3)
    } else {
        Ok(x)
    }
}

/// Max pooling over `[b, c, h, w]`; see the module docs for the formula.
///
/// # Shapes
/// `[b, c, h, w] -> [b, c, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let (kh, kw) = kernel;
    let (sh, sw) = stride;
    let (ph, pw) = padding;
    let (b, c, h, w) = x.dims4()?;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        candle_core::bail!("max_pool2d: kernel and stride must be > 0, got {kernel:?} / {stride:?}")
    }
    if 2 * ph > kh || 2 * pw > kw {
        candle_core::bail!(
            "max_pool2d: padding must be at most half the kernel, got padding {padding:?} for kernel {kernel:?}"
        )
    }
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    if hp < kh || wp < kw {
        candle_core::bail!(
            "max_pool2d: input {h}x{w} (padded {hp}x{wp}) is smaller than the kernel {kh}x{kw}"
        )
    }
    let (oh, ow) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
    if crate::ops::cpu_float(x) && sh == sw && ph == pw {
        // CPU kernel: one pass forward, the gradient scattered to the first maximum.
        let g = crate::ops::Window::new((b, c, h, w), kernel, sh, ph)?;
        return x.contiguous()?.apply_op1(crate::ops::MaxPool::new(g));
    }
    composed(x, kernel, stride, padding, (oh, ow))
}

/// The device-generic formulation (any backend): reshape or gather the
/// windows, then a `max` reduction whose backward autograd derives.
fn composed(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    out: (usize, usize),
) -> Result<Tensor> {
    let (kh, kw) = kernel;
    let (sh, sw) = stride;
    let (ph, pw) = padding;
    let (oh, ow) = out;
    let (b, c, _, _) = x.dims4()?;
    let x = pad_neg_inf(x, ph, pw)?;
    if kernel == stride {
        // Non-overlapping windows: a reshape exposes them as two axes.
        // [b, c, oh·kh, ow·kw] -> [b, c, oh, kh, ow, kw] -> [b, c, oh, ow]
        return x
            .narrow(2, 0, oh * kh)?
            .narrow(3, 0, ow * kw)?
            .reshape((b, c, oh, kh, ow, kw))?
            .max(5)?
            .max(3);
    }
    // Overlapping or strided windows: gather each of the kh·kw window offsets
    // as a [b, c, oh, ow] tensor, stack them on a new last axis and reduce.
    let device = x.device();
    let index = |offset: usize, step: usize, n: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..n).map(|i| (offset + i * step) as u32).collect();
        Tensor::from_vec(idx, n, device)
    };
    let mut taps = Vec::with_capacity(kh * kw);
    for u in 0..kh {
        let rows = x.index_select(&index(u, sh, oh)?, 2)?; // [b, c, oh, wp]
        for v in 0..kw {
            taps.push(rows.index_select(&index(v, sw, ow)?, 3)?); // [b, c, oh, ow]
        }
    }
    Tensor::stack(&taps, 4)?.max(D::Minus1) // [b, c, oh, ow, kh·kw] -> [b, c, oh, ow]
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    /// Brute-force pooling on the host: values and, for upstream `g`, `∂L/∂x`.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        dims: (usize, usize, usize, usize),
        k: (usize, usize),
        s: (usize, usize),
        p: (usize, usize),
        g: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (b, c, h, w) = dims;
        let oh = (h + 2 * p.0 - k.0) / s.0 + 1;
        let ow = (w + 2 * p.1 - k.1) / s.1 + 1;
        let mut y = vec![0f32; b * c * oh * ow];
        let mut dx = vec![0f32; x.len()];
        for bc in 0..b * c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut best = (f32::NEG_INFINITY, usize::MAX);
                    for u in 0..k.0 {
                        for v in 0..k.1 {
                            let (r, q) = (
                                (i * s.0 + u) as isize - p.0 as isize,
                                (j * s.1 + v) as isize - p.1 as isize,
                            );
                            if r < 0 || q < 0 || r >= h as isize || q >= w as isize {
                                continue;
                            }
                            let at = bc * h * w + r as usize * w + q as usize;
                            if x[at] > best.0 {
                                best = (x[at], at);
                            }
                        }
                    }
                    let o = bc * oh * ow + i * ow + j;
                    y[o] = best.0;
                    dx[best.1] += g[o];
                }
            }
        }
        (y, dx)
    }

    fn check(dims: (usize, usize, usize, usize), k: usize, s: usize, p: usize, seed: u64) {
        let dev = Device::Cpu;
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let xs: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xs.clone(), dims, &dev).unwrap()).unwrap();
        let y = max_pool2d(&x, (k, k), (s, s), (p, p)).unwrap();
        let gs: Vec<f32> = (0..y.elem_count())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let g = Tensor::from_vec(gs.clone(), y.shape(), &dev).unwrap();
        // L = Σ g ⊙ y, so ∂L/∂y = g and ∂L/∂x routes each g to its window's argmax.
        let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (y_ref, dx_ref) = reference(&xs, dims, (k, k), (s, s), (p, p), &gs);
        let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(yv, y_ref, "values {dims:?} k{k} s{s} p{p}");
        for (a, b) in dx.iter().zip(&dx_ref) {
            assert!(
                (a - b).abs() < 1e-6,
                "grad {dims:?} k{k} s{s} p{p}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn two_by_two_routes_whole_gradient_to_the_maximum() {
        let x = Var::from_tensor(&Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).unwrap())
            .unwrap();
        let y = max_pool2d(&x, (2, 2), (2, 2), (0, 0)).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![4.0]
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        // dL/dx = 1 at the maximum (x = 4), 0 elsewhere.
        let dx = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(dx, vec![0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn kernel_equals_stride_matches_reference() {
        check((2, 3, 8, 8), 2, 2, 0, 1);
        check((1, 2, 9, 7), 2, 2, 0, 2); // odd sizes: the last row/column is dropped
        check((2, 1, 9, 9), 3, 3, 0, 3);
    }

    #[test]
    fn overlapping_three_by_three_stride_two_matches_reference() {
        check((2, 3, 8, 8), 3, 2, 1, 4); // ResNet stem
        check((1, 2, 7, 11), 3, 2, 1, 5);
        check((1, 1, 6, 6), 3, 1, 0, 6);
        check((2, 2, 10, 10), 2, 2, 1, 7); // padded, kernel = stride
    }

    #[test]
    fn cpu_kernel_and_device_generic_formulation_agree() {
        let dev = Device::Cpu;
        for (dims, k, s, p) in [
            ((2, 3, 8, 8), 2, 2, 0),
            ((1, 2, 9, 7), 3, 2, 1),
            ((2, 2, 6, 6), 3, 1, 1),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., dims, &dev).unwrap()).unwrap();
            let (_, _, h, w) = dims;
            let out = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let a = max_pool2d(&x, (k, k), (s, s), (p, p)).unwrap();
            let b = composed(&x, (k, k), (s, s), (p, p), out).unwrap();
            let d = (&a - &b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(d, 0.0);
            let g = Tensor::randn(0f32, 1., a.shape(), &dev).unwrap();
            let ga = (&a * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let d = (ga.get(&x).unwrap() - gb.get(&x).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        }
    }

    #[test]
    fn agrees_with_candle_forward_where_candle_is_defined() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 4, 12, 12), &dev).unwrap();
        let ours = max_pool2d(&x, (2, 2), (2, 2), (0, 0)).unwrap();
        let theirs = x.max_pool2d(2).unwrap();
        let d = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
    }

    #[test]
    fn bad_settings_are_errors() {
        let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&x, (0, 2), (2, 2), (0, 0)).is_err());
        assert!(max_pool2d(&x, (2, 2), (2, 2), (2, 2)).is_err());
        assert!(max_pool2d(&x, (5, 5), (1, 1), (0, 0)).is_err());
        let flat = Tensor::zeros((4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&flat, (2, 2), (2, 2), (0, 0)).is_err());
    }
}

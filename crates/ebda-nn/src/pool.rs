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
//! `index_select` to expose each window as one axis, the index of its first
//! maximum, then a `gather`), so autograd routes the gradient through the
//! `gather` to that one element. A plain `max` reduction would not do: its
//! backward multiplies by `eq(max)` and gives the whole gradient to *every*
//! tied element, and ties are common — pooling comes before the ReLU, and a
//! constant image background gives bit-identical conv outputs (at LeNet's
//! initialisation about 40 % of conv1's 2×2 windows tie on MNIST). Both paths
//! are tested against a brute-force first-maximum reference on inputs with
//! constant regions, on every device ([`max_pool2d_generic`] runs the
//! device-generic path anywhere).
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

use candle_core::{Result, Tensor};

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

/// The pooled size `(oh, ow)` of `x` `[b, c, h, w]`, or an error naming the
/// impossible setting.
fn output_size(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<(usize, usize)> {
    let (kh, kw) = kernel;
    let (sh, sw) = stride;
    let (ph, pw) = padding;
    let (_, _, h, w) = x.dims4()?;
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
    Ok(((hp - kh) / sh + 1, (wp - kw) / sw + 1))
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
    let (b, c, h, w) = x.dims4()?;
    let (oh, ow) = output_size(x, kernel, stride, padding)?;
    let (sh, sw) = stride;
    let (ph, pw) = padding;
    if crate::ops::cpu_float(x) && sh == sw && ph == pw {
        // CPU kernel: one pass forward, the gradient scattered to the first maximum.
        let g = crate::ops::Window::new((b, c, h, w), kernel, sh, ph)?;
        return x.contiguous()?.apply_op1(crate::ops::MaxPool::new(g));
    }
    composed(x, kernel, stride, padding, (oh, ow))
}

/// [`max_pool2d`] through candle tensor ops alone, on any device: the path
/// every non-CPU device takes. Public so that tests (and users who doubt a
/// device) can compare it with the CPU kernel.
///
/// # Shapes
/// `[b, c, h, w] -> [b, c, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`
pub fn max_pool2d_generic(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let (oh, ow) = output_size(x, kernel, stride, padding)?;
    composed(x, kernel, stride, padding, (oh, ow))
}

/// The first maximum of each window along the last axis of `windows`
/// `[.., k]`, gathered so that the backward routes the whole gradient to that
/// element alone (ties included: first in scan order, as PyTorch).
///
/// # Shapes
/// `[.., k] -> [..]`
fn first_max(windows: &Tensor) -> Result<Tensor> {
    let last = windows.rank() - 1;
    let k = windows.dim(last)?;
    let w = windows.detach();
    let max = w.max_keepdim(last)?; // [.., 1]
    // Score k − i at each maximum i, 0 elsewhere: the first maximum scores
    // highest and is the only element that does, so the argmax is unique.
    let rank: Vec<f32> = (0..k).map(|i| (k - i) as f32).collect();
    let rank = Tensor::from_vec(rank, k, w.device())?;
    let index = w
        .broadcast_eq(&max)?
        .to_dtype(candle_core::DType::F32)?
        .broadcast_mul(&rank)?
        .argmax_keepdim(last)?; // [.., 1], u32
    windows.gather(&index, last)?.squeeze(last)
}

/// The device-generic formulation (any backend): expose the windows as one
/// axis (a reshape, or a gather of each window offset), then take each
/// window's first maximum with [`first_max`].
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
        // Non-overlapping windows: a reshape exposes them as two axes, a
        // permute puts them last in scan order (row u, then column v).
        // [b, c, oh·kh, ow·kw] -> [b, c, oh, kh, ow, kw] -> [b, c, oh, ow, kh·kw]
        let windows = x
            .narrow(2, 0, oh * kh)?
            .narrow(3, 0, ow * kw)?
            .reshape((b, c, oh, kh, ow, kw))?
            .permute((0, 1, 2, 4, 3, 5))?
            .reshape((b, c, oh, ow, kh * kw))?;
        return first_max(&windows); // [b, c, oh, ow]
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
    first_max(&Tensor::stack(&taps, 4)?) // [b, c, oh, ow, kh·kw] -> [b, c, oh, ow]
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

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

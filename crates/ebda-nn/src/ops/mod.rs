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

use candle_core::{DType, Layout, Result, Tensor, WithDType};

mod conv;
mod linalg;
mod maxpool;
mod window;

pub(crate) use conv::*;
pub(crate) use linalg::*;
pub(crate) use maxpool::*;
pub(crate) use window::*;

pub(crate) fn contiguous<'a, T: WithDType>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("ebda op: the input must be contiguous"),
    }
}

/// Whether the CPU kernels here apply to `x`.
pub(crate) fn cpu_float(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Batch items per rayon task: a few tasks per thread, as few as possible.
pub(crate) fn chunk(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
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

//! Layers and ops that ebda's models need and candle 0.11 lacks or gets wrong.
//!
//! - [`seeded_var_builder`]: a `VarBuilder` whose new variables are drawn from
//!   a seeded RNG (candle's CPU `rand` cannot be seeded), so that one seed
//!   gives one initialisation on every backend.
//! - [`linear`], [`conv2d`], [`batch_norm`]: layers with PyTorch's default
//!   initialisation and constants, so models match the PyTorch references;
//!   [`Conv2d`] runs as im2col + GEMM on the CPU with a fast backward, and
//!   [`Linear`] as one op whose backward writes the weight gradient in place.
//! - [`Mlp`]: linear layers with ReLU, optional BatchNorm and dropout
//!   (the label head, the domain discriminator and the MLP extractor).
//! - [`Dropout`] and [`Dropout2d`]: dropout whose masks come from an explicit
//!   seeded [`Rng`] whose state can be saved and restored.
//! - [`trainable_vars`]: a `VarMap`'s parameters in a fixed order, without
//!   batch-norm running statistics.
//! - [`max_pool2d`]: max pooling for any kernel, stride and padding whose
//!   backward routes the whole upstream gradient to each window's first
//!   maximum, ties included, on every device (candle 0.11.1's own backward
//!   scales it by 1/kernel-area, and a `max` reduction's backward feeds
//!   every tied element).
//! - [`BatchNorm`]: batch normalisation as PyTorch's, one fused op with a
//!   closed-form backward on the CPU (candle's keeps six full-size
//!   intermediates per layer in the autograd graph).
//! - [`relu`]: ReLU whose gradient is 0 at exactly 0, as PyTorch's (candle's
//!   passes it).
//! - [`conv_pool_relu`]: convolution, channel dropout, max pooling and ReLU
//!   as one op on the CPU (LeNet's block), equal to the separate ops up to
//!   float rounding.
//!
//! Nothing here is CPU-only: the CPU kernels (im2col/col2im, window max-pool)
//! are used on the CPU, and every layer falls back to candle tensor ops on
//! other devices.

/// Runs `$body` on three contiguous CPU slices of one float type, as
/// `f32` or `f64`, and wraps the `Vec` it returns in that type's storage;
/// other or mixed types are an error naming `$op`.
macro_rules! float_dispatch3 {
    ($op:literal, ($a:expr, $al:expr), ($b:expr, $bl:expr), ($c:expr, $cl:expr), |$x:ident, $y:ident, $z:ident| $body:expr) => {
        match ($a, $b, $c) {
            (
                candle_core::CpuStorage::F32($x),
                candle_core::CpuStorage::F32($y),
                candle_core::CpuStorage::F32($z),
            ) => {
                let ($x, $y, $z) = (
                    $crate::ops::contiguous($x, $al)?,
                    $crate::ops::contiguous($y, $bl)?,
                    $crate::ops::contiguous($z, $cl)?,
                );
                candle_core::CpuStorage::F32($body)
            }
            (
                candle_core::CpuStorage::F64($x),
                candle_core::CpuStorage::F64($y),
                candle_core::CpuStorage::F64($z),
            ) => {
                let ($x, $y, $z) = (
                    $crate::ops::contiguous($x, $al)?,
                    $crate::ops::contiguous($y, $bl)?,
                    $crate::ops::contiguous($z, $cl)?,
                );
                candle_core::CpuStorage::F64($body)
            }
            (a, b, c) => candle_core::bail!(
                "{}: f32 or f64 inputs of one type expected, got {:?}, {:?}, {:?}",
                $op,
                candle_core::backend::BackendStorage::dtype(a),
                candle_core::backend::BackendStorage::dtype(b),
                candle_core::backend::BackendStorage::dtype(c)
            ),
        }
    };
}

mod act;
mod dropout;
mod fused;
mod init;
mod layers;
mod linear;
mod mlp;
mod norm;
mod ops;
mod pool;
mod rng;
mod vars;

pub use act::{relu, relu_generic};
pub use dropout::{Dropout, Dropout2d};
pub use fused::conv_pool_relu;
pub use init::{SeededInit, seeded_var_builder};
pub use layers::{Conv2d, batch_norm, conv2d, linear};
pub use linear::Linear;
pub use mlp::Mlp;
pub use norm::{BatchNorm, batch_norm2d};
pub use pool::{Pool2d, max_pool2d, max_pool2d_generic};
pub use rng::{Rng, RngState};
pub use vars::{is_buffer, named_vars, non_finite_count, parameter_count, trainable_vars};

/// Errors of this crate's constructors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer was asked for with an impossible setting.
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

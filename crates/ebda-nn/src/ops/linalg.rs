//! Strided GEMM on slices (serial and threaded), AXPY, and the pooled
//! scratch buffers the fused kernels reuse across steps.

use candle_core::WithDType;
use std::sync::Mutex;

/// Float types with a pool of reusable buffers (see [`take_buffer`]).
pub(crate) trait Pooled: WithDType {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
}

/// `y ← y + a·x`, element by element (no reassociation, so every code path
/// gives the same bits).
#[inline(always)]
pub(super) fn axpy_plain<T: WithDType>(y: &mut [T], a: T, x: &[T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// [`axpy_plain`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) fn axpy_avx512<T: WithDType>(y: &mut [T], a: T, x: &[T]) {
    axpy_plain(y, a, x)
}

/// Whether the CPU has AVX-512 (checked once).
#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx512() -> bool {
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
pub(super) const POOLED_BUFFERS: usize = 8;

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
pub(super) const PARALLEL_MACS: usize = 1 << 20;

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

pub(super) fn gemm_with<T: WithDType>(
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

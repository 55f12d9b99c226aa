//! Gradients at ties and zeros, on the device under test.
//!
//! Max pooling must route each window's gradient to its *first* maximum and
//! ReLU must pass no gradient at exactly 0 (PyTorch's rules), on every
//! device. Inputs here are full of exact ties: small integers, constant
//! regions, whole constant images — the case a `max` reduction (whose
//! backward feeds every tied element) gets wrong. `EBDA_TEST_DEVICE=cuda`
//! runs them on GPU 0 (`scripts/gpu-check.sh`), where the device-generic
//! paths are the ones in use.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::Conv2dConfig;
use ebda_nn::{Conv2d, Pool2d, conv_pool_relu, max_pool2d, max_pool2d_generic, relu, relu_generic};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use ebda_testkit::device;

type Dims = (usize, usize, usize, usize);

/// Brute-force pooling on the host: values and, for upstream `g`, `∂L/∂x`
/// with each `g` added at its window's first maximum in scan order (row,
/// then column; padding never wins), as PyTorch's `max_pool2d`.
fn reference(
    x: &[f32],
    dims: Dims,
    k: usize,
    s: usize,
    p: usize,
    g: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (b, c, h, w) = dims;
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut y = vec![0f32; b * c * oh * ow];
    let mut dx = vec![0f32; x.len()];
    for bc in 0..b * c {
        for i in 0..oh {
            for j in 0..ow {
                let mut best = (f32::NEG_INFINITY, usize::MAX);
                for u in 0..k {
                    for v in 0..k {
                        let r = (i * s + u) as isize - p as isize;
                        let q = (j * s + v) as isize - p as isize;
                        if r < 0 || q < 0 || r >= h as isize || q >= w as isize {
                            continue;
                        }
                        let at = bc * h * w + r as usize * w + q as usize;
                        if best.1 == usize::MAX || x[at] > best.0 {
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

/// Inputs with ties everywhere: values from {−1, 0, 1, 2}, and the left half
/// of every plane one constant (a "background").
fn tied_input(dims: Dims, rng: &mut Pcg64Mcg) -> Vec<f32> {
    let (_, _, h, w) = dims;
    let n = dims.0 * dims.1 * h * w;
    (0..n)
        .map(|i| {
            if (i % w) < w / 2 {
                0.5
            } else {
                rng.random_range(-1i32..3) as f32
            }
        })
        .collect()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

type Pool =
    fn(&Tensor, (usize, usize), (usize, usize), (usize, usize)) -> candle_core::Result<Tensor>;

fn check_pool(name: &str, pool: Pool, xs: &[f32], geometry: Geometry, seed: u64) {
    let (dims, k, s, p) = geometry;
    let dev = device();
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let x = Var::from_tensor(&Tensor::from_vec(xs.to_vec(), dims, &dev).unwrap()).unwrap();
    let y = pool(&x, (k, k), (s, s), (p, p)).unwrap();
    let gs: Vec<f32> = (0..y.elem_count())
        .map(|_| rng.random_range(0.5..1.5))
        .collect();
    let g = Tensor::from_vec(gs.clone(), y.shape(), &dev).unwrap();
    // L = Σ g ⊙ y: ∂L/∂y = g, and ∂L/∂x holds each g at its window's first maximum.
    let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = to_vec(grads.get(&x).unwrap());
    let (y_ref, dx_ref) = reference(xs, dims, k, s, p, &gs);
    assert_eq!(to_vec(&y), y_ref, "{name} values {dims:?} k{k} s{s} p{p}");
    for (i, (a, b)) in dx.iter().zip(&dx_ref).enumerate() {
        assert!(
            (a - b).abs() < 1e-5,
            "{name} ∂x[{i}] {dims:?} k{k} s{s} p{p}: {a}, first-maximum reference {b}"
        );
    }
}

/// Input dims, kernel, stride, padding.
type Geometry = (Dims, usize, usize, usize);

const GEOMETRIES: [Geometry; 7] = [
    ((2, 3, 8, 8), 2, 2, 0),   // LeNet's 2×2/2
    ((1, 2, 9, 7), 2, 2, 0),   // odd sizes: the last row/column is dropped
    ((2, 1, 9, 9), 3, 3, 0),   // kernel = stride = 3
    ((2, 3, 8, 8), 3, 2, 1),   // ResNet's stem: overlapping and padded
    ((1, 2, 7, 11), 3, 2, 1),  // same, odd sizes
    ((1, 1, 6, 6), 3, 1, 0),   // stride 1
    ((2, 2, 10, 10), 2, 2, 1), // padded, kernel = stride
];

#[test]
fn max_pool_routes_tied_gradients_to_the_first_maximum() {
    for (seed, &geometry) in GEOMETRIES.iter().enumerate() {
        let mut rng = Pcg64Mcg::seed_from_u64(seed as u64);
        let xs = tied_input(geometry.0, &mut rng);
        check_pool("max_pool2d", max_pool2d, &xs, geometry, seed as u64);
        check_pool(
            "max_pool2d_generic",
            max_pool2d_generic,
            &xs,
            geometry,
            seed as u64,
        );
    }
}

#[test]
fn max_pool_of_a_constant_image_feeds_one_element_per_window() {
    // Every window is one four-way tie: ∂x = 1 at each window's top-left only.
    let dev = device();
    for pool in [max_pool2d as Pool, max_pool2d_generic] {
        let x = Var::from_tensor(&Tensor::full(3f32, (1, 1, 4, 4), &dev).unwrap()).unwrap();
        let y = pool(&x, (2, 2), (2, 2), (0, 0)).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let dx = to_vec(grads.get(&x).unwrap());
        #[rustfmt::skip]
        let expected = vec![
            1., 0., 1., 0.,
            0., 0., 0., 0.,
            1., 0., 1., 0.,
            0., 0., 0., 0.,
        ];
        assert_eq!(dx, expected);
    }
}

#[test]
fn max_pool_matches_reference_on_continuous_inputs() {
    for (seed, &geometry) in GEOMETRIES.iter().enumerate() {
        let mut rng = Pcg64Mcg::seed_from_u64(100 + seed as u64);
        let (dims, ..) = geometry;
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let xs: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
        check_pool("max_pool2d", max_pool2d, &xs, geometry, seed as u64);
        check_pool(
            "max_pool2d_generic",
            max_pool2d_generic,
            &xs,
            geometry,
            seed as u64,
        );
    }
}

#[test]
fn relu_passes_no_gradient_at_zero() {
    let dev = device();
    for op in [
        relu as fn(&Tensor) -> candle_core::Result<Tensor>,
        relu_generic,
    ] {
        for dtype in [DType::F32, DType::F64] {
            let x = Tensor::new(&[-2f32, -0.0, 0.0, 1e-30, 3.0], &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let x = Var::from_tensor(&x).unwrap();
            let y = op(&x).unwrap();
            let yv: Vec<f64> = y.to_dtype(DType::F64).unwrap().to_vec1().unwrap();
            assert_eq!(yv, vec![0.0, 0.0, 0.0, 1e-30f32 as f64, 3.0]);
            // L = Σ (2, 3, 4, 5, 6) ⊙ y: ∂L/∂x = weight · 1[x > 0]
            let w = Tensor::new(&[2f32, 3., 4., 5., 6.], &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let dx: Vec<f64> = grads
                .get(&x)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(dx, vec![0.0, 0.0, 0.0, 5.0, 6.0], "{dtype:?}");
        }
        // NaN propagates (a diverging run must be seen), as PyTorch's relu.
        let x = Tensor::new(&[f32::NAN, -1.0], &dev).unwrap();
        let y: Vec<f32> = op(&x).unwrap().to_vec1().unwrap();
        assert!(y[0].is_nan() && y[1] == 0.0, "{y:?}");
    }
}

/// `relu(max_pool(conv(x)))` on images with a constant background: the
/// device's `conv_pool_relu` (fused on the CPU, separate ops elsewhere) and
/// the separate device-generic ops, against the CPU's fused op; values and
/// the gradients of x, W and b.
#[test]
fn conv_pool_relu_on_constant_backgrounds_matches_the_cpu_kernel() {
    let dev = device();
    let cpu = Device::Cpu;
    let (b, c, h, w, oc, k) = (3, 1, 16, 16, 6, 5);
    let mut rng = Pcg64Mcg::seed_from_u64(7);
    // A digit-like image: zero background, a bright square stroke.
    let xs: Vec<f32> = (0..b * c * h * w)
        .map(|i| {
            let (r, q) = ((i / w) % h, i % w);
            if (5..11).contains(&r) && (5..11).contains(&q) {
                rng.random_range(0.5..1.0)
            } else {
                0.0
            }
        })
        .collect();
    let ws: Vec<f32> = (0..oc * c * k * k)
        .map(|_| rng.random_range(-0.3..0.3))
        .collect();
    let bs: Vec<f32> = (0..oc).map(|_| rng.random_range(-0.1..0.3)).collect();
    let gs: Vec<f32> = (0..b * oc * 6 * 6)
        .map(|_| rng.random_range(0.5..1.5))
        .collect();
    let pool = Pool2d::new(2, 2, 0);

    // Returns (out, ∂x, ∂W, ∂b) for one formulation on one device.
    let run = |on: &Device, separate: bool| -> [Vec<f32>; 4] {
        let x = Var::from_tensor(&Tensor::from_vec(xs.clone(), (b, c, h, w), on).unwrap()).unwrap();
        let wt =
            Var::from_tensor(&Tensor::from_vec(ws.clone(), (oc, c, k, k), on).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::from_vec(bs.clone(), oc, on).unwrap()).unwrap();
        let conv = Conv2d::new(
            wt.as_tensor().clone(),
            Some(bias.as_tensor().clone()),
            Conv2dConfig::default(),
        );
        let out = if separate {
            let y = conv.forward(&x).unwrap(); // [b, oc, 12, 12]
            relu_generic(&max_pool2d_generic(&y, (2, 2), (2, 2), (0, 0)).unwrap()).unwrap()
        } else {
            conv_pool_relu(&x, &conv, &pool, None).unwrap()
        };
        let g = Tensor::from_vec(gs.clone(), (b, oc, 6, 6), on).unwrap();
        let grads = (&out * &g).unwrap().sum_all().unwrap().backward().unwrap();
        [
            to_vec(&out),
            to_vec(grads.get(&x).unwrap()),
            to_vec(grads.get(&wt).unwrap()),
            to_vec(grads.get(&bias).unwrap()),
        ]
    };
    let truth = run(&cpu, false);
    // The background ties: most conv windows over it are four-way ties.
    for (what, got) in [
        ("conv_pool_relu", run(&dev, false)),
        ("separate generic ops", run(&dev, true)),
    ] {
        for (name, (a, r)) in ["out", "∂x", "∂W", "∂b"].iter().zip(got.iter().zip(&truth)) {
            let scale = r.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (i, (p, q)) in a.iter().zip(r).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-5 * scale,
                    "{what} {name}[{i}] on {dev:?}: {p}, CPU kernel {q}"
                );
            }
        }
    }
}

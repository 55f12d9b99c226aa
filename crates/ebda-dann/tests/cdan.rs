//! CDAN's conditioning against hand computations and finite differences.

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use ebda_dann::{RandomizedMultilinear, entropy_weights, multilinear, weighted_bce_with_logits};
use ebda_testkit::device;

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn multilinear_map_values_and_gradient() {
    let dev = device();
    // f = [[1, 2, 3], [0, -1, 4]], g = [[0.5, 0.5], [0.9, 0.1]]:
    // row c·3 + j = g_c f_j.
    let f = Var::from_slice(&[1f32, 2., 3., 0., -1., 4.], (2, 3), &dev).unwrap();
    let g = Tensor::from_slice(&[0.5f32, 0.5, 0.9, 0.1], (2, 2), &dev).unwrap();
    let t = multilinear(&f, &g).unwrap();
    assert_eq!(t.dims(), &[2, 6]);
    let want = [0.5, 1., 1.5, 0.5, 1., 1.5, 0., -0.9, 3.6, 0., -0.1, 0.4];
    for (a, b) in to_vec(&t).iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // L = Σ w ⊙ T with w = 1..12: ∂L/∂f_bj = Σ_c w_{b, c·3+j} g_bc.
    let w = Tensor::arange(1f32, 13., &dev)
        .unwrap()
        .reshape((2, 6))
        .unwrap();
    let grads = (t * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let df = to_vec(grads.get(&f).unwrap());
    let ws: Vec<f32> = (1..=12).map(|v| v as f32).collect();
    let gs = [[0.5f32, 0.5], [0.9, 0.1]];
    for b in 0..2 {
        for j in 0..3 {
            let want = ws[b * 6 + j] * gs[b][0] + ws[b * 6 + 3 + j] * gs[b][1];
            assert!((df[b * 3 + j] - want).abs() < 1e-5, "∂f[{b},{j}]");
        }
    }
    assert!(multilinear(&f, &Tensor::zeros((3, 2), DType::F32, &dev).unwrap()).is_err());
}

#[test]
fn randomized_map_preserves_inner_products_of_the_multilinear_map() {
    // E[<T(f,g), T(f',g')>] = <f, f'>·<g, g'> for R with N(0, 1) entries,
    // divided by √d in the map (Long et al. 2018, Theorem 1); d = 4096.
    let dev = device();
    let map = VarMap::new();
    let vb = ebda_nn::seeded_var_builder(&map, 7, DType::F32, &dev);
    let r = RandomizedMultilinear::new(6, 3, 4096, vb).unwrap();
    assert_eq!(r.dim(), 4096);
    let f = Tensor::from_slice(
        &[1f32, 0.5, -1., 2., 0., 1., 0.5, 1., -0.5, 1.5, 1., 0.],
        (2, 6),
        &dev,
    )
    .unwrap();
    let g = Tensor::from_slice(&[0.7f32, 0.2, 0.1, 0.6, 0.3, 0.1], (2, 3), &dev).unwrap();
    let t = r.forward(&f, &g).unwrap(); // [2, 4096]
    let full = multilinear(&f, &g).unwrap(); // [2, 18]
    let dot = |m: &Tensor| -> f32 {
        let v: Vec<Vec<f32>> = m.to_vec2().unwrap();
        v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum()
    };
    let (approx, exact) = (dot(&t), dot(&full));
    assert!(exact > 1.0);
    assert!((approx - exact).abs() < 0.15 * exact, "{approx} vs {exact}");
    // Not trained: the map's matrices are no variables of the optimizer's map.
    assert!(
        ebda_nn::trainable_vars(&map)
            .iter()
            .all(|(n, _)| n == "rf" || n == "rg")
    );
}

#[test]
fn entropy_weights_favour_confident_predictions_and_sum_to_the_batch() {
    let dev = device();
    // Row 0 one-hot: H ≈ 0 → 1 + e^0 = 2; row 1 uniform over 4: H ≈ ln 4 →
    // 1 + 1/4 = 1.25 (the 1e-5 inside the log shifts both by < 1e-4).
    let g = Tensor::from_slice(&[1f32, 0., 0., 0., 0.25, 0.25, 0.25, 0.25], (2, 4), &dev).unwrap();
    let w = to_vec(&entropy_weights(&g).unwrap());
    let (w0, w1) = (2.0f32, 1.25f32);
    let norm = 2.0 / (w0 + w1);
    assert!(
        (w[0] - w0 * norm).abs() < 1e-3 && (w[1] - w1 * norm).abs() < 1e-3,
        "{w:?}"
    );
    assert!((w[0] + w[1] - 2.0).abs() < 1e-5);
}

#[test]
fn weighted_bce_values_and_gradient() {
    let dev = device();
    // ℓ(0, 1) = ln 2, ℓ(2, 0) = 2 + ln(1 + e^−2); weights 2 and 0.
    let z = Var::from_slice(&[0f32, 2.], 2, &dev).unwrap();
    let y = Tensor::from_slice(&[1f32, 0.], 2, &dev).unwrap();
    let w = Tensor::from_slice(&[2f32, 0.], 2, &dev).unwrap();
    let loss = weighted_bce_with_logits(&z, &y, &w).unwrap();
    let want = (2.0 * 2f64.ln()) / 2.0;
    assert!((loss.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
    // ∂/∂z_i = w_i (σ(z_i) − y_i) / 2: (2·(0.5 − 1))/2 = −0.5, and 0 for w = 0.
    let grads = loss.backward().unwrap();
    let dz = to_vec(grads.get(&z).unwrap());
    assert!((dz[0] + 0.5).abs() < 1e-6 && dz[1] == 0.0, "{dz:?}");
    assert!(weighted_bce_with_logits(&z, &y, &Tensor::ones(3, DType::F32, &dev).unwrap()).is_err());
}

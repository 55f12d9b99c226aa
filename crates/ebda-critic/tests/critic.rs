//! Tests of the energy critic: energies by hand, hinge and pull-away
//! derivatives, gradient isolation between players, and a critic-only fit.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use ebda_critic::{CriticConfig, Energy, EnergyCritic, margin_hinge, pull_away};
use std::collections::HashMap;

use ebda_testkit::device;

fn vec1(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn scalar(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32).unwrap().to_scalar().unwrap()
}

/// A 2 → 2 → 2 critic with set weights:
/// Enc: h = ReLU(I·f), Dec: r = diag(2, 1)·h + (0, 1).
fn hand_critic(energy: Energy, dev: &Device) -> EnergyCritic {
    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, dev).unwrap();
    let mut ws = HashMap::new();
    ws.insert(
        "encoder.0.weight".to_string(),
        t(&[1., 0., 0., 1.], &[2, 2]),
    );
    ws.insert("encoder.0.bias".to_string(), t(&[0., 0.], &[2]));
    ws.insert(
        "decoder.0.weight".to_string(),
        t(&[2., 0., 0., 1.], &[2, 2]),
    );
    ws.insert("decoder.0.bias".to_string(), t(&[0., 1.], &[2]));
    let cfg = CriticConfig {
        in_dim: 2,
        code_dim: 2,
        energy,
        eps: 1e-6,
        ..CriticConfig::default()
    };
    cfg.init(VarBuilder::from_tensors(ws, DType::F32, dev))
        .unwrap()
}

#[test]
fn energy_matches_hand_computation_for_every_variant() {
    let dev = device();
    // f1 = (1, −2): h = (1, 0), r = (2, 1), d = r − f = (1, 3), Σd² = 10, Σ|d| = 4, Σf² = 5.
    // f2 = (0.5, 3): h = (0.5, 3), r = (1, 4), d = (0.5, 1), Σd² = 1.25, Σ|d| = 1.5, Σf² = 9.25.
    let f = Tensor::from_slice(&[1f32, -2., 0.5, 3.], (2, 2), &dev).unwrap();
    let eps = 1e-6f64;
    let cases = [
        (Energy::Mse, [10.0 / 2.0, 1.25 / 2.0]),
        (Energy::L2, [(10.0 + eps).sqrt(), (1.25 + eps).sqrt()]),
        (Energy::L1, [4.0 / 2.0, 1.5 / 2.0]),
        (Energy::Relative, [10.0 / (5.0 + eps), 1.25 / (9.25 + eps)]),
    ];
    for (kind, want) in cases {
        let critic = hand_critic(kind, &dev);
        let got = vec1(&critic.energy(&f).unwrap());
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() < 1e-5,
                "{kind:?}: got {got:?}, want {want:?}"
            );
        }
        let recon = critic.reconstruct(&f).unwrap();
        assert_eq!(vec1(&recon), vec![2.0, 1.0, 1.0, 4.0]);
        assert_eq!(vec1(&critic.encode(&f).unwrap()), vec![1.0, 0.0, 0.5, 3.0]);
    }
}

#[test]
fn hinge_gives_zero_loss_and_gradient_beyond_the_margin() {
    let dev = device();
    // L = mean [m − e]⁺ with m = 1: dL/de_i = −1/N for e_i < m, 0 for e_i ≥ m.
    let e =
        Var::from_tensor(&Tensor::from_slice(&[1.0f32, 2.5, 0.25, 1.5], 4, &dev).unwrap()).unwrap();
    let loss = margin_hinge(&e, 1.0).unwrap();
    assert!((scalar(&loss) - 0.75 / 4.0).abs() < 1e-7);
    let g = vec1(loss.backward().unwrap().get(&e).unwrap());
    assert_eq!(g, vec![0.0, 0.0, -0.25, 0.0]);

    let above = Var::from_tensor(&Tensor::from_slice(&[1.0f32, 3.0], 2, &dev).unwrap()).unwrap();
    let loss = margin_hinge(&above, 1.0).unwrap();
    assert_eq!(scalar(&loss), 0.0);
    assert_eq!(
        vec1(loss.backward().unwrap().get(&above).unwrap()),
        vec![0.0, 0.0]
    );
}

#[test]
fn critic_loss_ignores_targets_beyond_the_margin() {
    let dev = device();
    // A random critic: the loss is the mean source energy plus the mean hinge.
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
    let cfg = CriticConfig {
        in_dim: 2,
        code_dim: 2,
        margin: 1.5,
        ..CriticConfig::default()
    };
    let critic = cfg.init(vb).unwrap();
    let src = Tensor::from_slice(&[0.3f32, 0.1, -0.2, 0.4], (2, 2), &dev).unwrap();
    let energies = vec1(&critic.energy(&src).unwrap());
    let loss = critic.critic_loss(&src, &src).unwrap();
    let hinge: f32 = energies.iter().map(|e| (1.5 - e).max(0.0)).sum::<f32>() / 2.0;
    let mean: f32 = energies.iter().sum::<f32>() / 2.0;
    assert!((scalar(&loss.target_hinge) - hinge).abs() < 1e-6);
    assert!((scalar(&loss.source_energy) - mean).abs() < 1e-6);
    assert!((scalar(&loss.total) - mean - hinge).abs() < 1e-6);

    // Hand critic, relative energy: f = (1, −2) has E = 10/5 = 2 ≥ m = 1.5, so
    // every target is beyond the margin and the total is the source term alone.
    let hand = hand_critic(Energy::Relative, &dev);
    let f_t = Tensor::from_slice(&[1f32, -2., 1., -2.], (2, 2), &dev).unwrap();
    let f_s = Tensor::from_slice(&[0.5f32, 3.], (1, 2), &dev).unwrap();
    let loss = hand.critic_loss_at(&f_s, &f_t, 1.5).unwrap();
    assert_eq!(scalar(&loss.target_hinge), 0.0);
    assert_eq!(scalar(&loss.beyond_margin), 1.0);
    assert!(
        (scalar(&loss.total) - scalar(&hand.energy(&f_s).unwrap().mean_all().unwrap())).abs()
            < 1e-7
    );
}

#[test]
fn pull_away_matches_hand_value_and_finite_differences() {
    let dev = device();
    // a = (1, 0), b = (1, 1), c = (0, 2):
    // cos²(a,b) = 1/2, cos²(a,c) = 0, cos²(b,c) = 1/2 → Σ_{i≠j} = 2·(1/2 + 0 + 1/2) = 2,
    // PT = 2 / (3·2) = 1/3.
    let s = Tensor::from_slice(&[1f32, 0., 1., 1., 0., 2.], (3, 2), &dev).unwrap();
    let pt = scalar(&pull_away(&s, 1e-8).unwrap());
    assert!((pt - 1.0 / 3.0).abs() < 1e-6, "PT = {pt}");

    // N = 1 is defined as 0; an all-zero row contributes 0 with finite gradients.
    let one = Tensor::from_slice(&[3f32, 4.], (1, 2), &dev).unwrap();
    assert_eq!(scalar(&pull_away(&one, 1e-8).unwrap()), 0.0);
    let with_zero =
        Var::from_tensor(&Tensor::from_slice(&[0f32, 0., 1., 1., 0., 2.], (3, 2), &dev).unwrap())
            .unwrap();
    let pt0 = pull_away(&with_zero, 1e-8).unwrap();
    assert!((scalar(&pt0) - 1.0 / 6.0).abs() < 1e-6);
    let g0 = vec1(pt0.backward().unwrap().get(&with_zero).unwrap());
    assert!(g0.iter().all(|v| v.is_finite()), "{g0:?}");

    // Gradient against central differences in f64: h = 1e-5, tolerance 1e-7.
    let xs: Vec<f64> = vec![
        0.3, -1.2, 0.7, 2.0, 0.1, -0.4, 1.5, 0.9, -0.8, 0.25, 0.6, -1.1,
    ];
    let x = Var::from_tensor(&Tensor::from_slice(&xs, (3, 4), &dev).unwrap()).unwrap();
    let analytic: Vec<f64> = pull_away(&x, 1e-8)
        .unwrap()
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let h = 1e-5;
    for i in 0..xs.len() {
        let eval = |delta: f64| {
            let mut v = xs.clone();
            v[i] += delta;
            let t = Tensor::from_slice(&v, (3, 4), &dev).unwrap();
            pull_away(&t, 1e-8).unwrap().to_scalar::<f64>().unwrap()
        };
        let numeric = (eval(h) - eval(-h)) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() < 1e-7,
            "d/dx{i}: numeric {numeric} vs analytic {}",
            analytic[i]
        );
    }
}

#[test]
fn each_loss_moves_only_its_player() {
    let dev = device();
    let map = VarMap::new();
    let cfg = CriticConfig {
        in_dim: 6,
        code_dim: 3,
        hidden: vec![4],
        ..CriticConfig::default()
    };
    let critic = cfg
        .init(VarBuilder::from_varmap(&map, DType::F32, &dev))
        .unwrap();
    assert_eq!(map.all_vars().len(), 8); // 2 encoder + 2 decoder layers, weight + bias
    let f_s = Var::from_tensor(&Tensor::randn(0f32, 1., (5, 6), &dev).unwrap()).unwrap();
    let f_t = Var::from_tensor(&Tensor::randn(1f32, 1., (5, 6), &dev).unwrap()).unwrap();

    // Critic step: features are detached inside critic_loss.
    let grads = critic
        .critic_loss(&f_s, &f_t)
        .unwrap()
        .total
        .backward()
        .unwrap();
    assert!(grads.get(&f_s).is_none() && grads.get(&f_t).is_none());
    assert!(map.all_vars().iter().all(|v| grads.get(v).is_some()));

    // Feature step: the critic is frozen inside alignment_loss.
    let align = critic.alignment_loss(&f_t).unwrap();
    let grads = align.total.backward().unwrap();
    assert!(grads.get(&f_t).is_some());
    assert!(map.all_vars().iter().all(|v| grads.get(v).is_none()));
    let want = scalar(&align.energy) + 0.1 * scalar(&align.pull_away);
    assert!((scalar(&align.total) - want).abs() < 1e-6);
}

#[test]
fn critic_alone_separates_two_gaussian_clouds() {
    let dev = device();
    for energy in [Energy::Relative, Energy::Mse] {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        let margin = if energy == Energy::Relative { 1.0 } else { 2.0 };
        let cfg = CriticConfig {
            in_dim: 16,
            code_dim: 8,
            energy,
            margin,
            ..CriticConfig::default()
        };
        let critic = cfg.init(vb).unwrap();
        let mut opt = AdamW::new(
            map.all_vars(),
            ParamsAdamW {
                lr: 1e-2,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        // Source: N(0, I) on the first 8 dimensions only; target: N(0, I) on all 16.
        let mask: Vec<f32> = (0..16).map(|i| if i < 8 { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::from_slice(&mask, (1, 16), &dev).unwrap();
        let draw = |b: usize, src: bool| {
            let x = Tensor::randn(0f32, 1., (b, 16), &dev).unwrap();
            if src {
                x.broadcast_mul(&mask).unwrap()
            } else {
                x
            }
        };
        let gap = |critic: &EnergyCritic| {
            let e_s = scalar(&critic.energy(&draw(512, true)).unwrap().mean_all().unwrap());
            let e_t = scalar(
                &critic
                    .energy(&draw(512, false))
                    .unwrap()
                    .mean_all()
                    .unwrap(),
            );
            (e_s, e_t)
        };
        let (s0, t0) = gap(&critic);
        assert!(
            t0 - s0 < margin as f32 / 2.0,
            "{energy:?}: the clouds start separated ({s0} vs {t0})"
        );
        for _ in 0..300 {
            let loss = critic
                .critic_loss(&draw(64, true), &draw(64, false))
                .unwrap();
            opt.backward_step(&loss.total).unwrap();
        }
        let (e_s, e_t) = gap(&critic);
        assert!(
            e_t - e_s >= margin as f32 / 2.0,
            "{energy:?}: E_t {e_t} − E_s {e_s} < m/2 = {}",
            margin / 2.0
        );
    }
}

#[test]
fn bad_config_and_input_are_named() {
    let bad = |c: CriticConfig| c.validate().unwrap_err().to_string();
    let d = CriticConfig::default();
    assert_eq!(
        bad(CriticConfig {
            margin: -1.0,
            ..d.clone()
        }),
        "margin: must be > 0, got -1"
    );
    assert_eq!(
        bad(CriticConfig {
            code_dim: 0,
            ..d.clone()
        }),
        "code_dim: must be > 0, got 0"
    );
    assert_eq!(
        bad(CriticConfig {
            hidden: vec![8, 0],
            ..d.clone()
        }),
        "hidden: widths must be > 0, got 0 at index 1"
    );
    assert_eq!(
        bad(CriticConfig {
            pull_away_weight: f64::NAN,
            ..d.clone()
        }),
        "pull_away_weight: must be >= 0, got NaN"
    );
    let dev = device();
    let critic = hand_critic(Energy::Mse, &dev);
    let err = critic
        .energy(&Tensor::zeros((3, 5), DType::F32, &dev).unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "critic input: expected features of shape [batch > 0, 2], got [3, 5]"
    );
}

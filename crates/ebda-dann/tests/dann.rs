//! Gradient reversal, discriminator and domain loss against stated derivatives.

use candle_core::{DType, Tensor, Var};
use candle_nn::{Linear, Module, VarMap};
use ebda_dann::{DiscriminatorConfig, bce_with_logits, domain_accuracy, domain_loss, grad_reverse};
use ebda_nn::{Rng, parameter_count, seeded_var_builder};

use ebda_testkit::device;

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn grl_flips_the_extractor_gradient_and_keeps_the_discriminator_gradient() {
    let dev = device();
    // Extractor f = W_f·x, discriminator d = w_d·relu(f); L = Σ d.
    let w_f = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 3), &dev).unwrap()).unwrap();
    let w_d = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 4), &dev).unwrap()).unwrap();
    let x = Tensor::randn(0f32, 1., (5, 3), &dev).unwrap();
    let extractor = Linear::new(w_f.as_tensor().clone(), None);
    let disc = Linear::new(w_d.as_tensor().clone(), None);
    let lambda = 0.7;
    let run = |reverse: bool| {
        let f = extractor.forward(&x).unwrap();
        let f = if reverse {
            grad_reverse(&f, lambda).unwrap()
        } else {
            f
        };
        let d = disc.forward(&f.relu().unwrap()).unwrap();
        let g = d.sum_all().unwrap().backward().unwrap();
        (
            to_vec(&d),
            to_vec(g.get(&w_f).unwrap()),
            to_vec(g.get(&w_d).unwrap()),
        )
    };
    let (d_plain, gf_plain, gd_plain) = run(false);
    let (d_rev, gf_rev, gd_rev) = run(true);
    // Forward is exactly the identity.
    assert_eq!(d_plain, d_rev);
    // ∂L/∂W_f with R_λ = −λ · ∂L/∂W_f without; ∂L/∂w_d is unchanged.
    for (a, b) in gf_rev.iter().zip(&gf_plain) {
        assert!((a + lambda as f32 * b).abs() < 1e-6, "{a} vs −λ·{b}");
    }
    assert_eq!(gd_plain, gd_rev);
}

#[test]
fn bce_is_stable_and_matches_hand_values() {
    let dev = device();
    // z = 0: log 2 for either label; z = 2, y = 1: log(1 + e^−2) = 0.126928;
    // z = −3, y = 1: 3 + log(1 + e^−3) = 3.048587.
    let z = Tensor::from_slice(&[0f32, 0., 2., -3.], 4, &dev).unwrap();
    let y = Tensor::from_slice(&[0f32, 1., 1., 1.], 4, &dev).unwrap();
    let want =
        (2.0 * 2f64.ln() + (1.0 + (-2f64).exp()).ln() + 3.0 + (1.0 + (-3f64).exp()).ln()) / 4.0;
    let got = bce_with_logits(&z, &y).unwrap().to_scalar::<f32>().unwrap();
    assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    // Huge logits stay finite: z = ±1000 with the right label → loss ≈ 0.
    let z = Tensor::from_slice(&[1000f32, -1000.], 2, &dev).unwrap();
    let y = Tensor::from_slice(&[1f32, 0.], 2, &dev).unwrap();
    assert_eq!(
        bce_with_logits(&z, &y).unwrap().to_scalar::<f32>().unwrap(),
        0.0
    );
    let y_wrong = Tensor::from_slice(&[0f32, 1.], 2, &dev).unwrap();
    assert_eq!(
        bce_with_logits(&z, &y_wrong)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        1000.0
    );
}

#[test]
fn bce_gradient_is_sigmoid_minus_target_everywhere_including_zero() {
    let dev = device();
    // dℓ/dz = (σ(z) − y)/n; at z = 0 that is (0.5 − y)/n, where the stable
    // formula's sub-gradients of max(z, 0) and |z| would give (1 − y)/n.
    let zs = [0f32, 0., 2., -3., 1000.];
    let ys = [0f32, 1., 1., 0., 0.];
    let z = candle_core::Var::from_slice(&zs, 5, &dev).unwrap();
    let y = Tensor::from_slice(&ys, 5, &dev).unwrap();
    let grads = bce_with_logits(&z, &y).unwrap().backward().unwrap();
    let got = to_vec(grads.get(&z).unwrap());
    for (i, (&zi, &yi)) in zs.iter().zip(&ys).enumerate() {
        let want = (1.0 / (1.0 + (-f64::from(zi)).exp()) - f64::from(yi)) / 5.0;
        assert!(
            (f64::from(got[i]) - want).abs() < 1e-7,
            "z = {zi}, y = {yi}: {} vs {want}",
            got[i]
        );
    }
}

#[test]
fn domain_loss_and_accuracy_use_source_one_target_zero() {
    let dev = device();
    let d_s = Tensor::from_slice(&[2f32, -1.], 2, &dev).unwrap();
    let d_t = Tensor::from_slice(&[-3f32, 0.5], 2, &dev).unwrap();
    // Correct: source 2 > 0, target −3 ≤ 0 → 2 of 4.
    assert_eq!(domain_accuracy(&d_s, &d_t).unwrap(), 0.5);
    let z = Tensor::from_slice(&[2f32, -1., -3., 0.5], 4, &dev).unwrap();
    let y = Tensor::from_slice(&[1f32, 1., 0., 0.], 4, &dev).unwrap();
    let a = domain_loss(&d_s, &d_t).unwrap().to_scalar::<f32>().unwrap();
    let b = bce_with_logits(&z, &y).unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(a, b);
}

#[test]
fn discriminator_shapes_parameters_and_modes() {
    let dev = device();
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, DType::F32, &dev);
    let disc = DiscriminatorConfig::default()
        .init(vb, &Rng::new(0))
        .unwrap();
    assert_eq!(
        parameter_count(&map),
        500 * 500 + 500 + 500 * 500 + 500 + 500 + 1
    );
    let x = Tensor::randn(0f32, 1., (6, 500), &dev).unwrap();
    assert_eq!(disc.forward_t(&x, true).unwrap().dims(), &[6]);
    // Evaluation is deterministic; training mode draws dropout masks (p = 0.5).
    let e1 = to_vec(&disc.forward_t(&x, false).unwrap());
    let e2 = to_vec(&disc.forward_t(&x, false).unwrap());
    assert_eq!(e1, e2);
    let t1 = to_vec(&disc.forward_t(&x, true).unwrap());
    let t2 = to_vec(&disc.forward_t(&x, true).unwrap());
    assert_ne!(t1, e1, "training mode applies dropout");
    assert_ne!(t1, t2, "each training forward draws new masks");

    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, DType::F32, &dev);
    let cfg = DiscriminatorConfig {
        in_dim: 8,
        hidden: vec![16],
        batch_norm: true,
        ..Default::default()
    };
    let disc = cfg.init(vb, &Rng::new(0)).unwrap();
    // BN adds γ and β (trainable) and running mean/var (buffers).
    assert_eq!(parameter_count(&map), 8 * 16 + 16 + 16 + 16 + 16 + 1);
    let x = Tensor::randn(0f32, 1., (6, 8), &dev).unwrap();
    assert_eq!(disc.forward_t(&x, true).unwrap().dims(), &[6]);
    let err = disc
        .forward_t(&Tensor::zeros((2, 7), DType::F32, &dev).unwrap(), true)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "discriminator input: expected features of shape [batch, 8], got [2, 7]"
    );
}

#[test]
fn bad_config_is_named() {
    let d = DiscriminatorConfig::default();
    let err = DiscriminatorConfig {
        dropout: 2.0,
        ..d.clone()
    }
    .validate()
    .unwrap_err();
    assert_eq!(err.to_string(), "dropout: must be in [0, 1], got 2");
    let err = DiscriminatorConfig {
        hidden: vec![0],
        ..d
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hidden: widths must be > 0, got 0 at index 0"
    );
}

//! Classifier head, cross-entropy and accuracy against hand computations.

use candle_core::{DType, Tensor};
use candle_nn::VarMap;
use ebda_classifier::{ClassifierConfig, accuracy, correct, cross_entropy};
use ebda_nn::{Rng, parameter_count, seeded_var_builder};

use ebda_testkit::device;

#[test]
fn cross_entropy_matches_hand_values() {
    let dev = device();
    // logits (0, ln 3) → p = (1/4, 3/4); label 1: −log(3/4) = 0.287682.
    // logits (0, 0)    → p = (1/2, 1/2); label 0: −log(1/2) = 0.693147.
    let logits = Tensor::from_slice(&[0f32, 3f32.ln(), 0., 0.], (2, 2), &dev).unwrap();
    let labels = Tensor::from_slice(&[1u32, 0], 2, &dev).unwrap();
    let nll = (-(0.75f64).ln() - (0.5f64).ln()) / 2.0;
    let ce = cross_entropy(&logits, &labels, 0.0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((ce as f64 - nll).abs() < 1e-6);
    // ε = 0.1: add ε·(mean_k −log p_k − nll) per sample.
    // sample 1: mean_k −log p_k = (ln 4 + ln 4/3)/2; sample 2: ln 2.
    let uniform = (((4f64).ln() + (4f64 / 3.0).ln()) / 2.0 + (2f64).ln()) / 2.0;
    let want = 0.9 * nll + 0.1 * uniform;
    let got = cross_entropy(&logits, &labels, 0.1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn cross_entropy_gradient_with_tied_logits_is_softmax_minus_one_hot() {
    let dev = device();
    // Logits (1, 1, 1, −1): the maximum is a three-way tie. dCE/dz = (p − e_y)/b
    // with p = e^z / Σ e^z; nothing depends on which tied logit is "the max".
    let zs = [1f32, 1., 1., -1.];
    let z = candle_core::Var::from_slice(&zs, (1, 4), &dev).unwrap();
    let labels = Tensor::from_slice(&[2u32], 1, &dev).unwrap();
    let grads = cross_entropy(&z, &labels, 0.0).unwrap().backward().unwrap();
    let got: Vec<f32> = grads
        .get(&z)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let sum: f64 = zs.iter().map(|&v| f64::from(v).exp()).sum();
    for (k, &zk) in zs.iter().enumerate() {
        let want = f64::from(zk).exp() / sum - if k == 2 { 1.0 } else { 0.0 };
        assert!(
            (f64::from(got[k]) - want).abs() < 1e-7,
            "∂z[{k}]: {} vs {want}",
            got[k]
        );
    }
    // The tied non-target logits get bit-identical gradients.
    assert_eq!(got[0], got[1]);
}

#[test]
fn accuracy_counts_argmax_hits() {
    let dev = device();
    let logits = Tensor::from_slice(&[1f32, 0., 0., 2., 0., 0., 5., 1., 0.], (3, 3), &dev).unwrap();
    let labels = Tensor::from_slice(&[0u32, 1, 2], 3, &dev).unwrap();
    assert_eq!(correct(&logits, &labels).unwrap(), 1);
    assert!((accuracy(&logits, &labels).unwrap() - 1.0 / 3.0).abs() < 1e-12);
    let wrong = Tensor::from_slice(&[0u32, 1], 2, &dev).unwrap();
    let err = accuracy(&logits, &wrong).unwrap_err().to_string();
    assert_eq!(
        err,
        "classifier input: labels must be [3] to match logits [3, 3], got [2]"
    );
}

#[test]
fn heads_have_expected_shapes_and_parameters() {
    let dev = device();
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, DType::F32, &dev);
    let linear = ClassifierConfig::default()
        .init(vb.pp("linear"), &Rng::new(0))
        .unwrap();
    let x = Tensor::ones((4, 500), DType::F32, &dev).unwrap();
    assert_eq!(linear.forward_t(&x, true).unwrap().dims(), &[4, 10]);
    assert_eq!(parameter_count(&map), 500 * 10 + 10);

    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, DType::F32, &dev);
    let cfg = ClassifierConfig {
        in_dim: 8,
        num_classes: 31,
        hidden: vec![16],
        dropout: 0.5,
        ..Default::default()
    };
    let mlp = cfg.init(vb, &Rng::new(0)).unwrap();
    let x = Tensor::ones((4, 8), DType::F32, &dev).unwrap();
    assert_eq!(mlp.forward_t(&x, false).unwrap().dims(), &[4, 31]);
    assert_eq!(parameter_count(&map), 8 * 16 + 16 + 16 * 31 + 31);
    // Evaluation mode is deterministic; training mode draws dropout masks.
    let a = mlp.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap();
    let b = mlp.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, b);
    let t1 = mlp.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap();
    let t2 = mlp.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap();
    assert_ne!(t1, a, "training mode applies dropout");
    assert_ne!(t1, t2, "each training forward draws new masks");
    let err = mlp
        .forward_t(&Tensor::ones((4, 9), DType::F32, &dev).unwrap(), false)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "classifier input: expected features of shape [batch, 8], got [4, 9]"
    );
}

#[test]
fn bad_config_is_named() {
    let bad = |c: ClassifierConfig| c.validate().unwrap_err().to_string();
    let d = ClassifierConfig::default();
    assert_eq!(
        bad(ClassifierConfig {
            num_classes: 1,
            ..d.clone()
        }),
        "num_classes: must be >= 2, got 1"
    );
    assert_eq!(
        bad(ClassifierConfig {
            label_smoothing: 1.0,
            ..d.clone()
        }),
        "label_smoothing: must be in [0, 1), got 1"
    );
    assert_eq!(
        bad(ClassifierConfig { dropout: -0.1, ..d }),
        "dropout: must be in [0, 1], got -0.1"
    );
}

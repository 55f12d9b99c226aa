//! Shapes, parameter counts and train/eval behaviour of every extractor.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use ebda_features::{
    BackboneConfig, FeatureExtractor, FeaturesConfig, Group, LenetConfig, MlpConfig,
};
use ebda_nn::{Rng, named_vars, parameter_count, seeded_var_builder, trainable_vars};

use ebda_testkit::device;

fn build(cfg: &FeaturesConfig, dev: &Device) -> (VarMap, Box<dyn FeatureExtractor>) {
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, DType::F32, dev);
    let f = cfg.init(vb, &Rng::new(0)).unwrap();
    (map, f)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Checks shapes in both modes, eval determinism, train stochasticity and
/// that every trainable variable receives a gradient.
fn exercise(f: &dyn FeatureExtractor, map: &VarMap, input: &[usize], dev: &Device) {
    let mut dims = vec![8];
    dims.extend(input);
    let x = Tensor::randn(0f32, 1., dims, dev).unwrap();
    let train = f.forward_t(&x, true).unwrap();
    assert_eq!(train.dims(), &[8, f.out_dim()]);
    let eval = f.forward_t(&x, false).unwrap();
    assert_eq!(eval.dims(), &[8, f.out_dim()]);
    assert_eq!(
        max_abs_diff(&eval, &f.forward_t(&x, false).unwrap()),
        0.0,
        "eval must be deterministic"
    );
    assert!(
        max_abs_diff(&train, &f.forward_t(&x, true).unwrap()) > 0.0,
        "train mode draws dropout"
    );
    let grads = train.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for (name, var) in trainable_vars(map) {
        assert!(grads.get(&var).is_some(), "no gradient for {name}");
    }
}

#[test]
fn lenet_matches_the_reference() {
    let dev = device();
    let (map, f) = build(&FeaturesConfig::default(), &dev);
    // conv1 20·1·25 + 20 = 520; conv2 50·20·25 + 50 = 25 050; fc 800·500 + 500 = 400 500.
    assert_eq!(parameter_count(&map), 426_070);
    assert_eq!(f.out_dim(), 500);
    assert_eq!(f.input_dims(), vec![1, 28, 28]);
    exercise(f.as_ref(), &map, &[1, 28, 28], &dev);
    let err = f
        .forward_t(
            &Tensor::zeros((2, 1, 32, 32), DType::F32, &dev).unwrap(),
            false,
        )
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "lenet input: expected [batch > 0, 1, 28, 28], got [2, 1, 32, 32]"
    );
}

#[test]
fn dtn_matches_the_reference_and_uses_running_stats_in_eval() {
    let dev = device();
    let cfg = FeaturesConfig::of(BackboneConfig::named("dtn").unwrap());
    let (map, f) = build(&cfg, &dev);
    // conv 3·64·25+64 = 4 864, 64·128·25+128 = 204 928, 128·256·25+256 = 819 456;
    // BN2d γ,β: 2·(64+128+256) = 896; fc 4096·512+512 = 2 097 664; BN1d γ,β: 1 024.
    assert_eq!(parameter_count(&map), 3_128_832);
    let buffers = named_vars(&map).len() - trainable_vars(&map).len();
    assert_eq!(buffers, 8); // running mean and var of four BN layers
    assert_eq!(f.out_dim(), 512);
    let x = Tensor::randn(2f32, 3., (8, 3, 32, 32), &dev).unwrap();
    let before = f.forward_t(&x, false).unwrap();
    exercise(f.as_ref(), &map, &[3, 32, 32], &dev);
    // Training-mode passes moved the running statistics, so eval output changed.
    assert!(max_abs_diff(&before, &f.forward_t(&x, false).unwrap()) > 0.0);
}

#[test]
fn mlp_and_bottleneck() {
    let dev = device();
    let cfg = FeaturesConfig::of(BackboneConfig::Mlp(MlpConfig {
        in_dim: 20,
        hidden: vec![16, 12],
        ..Default::default()
    }));
    let (map, f) = build(&cfg, &dev);
    assert_eq!(parameter_count(&map), 20 * 16 + 16 + 16 * 12 + 12);
    assert_eq!(f.out_dim(), 12);
    exercise(f.as_ref(), &map, &[20], &dev);

    let cfg = FeaturesConfig {
        bottleneck: Some(64),
        ..Default::default()
    };
    assert_eq!(cfg.out_dim(), 64);
    let (map, f) = build(&cfg, &dev);
    assert_eq!(parameter_count(&map), 426_070 + 500 * 64 + 64 + 2 * 64);
    assert_eq!(f.out_dim(), 64);
    exercise(f.as_ref(), &map, &[1, 28, 28], &dev);
    // Parameter groups: the backbone's variables vs the bottleneck on top.
    let groups: Vec<(String, Group)> = trainable_vars(&map)
        .into_iter()
        .map(|(n, _)| {
            let g = f.group(&n);
            (n, g)
        })
        .collect();
    let backbone = groups.iter().filter(|(_, g)| *g == Group::Backbone).count();
    assert_eq!(
        backbone, 6,
        "LeNet's conv1, conv2, fc weights and biases: {groups:?}"
    );
    for (n, g) in &groups {
        assert_eq!(n.starts_with("backbone."), *g == Group::Backbone, "{n}");
    }
    assert_eq!(f.group("backbonex.weight"), Group::NewLayers);
}

#[test]
fn without_dropout_train_and_eval_agree_for_lenet() {
    let dev = device();
    let cfg = FeaturesConfig::of(BackboneConfig::Lenet(LenetConfig {
        dropout: 0.0,
        spatial_dropout: false,
        ..Default::default()
    }));
    let (_, f) = build(&cfg, &dev);
    let x = Tensor::randn(0f32, 1., (4, 1, 28, 28), &dev).unwrap();
    assert_eq!(
        max_abs_diff(
            &f.forward_t(&x, true).unwrap(),
            &f.forward_t(&x, false).unwrap()
        ),
        0.0
    );
}

#[test]
fn bad_config_is_named() {
    let bad = |c: FeaturesConfig| c.validate().unwrap_err().to_string();
    let d = FeaturesConfig::default();
    assert_eq!(
        bad(FeaturesConfig::of(BackboneConfig::Lenet(LenetConfig {
            dropout: 1.5,
            ..Default::default()
        }))),
        "backbone.lenet.dropout: must be in [0, 1], got 1.5"
    );
    assert_eq!(
        bad(FeaturesConfig::of(BackboneConfig::Mlp(MlpConfig {
            hidden: vec![64, 0],
            ..Default::default()
        }))),
        "backbone.mlp.hidden: widths must be > 0, got 0 at index 1"
    );
    assert_eq!(
        bad(FeaturesConfig::of(BackboneConfig::Lenet(LenetConfig {
            in_channels: 0,
            ..Default::default()
        }))),
        "backbone.lenet.in_channels: must be > 0, got 0"
    );
    assert_eq!(
        bad(FeaturesConfig {
            bottleneck: Some(0),
            ..d
        }),
        "bottleneck: must be > 0, got 0"
    );
}

/// LeNet's backward (candle's conv2d and ebda's max-pool) against central
/// finite differences in f64, for a handful of weights of every layer.
/// L = Σ w ⊙ F(x) with fixed random w; h = 1e-6; tolerance 1e-6 relative.
#[test]
fn lenet_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 3, DType::F64, &dev);
    let cfg = FeaturesConfig::of(BackboneConfig::Lenet(LenetConfig {
        dropout: 0.0,
        spatial_dropout: false,
        ..Default::default()
    }));
    let f = cfg.init(vb, &Rng::new(0)).unwrap();
    let x = ebda_testkit::seeded_randn(1, &[2, 1, 28, 28], DType::F64, &dev);
    let w = ebda_testkit::seeded_randn(2, &[2, 500], DType::F64, &dev);
    let loss = |f: &dyn FeatureExtractor| {
        f.forward_t(&x, false)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    assert_matches_finite_differences(&map, || loss(f.as_ref()));
}

/// `mlp` with no hidden width passes cached features through: the first
/// trained layer is the bottleneck (tllib's head on a frozen backbone).
#[test]
fn mlp_without_hidden_layers_is_the_input_under_a_bottleneck() {
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 1, DType::F32, &dev);
    let cfg = FeaturesConfig {
        bottleneck: Some(8),
        ..FeaturesConfig::of(BackboneConfig::Mlp(MlpConfig {
            in_dim: 20,
            hidden: vec![],
            dropout: 0.5,
        }))
    };
    cfg.validate().unwrap();
    assert_eq!(cfg.backbone_dim(), 20);
    assert_eq!(cfg.out_dim(), 8);
    let f = cfg.init(vb, &Rng::new(0)).unwrap();
    let x = Tensor::randn(0f32, 1.0, (4, 20), &dev).unwrap();
    assert_eq!(f.forward_t(&x, true).unwrap().dims(), &[4, 8]);
    // Only the bottleneck's variables exist.
    let names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
    assert!(
        names.iter().all(|n| n.starts_with("bottleneck.")),
        "{names:?}"
    );
    assert!(!names.is_empty());
    let e = f.forward_t(&Tensor::zeros((4, 19), DType::F32, &dev).unwrap(), false);
    assert!(e.unwrap_err().to_string().contains("[batch > 0, 20]"));
}

/// The DANN paper's MNIST-M extractor: its layout (40 880 parameters:
/// conv 3→32 k5 and 32→48 k5 with biases), its output equal to the layers
/// composed from candle's ops in the paper's order (conv → ReLU → pool), and
/// its gradients against central finite differences in f64.
#[test]
fn dann_mnist_is_the_papers_network_with_exact_gradients() {
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 5, DType::F64, &dev);
    let cfg = FeaturesConfig::of(BackboneConfig::named("dann_mnist").unwrap());
    cfg.validate().unwrap();
    assert_eq!(cfg.out_dim(), 768);
    let f = cfg.init(vb, &Rng::new(0)).unwrap();
    assert_eq!(f.input_dims(), [3, 28, 28]);
    assert_eq!(parameter_count(&map), 3 * 32 * 25 + 32 + 32 * 48 * 25 + 48);
    // Ties on purpose: a constant region (as in digit backgrounds).
    let mut v: Vec<f64> = ebda_testkit::seeded_randn(3, &[2, 3, 28, 28], DType::F64, &dev)
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    v[..900].iter_mut().for_each(|x| *x = 0.25);
    let x = Tensor::from_vec(v, (2, 3, 28, 28), &dev).unwrap();
    let vars = named_vars(&map);
    let get = |n: &str| vars.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let composed = {
        let block = |x: &Tensor, conv: &str| {
            x.conv2d(&get(&format!("backbone.{conv}.weight")), 0, 1, 1, 1)
                .unwrap()
                .broadcast_add(
                    &get(&format!("backbone.{conv}.bias"))
                        .reshape((1, (), 1, 1))
                        .unwrap(),
                )
                .unwrap()
                .relu()
                .unwrap()
                .max_pool2d(2)
                .unwrap()
        };
        block(&block(&x, "conv1"), "conv2").flatten_from(1).unwrap()
    };
    let out = f.forward_t(&x, true).unwrap();
    let diff = (&out - &composed)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(diff < 1e-12, "max |fused − composed| = {diff}");

    let w = ebda_testkit::seeded_randn(4, &[2, 768], DType::F64, &dev);
    let loss = || {
        f.forward_t(&x, true)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    assert_matches_finite_differences(&map, loss);
}

/// Every trainable variable's gradient of `loss` at a handful of entries
/// against central finite differences (f64; h = 1e-6, tolerance 1e-6
/// relative). An entry whose ±h step crosses a kink (a ReLU switching, a
/// max-pool window changing its maximum) has no derivative to compare: the
/// one-sided differences disagree there, and the next entry is taken.
fn assert_matches_finite_differences(map: &VarMap, loss: impl Fn() -> Tensor) {
    let dev = Device::Cpu;
    let grads = loss().backward().unwrap();
    let base = loss().to_scalar::<f64>().unwrap();
    for (name, var) in trainable_vars(map) {
        let analytic: Vec<f64> = grads
            .get(&var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let values: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let n = values.len();
        let (mut checked, mut kinks) = (0, 0);
        for start in [0, n / 3, n / 2, n - 1] {
            for k in (start..n).chain(0..start).take(8) {
                let eval = |delta: f64| {
                    let mut v = values.clone();
                    v[k] += delta;
                    var.set(&Tensor::from_vec(v, var.shape(), &dev).unwrap())
                        .unwrap();
                    let l = loss().to_scalar::<f64>().unwrap();
                    var.set(&Tensor::from_vec(values.clone(), var.shape(), &dev).unwrap())
                        .unwrap();
                    l
                };
                let h = 1e-6;
                let (up, down) = (eval(h), eval(-h));
                let tol = |scale: f64| 1e-6 * (1.0 + scale);
                let (right, left) = ((up - base) / h, (base - down) / h);
                if (right - left).abs() > tol(right.abs().max(left.abs())) * 10.0 {
                    kinks += 1;
                    continue;
                }
                let numeric = (up - down) / (2.0 * h);
                assert!(
                    (numeric - analytic[k]).abs() < tol(numeric.abs().max(analytic[k].abs())),
                    "{name}[{k}]: numeric {numeric} vs analytic {}",
                    analytic[k]
                );
                checked += 1;
                break;
            }
        }
        assert!(
            checked >= 3,
            "{name}: only {checked} smooth entries ({kinks} kinks)"
        );
    }
}

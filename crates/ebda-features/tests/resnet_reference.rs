//! ebda's ResNet against torchvision: parameter names and shapes, and, on
//! seeded random weights saved by `experiments/reference/torch_resnet.py`,
//! eval- and train-mode features, BN running statistics after one
//! train-mode forward, and every parameter's gradient of
//! `sum(train_features ⊙ w)`.
//!
//! The committed fixtures are ResNet-50 and ResNet-18 layouts with widths
//! divided by 16 at 64×64 (same code path as the full networks). Set
//! `EBDA_RESNET_REFERENCE` to a folder written by `torch_resnet.py full` to
//! compare the full ResNet-50 at 224×224 as well.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use ebda_features::{BackboneConfig, FeatureExtractor, FeaturesConfig, ResNetSpec, ResnetConfig};
use ebda_nn::{Rng, named_vars, seeded_var_builder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet")
}

fn config(depth: usize, divisor: usize, size: usize, weights: Option<&Path>) -> FeaturesConfig {
    FeaturesConfig::of(BackboneConfig::Resnet(ResnetConfig {
        depth,
        width_divisor: divisor,
        input_size: size,
        weights: weights.map(|p| p.display().to_string()),
        ..Default::default()
    }))
}

fn build(cfg: &FeaturesConfig) -> ebda_features::Result<(VarMap, Box<dyn FeatureExtractor>)> {
    build_as(cfg, DType::F32)
}

fn build_as(
    cfg: &FeaturesConfig,
    dtype: DType,
) -> ebda_features::Result<(VarMap, Box<dyn FeatureExtractor>)> {
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, dtype, &Device::Cpu);
    let f = cfg.init(vb, &Rng::new(0))?;
    Ok((map, f))
}

/// `(max |a − b|, max |a − b| / max |b|)`.
fn diff(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    assert_eq!(a.dims(), b.dims());
    let abs: f64 = (&a - &b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let scale: f64 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    (abs, abs / scale.max(f64::MIN_POSITIVE))
}

/// Compares every reference value of `name` and prints the worst
/// differences per kind. ebda runs in `dtype` (the reference's by default);
/// `tol` bounds forward values, `grad_tol` gradients.
struct Tolerance {
    dtype: Option<DType>,
    tol: f64,
    grad_tol: f64,
}

fn compare(dir: &Path, name: &str, depth: usize, divisor: usize, size: usize, t: Tolerance) {
    let weights = dir.join(format!("{name}.pth"));
    let expected: BTreeMap<String, Tensor> =
        candle_core::pickle::read_all(dir.join(format!("{name}.expected.pth")))
            .unwrap()
            .into_iter()
            .collect();
    let dtype = t.dtype.unwrap_or(expected["input"].dtype());
    let x = &expected["input"].to_dtype(dtype).unwrap();
    let (map, f) = build_as(&config(depth, divisor, size, Some(&weights)), dtype).unwrap();
    let vars: BTreeMap<String, candle_core::Var> = named_vars(&map).into_iter().collect();
    let mut worst: BTreeMap<&str, (f64, f64, String)> = BTreeMap::new();
    let mut note = |kind: &'static str, what: &str, d: (f64, f64)| {
        let e = worst.entry(kind).or_insert((0.0, 0.0, String::new()));
        if d.1 > e.1 {
            *e = (d.0, d.1, what.to_string());
        }
        e.0 = e.0.max(d.0);
    };

    let eval = f.forward_t(x, false).unwrap();
    note("eval features", "", diff(&eval, &expected["eval.features"]));
    let train = f.forward_t(x, true).unwrap();
    note(
        "train features",
        "",
        diff(&train, &expected["train.features"]),
    );
    let w = expected["loss_weights"].to_dtype(dtype).unwrap();
    let loss = (&train * &w).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let (mut n_running, mut n_grads) = (0, 0);
    for (k, want) in &expected {
        if let Some(v) = k.strip_prefix("running.") {
            let var = &vars[&format!("backbone.{v}")];
            note("running stats", v, diff(var.as_tensor(), want));
            n_running += 1;
        } else if let Some(v) = k.strip_prefix("grad.") {
            let var = &vars[&format!("backbone.{v}")];
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("no gradient for {v}"));
            note("gradients", v, diff(g, want));
            n_grads += 1;
        }
    }
    assert!(n_running > 0 && n_grads > 0);
    for (kind, (abs, rel, at)) in &worst {
        eprintln!(
            "{name} (ebda {dtype:?} vs torch {:?}) {kind}: max abs diff {abs:.3e}, max rel diff {rel:.3e} {at}",
            expected["input"].dtype()
        );
        let tol = if *kind == "gradients" {
            t.grad_tol
        } else {
            t.tol
        };
        assert!(
            *rel <= tol,
            "{name} {kind}: relative difference {rel:.3e} > {tol:.0e} at {at}"
        );
    }
    eprintln!("{name}: {n_running} running statistics and {n_grads} gradients compared");
}

const F64_EXACT: Tolerance = Tolerance {
    dtype: None,
    tol: 1e-9,
    grad_tol: 1e-9,
};

/// The fixtures' reference values are f64 (see `torch_resnet.py`): equal
/// code gives differences at rounding level, a wrong op does not.
#[test]
fn narrow_resnet50_matches_torchvision() {
    compare(&fixtures(), "resnet50_div32", 50, 32, 64, F64_EXACT);
}

#[test]
fn narrow_resnet18_matches_torchvision() {
    compare(&fixtures(), "resnet18_div32", 18, 32, 64, F64_EXACT);
}

/// The full ResNet-50 at 224×224, where a reference folder is given: in
/// the reference's dtype at its precision (1e-9 in f64, 1e-4 in f32), and
/// ebda's f32 against an f64 reference (forward 1e-4; gradients only
/// printed: train-mode BN makes f32 gradients ill-conditioned — PyTorch's
/// own f32 and f64 gradients of this network differ by up to 16 %).
#[test]
fn full_resnet50_matches_torchvision_when_given() {
    let Some(dir) = std::env::var_os("EBDA_RESNET_REFERENCE") else {
        eprintln!("skipped: set EBDA_RESNET_REFERENCE to a `torch_resnet.py full` folder");
        return;
    };
    let dir = Path::new(&dir);
    let reference: BTreeMap<String, Tensor> =
        candle_core::pickle::read_all(dir.join("resnet50.expected.pth"))
            .unwrap()
            .into_iter()
            .collect();
    let f64_ref = reference["input"].dtype() == DType::F64;
    let same = Tolerance {
        dtype: None,
        tol: if f64_ref { 1e-9 } else { 1e-4 },
        grad_tol: if f64_ref { 1e-9 } else { f64::INFINITY },
    };
    compare(dir, "resnet50", 50, 1, 224, same);
    if f64_ref {
        let f32_run = Tolerance {
            dtype: Some(DType::F32),
            tol: 1e-4,
            grad_tol: f64::INFINITY,
        };
        compare(dir, "resnet50", 50, 1, 224, f32_run);
    }
}

#[test]
fn parameter_names_and_shapes_equal_torchvisions() {
    for depth in ebda_features::RESNET_DEPTHS {
        let text =
            std::fs::read_to_string(fixtures().join(format!("resnet{depth}.names.txt"))).unwrap();
        let theirs: Vec<String> = text.lines().map(str::to_string).collect();
        let ours: Vec<String> = ResNetSpec::of_depth(depth)
            .unwrap()
            .variables()
            .into_iter()
            .map(|(n, s)| {
                let s: Vec<String> = s.iter().map(|d| d.to_string()).collect();
                format!("{n} {}", s.join("x"))
            })
            .collect();
        assert_eq!(ours, theirs, "resnet{depth}");
    }
    // The built network has exactly those variables (ResNet-50 built in full).
    let (map, f) = build(&config(50, 1, 224, None)).unwrap();
    assert_eq!(f.out_dim(), 2048);
    let built: Vec<(String, Vec<usize>)> = named_vars(&map)
        .into_iter()
        .map(|(n, v)| {
            (
                n.strip_prefix("backbone.").unwrap().to_string(),
                v.dims().to_vec(),
            )
        })
        .collect();
    let mut spec = ResNetSpec::of_depth(50).unwrap().variables();
    spec.sort();
    assert_eq!(built, spec);
    let params: usize = ebda_nn::parameter_count(&map);
    assert_eq!(params, 23_508_032, "torchvision's ResNet-50 without fc");
}

/// torchvision key → Hugging Face transformers `ResNetModel` key.
fn to_hf(k: &str) -> String {
    let part = |p: &str| {
        if p.starts_with("conv") {
            "convolution"
        } else {
            "normalization"
        }
    };
    let f: Vec<&str> = k.split('.').collect();
    match f.as_slice() {
        [p, v] => format!("resnet.embedder.embedder.{}.{v}", part(p)),
        [l, i, "downsample", j, v] => {
            let s: usize = l[5..].parse().unwrap();
            let p = if *j == "0" {
                "convolution"
            } else {
                "normalization"
            };
            format!(
                "resnet.encoder.stages.{}.layers.{i}.shortcut.{p}.{v}",
                s - 1
            )
        }
        [l, i, p, v] => {
            let s: usize = l[5..].parse().unwrap();
            let j: usize = p[p.len() - 1..].parse().unwrap();
            format!(
                "resnet.encoder.stages.{}.layers.{i}.layer.{}.{}.{v}",
                s - 1,
                j - 1,
                part(p)
            )
        }
        _ => panic!("unexpected key {k}"),
    }
}

fn features_of(cfg: &FeaturesConfig, x: &Tensor) -> Tensor {
    build(cfg).unwrap().1.forward_t(x, false).unwrap()
}

#[test]
fn safetensors_with_timm_or_hugging_face_names_load_the_same_network() {
    let pth = fixtures().join("resnet50_div32.pth");
    let tensors = candle_core::pickle::read_all(&pth).unwrap();
    let dir = ebda_testkit::temp_dir("resnet-st");
    let timm = dir.join("timm.safetensors");
    let hf = dir.join("hf.safetensors");
    let plain: std::collections::HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&plain, &timm).unwrap();
    let mut renamed: std::collections::HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| (to_hf(k), t.to_dtype(DType::F16).unwrap()))
        .collect();
    renamed.insert(
        "classifier.1.weight".into(),
        Tensor::zeros((10, 128), DType::F16, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&renamed, &hf).unwrap();
    let x = Tensor::rand(-1f32, 1., (2, 3, 64, 64), &Device::Cpu).unwrap();
    let want = features_of(&config(50, 32, 64, Some(&pth)), &x);
    let (abs, _) = diff(&features_of(&config(50, 32, 64, Some(&timm)), &x), &want);
    assert_eq!(abs, 0.0);
    // f16 storage rounds the weights: close, not equal.
    let (_, rel) = diff(&features_of(&config(50, 32, 64, Some(&hf)), &x), &want);
    assert!(rel < 1e-2, "{rel}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn load_error(weights: &Path) -> String {
    match build(&config(50, 32, 64, Some(weights))) {
        Ok(_) => panic!("{} loaded", weights.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_weights_files_are_refused_with_the_reason() {
    let pth = fixtures().join("resnet50_div32.pth");
    let tensors = candle_core::pickle::read_all(&pth).unwrap();
    let dir = ebda_testkit::temp_dir("resnet-bad");
    let save = |name: &str, map: std::collections::HashMap<String, Tensor>| {
        let p = dir.join(name);
        candle_core::safetensors::save(&map, &p).unwrap();
        p
    };
    let base: std::collections::HashMap<String, Tensor> = tensors.iter().cloned().collect();

    // A missing key and an unexpected one, both listed with their shapes.
    let mut m = base.clone();
    m.remove("layer2.0.bn2.running_var");
    m.insert(
        "layer9.0.conv1.weight".into(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = load_error(&save("keys.safetensors", m));
    assert!(e.contains("keys.safetensors"), "{e}");
    assert!(e.contains("1 missing: layer2.0.bn2.running_var [4]"), "{e}");
    assert!(
        e.contains("1 unexpected: layer9.0.conv1.weight [2, 2]"),
        "{e}"
    );

    // A wrong shape (e.g. a ResNet-18 file for a ResNet-50).
    let mut m = base.clone();
    m.insert(
        "conv1.weight".into(),
        Tensor::zeros((64, 3, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = load_error(&save("shape.safetensors", m));
    assert!(
        e.contains("conv1.weight: expected [64, 3, 7, 7], found [64, 3, 3, 3]"),
        "{e}"
    );

    // A ResNet-18 file for a ResNet-50: many missing and unexpected keys.
    let e = load_error(&fixtures().join("resnet18_div32.pth"));
    assert!(
        e.contains("does not fit a ResNet of shape") && e.contains("missing") && e.contains("more"),
        "{e}"
    );

    // A non-finite value.
    let mut m = base.clone();
    m.insert(
        "bn1.weight".into(),
        Tensor::new(&[f32::NAN; 64], &Device::Cpu).unwrap(),
    );
    let e = load_error(&save("nan.safetensors", m));
    assert!(e.contains("bn1.weight holds a non-finite value"), "{e}");

    // The legacy (non-zip) PyTorch format: a pickle stream from the first byte.
    let legacy = dir.join("legacy.pth");
    std::fs::write(
        &legacy,
        b"\x80\x02\x8a\x0alz\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.",
    )
    .unwrap();
    let e = load_error(&legacy);
    assert!(
        e.contains("legacy.pth") && e.contains("legacy format") && e.contains("torch.save"),
        "{e}"
    );

    // A truncated download.
    let bytes = std::fs::read(&pth).unwrap();
    let cut = dir.join("truncated.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_error(&cut);
    assert!(
        e.contains("truncated.pth") && e.contains("not a readable PyTorch file"),
        "{e}"
    );
    let cut = dir.join("truncated.safetensors");
    let st = std::fs::read(save("whole.safetensors", base.clone())).unwrap();
    std::fs::write(&cut, &st[..st.len() - 100]).unwrap();
    let e = load_error(&cut);
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a readable safetensors file"),
        "{e}"
    );

    // An empty file and a missing one.
    let empty = dir.join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_error(&empty).contains("0 bytes long"));
    let e = load_error(&dir.join("nowhere.pth"));
    assert!(
        e.contains("nowhere.pth") && e.contains("cannot read"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn frozen_bn_keeps_running_statistics_and_can_freeze_the_affine() {
    use ebda_features::Group;
    let pth = fixtures().join("resnet50_div32.pth");
    let with = |frozen_bn: bool, bn_affine_trainable: bool| {
        let mut cfg = config(50, 32, 64, Some(&pth));
        let BackboneConfig::Resnet(r) = &mut cfg.backbone else {
            unreachable!()
        };
        r.frozen_bn = frozen_bn;
        r.bn_affine_trainable = bn_affine_trainable;
        cfg
    };
    let (map, f) = build(&with(true, false)).unwrap();
    let before = named_vars(&map);
    let x = Tensor::rand(-1f32, 1., (2, 3, 64, 64), &Device::Cpu).unwrap();
    let train = f.forward_t(&x, true).unwrap();
    let eval = f.forward_t(&x, false).unwrap();
    // Frozen BN: training uses the running statistics, and they do not move.
    assert_eq!(diff(&train, &eval).0, 0.0);
    for (n, v) in &before {
        if ebda_nn::is_buffer(n) {
            let now = candle_core::pickle::read_all(&pth).unwrap();
            let want = &now
                .iter()
                .find(|(k, _)| format!("backbone.{k}") == *n)
                .unwrap()
                .1;
            assert_eq!(diff(v.as_tensor(), want).0, 0.0, "{n}");
        }
    }
    assert_eq!(f.group("backbone.bn1.weight"), Group::Frozen);
    assert_eq!(
        f.group("backbone.layer1.0.downsample.1.bias"),
        Group::Frozen
    );
    assert_eq!(
        f.group("backbone.layer1.0.downsample.0.weight"),
        Group::Backbone
    );
    assert_eq!(f.group("backbone.layer3.1.conv2.weight"), Group::Backbone);
    // With the affine trainable, γ and β are backbone parameters again.
    let (_, f) = build(&with(true, true)).unwrap();
    assert_eq!(f.group("backbone.bn1.weight"), Group::Backbone);
    // Trainable BN: batch statistics differ from the running ones.
    let (_, f) = build(&with(false, true)).unwrap();
    assert!(
        diff(
            &f.forward_t(&x, true).unwrap(),
            &f.forward_t(&x, false).unwrap()
        )
        .0 > 1e-3
    );
}

#[test]
fn random_init_follows_torchvision() {
    // Kaiming-normal, fan_out, ReLU gain: std = √(2 / (out · k²)).
    let (map, _) = build(&config(50, 1, 224, None)).unwrap();
    let vars: BTreeMap<String, candle_core::Var> = named_vars(&map).into_iter().collect();
    let w: Vec<f32> = vars["backbone.layer3.0.conv2.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let n = w.len() as f64;
    let std = (w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n).sqrt();
    let want = (2.0 / (256.0 * 9.0f64)).sqrt();
    assert!((std / want - 1.0).abs() < 0.01, "{std} vs {want}");
    let g: Vec<f32> = vars["backbone.bn1.weight"].to_vec1().unwrap();
    assert!(g.iter().all(|&v| v == 1.0));
    let rv: Vec<f32> = vars["backbone.layer4.2.bn3.running_var"].to_vec1().unwrap();
    assert!(rv.iter().all(|&v| v == 1.0));
}

#[test]
fn input_shape_and_depth_errors_are_clear() {
    let (_, f) = build(&config(18, 32, 64, None)).unwrap();
    let bad = Tensor::zeros((2, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let e = f.forward_t(&bad, false).err().unwrap().to_string();
    assert!(
        e.contains("expected [batch > 0, 3, h ≥ 32, w ≥ 32], got [2, 1, 64, 64]"),
        "{e}"
    );
    let e = build(&config(20, 1, 224, None)).err().unwrap().to_string();
    assert!(
        e.contains("backbone.resnet.depth") && e.contains("[18, 34, 50, 101]") && e.contains("20"),
        "{e}"
    );
}

/// Found by the `pth_weights` fuzz target (rewritten as a well-formed
/// archive, since zip checksums are now verified first): a pickle string
/// declaring a 4 GiB length in a few hundred bytes. candle's pickle reader allocates the
/// declared length before reading; the pickle is scanned first, and the file
/// is refused without that allocation (`fuzz/run.sh` runs the target with
/// libFuzzer's 2 GiB allocation limit, which the allocation would break).
#[test]
fn a_pickle_declaring_a_4_gib_string_is_an_error() {
    let path = fixtures().join("../fuzz/pickle-4gb-length.pth");
    let err = ebda_features::weights::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("pickle-4gb-length.pth") && err.contains("declares") && err.contains("follow"),
        "{err}"
    );
}

/// Found by the `pth_weights` fuzz target (rewritten as a well-formed
/// archive): a pickle whose tensor rebuild has fewer arguments than candle's reader indexes (it panics inside
/// `rebuild_args`); `weights::read` catches that and names the file.
#[test]
fn a_pickle_with_short_rebuild_arguments_is_an_error() {
    let path = fixtures().join("../fuzz/pickle-short-rebuild-args.pth");
    let err = ebda_features::weights::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("pickle-short-rebuild-args.pth") && err.contains("malformed pickle"),
        "{err}"
    );
}

/// A `.pth` whose tensor declares 2³⁰ `f32` elements (4 GiB) over a
/// 16-byte storage: candle would allocate the declared size before reading;
/// the archive's real sizes are checked first and the tensor is named.
#[test]
fn a_tensor_declaring_more_bytes_than_its_storage_is_an_error() {
    let path = fixtures().join("../fuzz/tensor-4gib-shape.pth");
    let err = ebda_features::weights::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("tensor-4gib-shape.pth")
            && err.contains("tensor \"w\" declares shape [1073741824]")
            && err.contains("more than the 16 bytes of archive/data/0"),
        "{err}"
    );
}

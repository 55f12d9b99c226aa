//! The Office-31 configs: the fine-tuning protocol is the Transfer-Learning-
//! Library's, the frozen-feature protocol keeps its schedules per iteration,
//! and the fine-tuning config trains on the real images (random-init
//! ResNet-18, small crops) with a falling loss and an exact resume.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;

use ebda_features::BackboneConfig;
use ebda_testkit::metrics_without_timing as metrics;
use ebda_train::ExperimentConfig;
use ebda_train::methods::MethodConfig;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn load(rel: &str, sets: &[&str]) -> ExperimentConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    ExperimentConfig::load(Some(&repo(rel)), &sets).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// lr·(1 + 0.001·i)^−0.75 and 2/(1 + e^(−i/1000)) − 1 per iteration i, as
/// tllib's DANN: with progress p = i / I, α = 0.001·I and γ = I / 1000.
fn assert_tllib_schedules(cfg: &ExperimentConfig, what: &str) {
    let iters = cfg.train.iterations as f64;
    let o = &cfg.optim;
    assert_eq!((o.lr, o.momentum, o.nesterov), (0.01, 0.9, true), "{what}");
    assert_eq!((o.weight_decay, o.beta), (0.001, 0.75), "{what}");
    assert!(
        (o.alpha - 0.001 * iters).abs() < 1e-9,
        "{what}: alpha {}",
        o.alpha
    );
    assert!((cfg.adapt.gamma - iters / 1000.0).abs() < 1e-9, "{what}");
    assert_eq!(cfg.adapt.lambda_max, 1.0, "{what}");
    assert_eq!(cfg.data.batch_size, 32, "{what}");
    assert_eq!(cfg.model.features.bottleneck, Some(256), "{what}");
    assert_eq!(cfg.model.classifier.num_classes, 31, "{what}");
    let MethodConfig::Dann(d) = &cfg.method else {
        panic!("{what}: the default method is DANN")
    };
    assert_eq!(d.discriminator.hidden, [1024, 1024], "{what}");
    assert!(d.discriminator.batch_norm, "{what}");
}

#[test]
fn office31_configs_follow_the_cited_protocols() {
    let cfg = load("experiments/office31/finetune.json", &[]);
    assert_tllib_schedules(&cfg, "finetune");
    assert_eq!(cfg.train.iterations, 20_000);
    assert_eq!(cfg.optim.backbone_lr_mult, 0.1);
    let BackboneConfig::Resnet(r) = &cfg.model.features.backbone else {
        panic!("finetune: a ResNet backbone")
    };
    assert_eq!((r.depth, r.input_size, r.frozen_bn), (50, 224, false));
    // The weights `ebda data fetch resnet50` writes.
    let sources: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("data/sources.json")).unwrap()).unwrap();
    let name = sources["resnet50"]["files"][0]["name"].as_str().unwrap();
    assert_eq!(
        r.weights.as_deref(),
        Some(format!("data/weights/{name}").as_str())
    );
    let i = &cfg.data.input;
    assert_eq!(
        (i.channels, i.height, i.width, i.resize),
        (3, 224, 224, Some(256))
    );
    assert!(i.augment.random_resized_crop && i.augment.hflip);
    assert_eq!(i.augment.scale, [0.08, 1.0]);
    assert_eq!(i.mean, ebda_data::IMAGENET_MEAN);
    assert_eq!(i.std, ebda_data::IMAGENET_STD);
    assert_eq!(cfg.data.source.domain, "amazon");
    assert_eq!(cfg.data.target.domain, cfg.data.target_test.domain);

    let frozen = load("experiments/office31/frozen/frozen.json", &[]);
    assert_tllib_schedules(&frozen, "frozen");
    let BackboneConfig::Mlp(m) = &frozen.model.features.backbone else {
        panic!("frozen: cached features")
    };
    assert_eq!((m.in_dim, m.hidden.len()), (2048, 0));
    assert_eq!(frozen.data.target.root, frozen.data.target_test.root);

    // Every method the run script runs resolves on both.
    for rel in [
        "experiments/office31/finetune.json",
        "experiments/office31/frozen/frozen.json",
    ] {
        for sets in [
            vec!["method=source-only"],
            vec!["method=ebda"],
            vec!["method=cdan"],
            vec!["method=cdan", "method.cdan.entropy=true", "label=cdan+e"],
        ] {
            load(rel, &sets);
        }
    }
}

#[test]
fn finetune_config_trains_on_real_office31_and_resumes_exactly() {
    let Some(data) = common::real_data("office31") else {
        return;
    };
    let dir = common::temp_dir("office31-finetune");
    let data = data.to_str().unwrap().to_string();
    // The fine-tuning config as it is, made small: ResNet-18 from random
    // initialisation (trained at the full rate: there is nothing to keep) at
    // 64 px, 16 + 16 images, the first 60 iterations of tllib's schedules
    // (α = 0.001·60, γ = 60/1000).
    let sets: Vec<String> = [
        "model.features.backbone.resnet.depth=18",
        "model.features.backbone.resnet.weights=null",
        "model.features.backbone.resnet.input_size=64",
        "optim.backbone_lr_mult=1",
        "data.input.height=64",
        "data.input.width=64",
        "data.input.resize=72",
        "data.batch_size=16",
        "train.iterations=60",
        "optim.alpha=0.06",
        "adapt.gamma=0.06",
        "train.eval_every=30",
        "train.checkpoint_every=30",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["source", "target", "target_test"].map(|k| format!("data.{k}.root={data}")))
    .collect();
    let run = |out: &Path, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebda"));
        cmd.args([
            "--threads",
            "2",
            "-q",
            "train",
            "--no-progress",
            "--no-plots",
        ]);
        if extra.first() == Some(&"--resume") {
            cmd.args(["--resume", out.to_str().unwrap()]);
        } else {
            cmd.args([
                "--config",
                repo("experiments/office31/finetune.json").to_str().unwrap(),
            ]);
            cmd.args(["--out", out.to_str().unwrap()]);
            for s in &sets {
                cmd.args(["--set", s]);
            }
            cmd.args(extra);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let full = dir.join("full");
    run(&full, &[]);
    let m = metrics(&full);
    assert_eq!(m.len(), 2);
    let ce = |i: usize| m[i]["train"]["ce"].as_f64().unwrap();
    // Source cross-entropy (mean over iterations 1–30, then 31–60) starts
    // near ln 31 = 3.43 and falls.
    assert!(
        ce(0) > 3.0 && ce(1) < ce(0) - 0.05,
        "ce {} → {}",
        ce(0),
        ce(1)
    );
    // Stopped at 30 (with its checkpoint), resumed: the same metrics, while
    // batches are decoded ahead on worker threads.
    let parts = dir.join("parts");
    run(&parts, &["--stop-after", "30"]);
    run(&parts, &["--resume"]);
    assert_eq!(metrics(&parts), m);
    std::fs::remove_dir_all(&dir).unwrap();
}

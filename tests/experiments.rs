//! Every JSON file under `experiments/` is read by the code that uses it:
//! task configs resolve and validate (with every method), and committed run
//! records — configs of older layouts included — read back through the
//! record types and resume-time config loading.

use ebda_train::ExperimentConfig;
use std::path::{Path, PathBuf};

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn every_experiment_file_loads_and_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut files = Vec::new();
    json_files(&root, &mut files);
    files.sort();
    let (mut configs, mut runs, mut sweeps) = (0, 0, 0);
    for f in &files {
        let dir = f.parent().unwrap();
        let name = f.file_name().unwrap().to_str().unwrap();
        let in_run = dir.join("metrics.jsonl").is_file()
            || dir
                .parent()
                .is_some_and(|p| p.join("metrics.jsonl").is_file());
        match name {
            "config.json" if in_run => {
                let cfg = ExperimentConfig::load_run(dir)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                let head = ebda_records::read_head(dir).unwrap();
                assert_eq!(cfg.method.name(), head.method.0, "{}", f.display());
                ebda_records::read_metrics(&dir.join("metrics.jsonl"))
                    .unwrap_or_else(|e| panic!("{e}"));
                runs += 1;
            }
            "manifest.json" if in_run => {
                ebda_records::read_manifest(dir).unwrap_or_else(|e| panic!("{e}"));
            }
            "summary.json" if in_run => {
                let s = ebda_records::read_summary(dir).unwrap_or_else(|e| panic!("{e}"));
                assert!(s.is_some());
            }
            // The EBGAN example's summaries (crates/ebda-critic/examples).
            "summary.json" if f.starts_with(root.join("ebgan_mnist")) => {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(f).unwrap())
                        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                for key in ["class_entropy", "mean_max_probability", "digits_score"] {
                    assert!(v["generated"][key].is_f64(), "{}: {key}", f.display());
                }
                assert!(v["git_revision"].is_string(), "{}", f.display());
            }
            // The PyTorch reference's own run outputs (torch_da.py --out).
            _ if dir.file_name().is_some_and(|d| d == "reference-torch") => {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(f).unwrap())
                        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                let acc = v["last_acc"].as_f64();
                assert!(
                    acc.is_some_and(|a| (0.0..=1.0).contains(&a)),
                    "{}: last_acc {acc:?}",
                    f.display()
                );
                assert!(v["args"]["seed"].is_u64(), "{}", f.display());
            }
            // Sweep files: every run of the grid resolves and validates.
            _ if name.starts_with("sweep") => {
                let sweep = ebda_sweep::Sweep::load(f).unwrap_or_else(|e| panic!("{e}"));
                assert!(!sweep.runs.is_empty(), "{}", f.display());
                sweeps += 1;
            }
            _ if dir.file_name().is_some_and(|d| d == "energies") => {
                ebda_records::read_energies(dir.parent().unwrap())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            _ => {
                for method in ebda_train::methods::NAMES {
                    let set = format!("method={method}");
                    ExperimentConfig::load(Some(f), &[set])
                        .unwrap_or_else(|e| panic!("{} with {method}: {e}", f.display()));
                }
                ExperimentConfig::load(Some(f), &[])
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                configs += 1;
            }
        }
    }
    assert!(configs >= 4, "task configs found: {configs}");
    assert!(runs >= 18, "run records found: {runs}");
    assert!(sweeps >= 1, "sweep files found: {sweeps}");
}

/// The full-MNIST digits configs are tllib's protocol (`dann.sh` digits
/// lines and `dann.py` defaults); a change to either is a change of protocol.
#[test]
fn the_full_digits_configs_follow_the_tllib_protocol() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/digits");
    for (task, lr, src, tgt) in [
        ("M2U", 0.01, "mnist-full", "usps"),
        ("U2M", 0.1, "usps", "mnist-full"),
    ] {
        let cfg = ExperimentConfig::load(Some(&root.join(format!("{task}.json"))), &[])
            .unwrap_or_else(|e| panic!("{task}: {e}"));
        let v = serde_json::to_value(&cfg).unwrap();
        let at = |p: &str| p.split('.').fold(&v, |node, k| &node[k]).clone();
        let checks: Vec<(&str, serde_json::Value)> = vec![
            ("task", task.into()),
            ("data.batch_size", 128.into()),
            ("train.iterations", 50000.into()),
            ("train.eval_every", 2500.into()),
            ("optim.optimizer", "sgd".into()),
            ("optim.lr", lr.into()),
            ("optim.momentum", 0.9.into()),
            ("optim.nesterov", true.into()),
            ("optim.weight_decay", 0.001.into()),
            ("optim.schedule", "annealed".into()),
            ("optim.alpha", 50.0.into()),
            ("optim.beta", 0.75.into()),
            ("adapt.gamma", 50.0.into()),
            ("adapt.lambda_max", 1.0.into()),
            ("model.features.bottleneck", 256.into()),
            ("model.features.backbone", "lenet".into()),
            (
                "method.dann.discriminator.hidden",
                serde_json::json!([1024, 1024]),
            ),
            ("method.dann.discriminator.batch_norm", true.into()),
            ("data.input.mean", serde_json::json!([0.5])),
            ("data.input.std", serde_json::json!([0.5])),
        ];
        for (key, want) in checks {
            let got = at(key);
            let same = match (got.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-12,
                _ => got == want || got.get(want.as_str().unwrap_or("")).is_some(),
            };
            assert!(same, "{task}: {key} is {got}, the protocol says {want}");
        }
        let root_of = |d: &str| at(&format!("data.{d}.root")).as_str().unwrap().to_string();
        assert!(root_of("source").ends_with(src), "{task}");
        assert!(root_of("target").ends_with(tgt), "{task}");
        assert!(root_of("target_test").ends_with(tgt), "{task}");
        assert_eq!(at("data.target.split"), "train", "{task}");
        assert_eq!(at("data.target_test.split"), "test", "{task}");
    }
}

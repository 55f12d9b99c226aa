//! `ebda train / eval` end to end on small fixture data written in the real
//! MNIST idx format: run-directory contents, bad configs, determinism, resume
//! after a kill, evaluation output, and a non-finite loss.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;

#[path = "run_fixture/mod.rs"]
mod run_fixture;

use ebda_testkit::metrics_without_timing;
use run_fixture::fixture;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn ebda(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args(["--threads", "1"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn train(cfg: &Path, out: &Path, sets: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    ebda(&args)
}

#[test]
fn train_writes_a_complete_run_directory_and_eval_reads_it() {
    let dir = common::temp_dir("train-e2e");
    let cfg = fixture(&dir);
    let run = dir.join("run");
    let out = train(&cfg, &run, &["method=ebda"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // stderr is a pipe here: log lines carry no colour codes.
    assert!(
        !text(&out.stderr).contains('\u{1b}'),
        "ANSI codes in piped logs"
    );
    assert!(
        text(&out.stderr).contains("target acc"),
        "{}",
        text(&out.stderr)
    );
    for f in [
        "config.json",
        "manifest.json",
        "metrics.jsonl",
        "summary.json",
        "train.log",
        "checkpoints/latest.json",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let ckpt = run.join("checkpoints/iter-00000040");
    for f in [
        "shared.safetensors",
        "critic.safetensors",
        "optim.safetensors",
        "critic_optim.safetensors",
        "state.json",
    ] {
        assert!(ckpt.join(f).is_file(), "missing checkpoint file {f}");
    }
    // keep_checkpoints = 2: iterations 30 and 40 remain.
    assert!(
        run.join("checkpoints/iter-00000030").is_dir()
            && !run.join("checkpoints/iter-00000020").exists()
    );
    let metrics = metrics_without_timing(&run);
    assert_eq!(
        metrics
            .iter()
            .map(|m| m["iteration"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![10, 20, 30, 40]
    );
    for key in [
        "target_acc",
        "source_acc",
        "target_energy",
        "source_energy",
        "energy_gap",
        "lambda",
        "lr",
        "margin",
        "proxy_a_distance",
    ] {
        assert!(
            metrics[3][key].is_number(),
            "metrics lack {key}: {}",
            metrics[3]
        );
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["headline"]["target_acc"], metrics[3]["target_acc"]);
    assert!(
        summary["oracle_best_on_target"]["what"]
            .as_str()
            .unwrap()
            .starts_with("ORACLE")
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 0);
    assert_eq!(
        manifest["dataset_files_sha256"].as_object().unwrap().len(),
        8
    );
    // The CPU the numbers came from (they are bit-reproducible per CPU kind).
    assert!(
        !manifest["cpu"]["model"].as_str().unwrap().is_empty(),
        "{manifest}"
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        manifest["cpu"]["simd"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "avx2"),
        std::arch::is_x86_feature_detected!("avx2"),
        "{manifest}"
    );
    let resolved: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        resolved["method"]["ebda"]["critic"]["energy"], "relative",
        "defaults are written out"
    );

    let out = ebda(&["eval", "--run", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("target test (mnist/test): accuracy")
            && stdout.contains("confusion matrix"),
        "{stdout}"
    );
    let acc = format!(
        "{:.2}%",
        summary["headline"]["target_acc"].as_f64().unwrap() * 100.0
    );
    assert!(
        stdout.contains(&acc),
        "eval reproduces the last-iterate accuracy {acc}: {stdout}"
    );
    let csv = std::fs::read_to_string(run.join("eval/target.csv")).unwrap();
    assert_eq!(csv.lines().count(), 61);
    assert!(csv.starts_with("index,label,prediction,correct,energy,domain_logit"));
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .split(',')
            .nth(4)
            .unwrap()
            .parse::<f32>()
            .is_ok(),
        "energy column filled"
    );

    // A second train into the same directory without --resume is refused.
    let again = train(&cfg, &run, &["method=ebda"]);
    assert!(!again.status.success() && text(&again.stderr).contains("already holds a run"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_config_exits_non_zero_with_the_key_path() {
    let dir = common::temp_dir("train-bad");
    let cfg = fixture(&dir);
    let out = train(
        &cfg,
        &dir.join("run"),
        &["method=ebda", "method.ebda.critic_steps=0"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("method.ebda.critic_steps: must be >= 1, got 0"),
        "{}",
        text(&out.stderr)
    );
    let out = train(&cfg, &dir.join("run"), &["data.source.root=/nonexistent"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("data.source: /nonexistent/train-images-idx3-ubyte.gz: file not found"),
        "{}",
        text(&out.stderr)
    );
    // A config that leaves source_test out gets the MNIST test set at its
    // default place; where that is missing, the error says how to opt out.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["data"].as_object_mut().unwrap().remove("source_test");
    let no_test = dir.join("no-source-test.json");
    std::fs::write(&no_test, v.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ebda"))
        .current_dir(&dir)
        .args(["--threads", "1", "train", "--no-progress", "--config"])
        .arg(&no_test)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("data.source_test: ../shared/data/mnist/t10k-images-idx3-ubyte.gz")
            && err.contains("set it to null"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_config_and_seed_twice_give_identical_metrics() {
    let dir = common::temp_dir("train-det");
    let cfg = fixture(&dir);
    for method in ["dann", "cdan", "cdan-energy", "ebda", "source-only"] {
        let set = format!("method={method}");
        let a = dir.join(format!("{method}-a"));
        let b = dir.join(format!("{method}-b"));
        assert!(train(&cfg, &a, &[&set]).status.success());
        assert!(train(&cfg, &b, &[&set]).status.success());
        assert_eq!(
            metrics_without_timing(&a),
            metrics_without_timing(&b),
            "{method}"
        );
        let c = dir.join(format!("{method}-c"));
        assert!(train(&cfg, &c, &[&set, "seed=1"]).status.success());
        assert_ne!(
            metrics_without_timing(&a),
            metrics_without_timing(&c),
            "{method}: the seed matters"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_run_resumes_to_the_same_final_metrics() {
    let dir = common::temp_dir("train-resume");
    let cfg = fixture(&dir);
    let long = ["method=ebda", "train.iterations=200"];
    let full = dir.join("full");
    assert!(train(&cfg, &full, &long).status.success());

    // Kill -9 as soon as the first checkpoint is published.
    let killed = dir.join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args([
            "--threads",
            "1",
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            killed.to_str().unwrap(),
            "--no-progress",
        ])
        .args(long.iter().flat_map(|s| ["--set", s]))
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pointer = killed.join("checkpoints/latest.json");
    let t0 = std::time::Instant::now();
    while !pointer.exists() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.join("summary.json").exists(),
        "the run finished before it could be killed"
    );
    let out = ebda(&[
        "train",
        "--resume",
        killed.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        metrics_without_timing(&killed),
        metrics_without_timing(&full)
    );

    // The same with a planned stop: --stop-after, then --resume.
    let stopped = dir.join("stopped");
    let mut args = vec![
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        stopped.to_str().unwrap(),
        "--no-progress",
        "--stop-after",
        "50",
    ];
    for s in &long {
        args.extend(["--set", s]);
    }
    assert!(ebda(&args).status.success());
    assert!(!stopped.join("summary.json").exists());
    assert!(
        ebda(&[
            "train",
            "--resume",
            stopped.to_str().unwrap(),
            "--no-progress"
        ])
        .status
        .success()
    );
    assert_eq!(
        metrics_without_timing(&stopped),
        metrics_without_timing(&full)
    );

    // A run directory of the older config layout (ebda 0.1: `"method":
    // "ebda"` beside `model.critic` and `adapt.critic_*`, a flat
    // `model.features` with `arch`) resumes to the same metrics.
    let legacy = dir.join("legacy");
    args[4] = legacy.to_str().unwrap();
    assert!(ebda(&args).status.success());
    let path = legacy.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ebda_section = c["method"]["ebda"].take();
    c["method"] = Value::from("ebda");
    c["model"]["critic"] = ebda_section["critic"].clone();
    for k in [
        "critic_steps",
        "critic_optim",
        "margin_schedule",
        "margin_start",
    ] {
        c["adapt"][k] = ebda_section[k].clone();
    }
    c["model"]["features"] = serde_json::json!({
        "arch": "lenet", "in_channels": null, "in_dim": 2048, "hidden": [500],
        "dropout": null, "spatial_dropout": true, "bottleneck": null
    });
    std::fs::write(&path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    let out = ebda(&[
        "train",
        "--resume",
        legacy.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        metrics_without_timing(&legacy),
        metrics_without_timing(&full)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_non_finite_loss_stops_the_run_with_a_clear_error() {
    let dir = common::temp_dir("train-nan");
    let cfg = fixture(&dir);
    let run = dir.join("run");
    let out = train(
        &cfg,
        &run,
        &[
            "method=source-only",
            "optim.lr=1e30",
            "optim.schedule=constant",
        ],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("non-finite") && err.contains("training stopped"),
        "{err}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["status"], "diverged",
        "recorded as diverged for reports"
    );
    assert!(
        !run.join("checkpoints/latest.json").exists(),
        "no checkpoint of a diverged model"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trace_records_each_steps_batches_generator_state_and_statistics() {
    let dir = common::temp_dir("train-trace");
    let cfg = fixture(&dir);
    let run = dir.join("run");
    let trace = dir.join("trace");
    let mut args = vec!["train", "--config", cfg.to_str().unwrap()];
    let run_s = run.to_str().unwrap().to_string();
    let trace_s = trace.to_str().unwrap().to_string();
    args.extend(["--out", &run_s, "--trace", &trace_s, "--stop-after", "3"]);
    for s in [
        "method=dann",
        "train.eval_every=1",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=5",
    ] {
        args.extend(["--set", s]);
    }
    args.push("--no-progress");
    let out = ebda(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = std::fs::read_to_string(trace.join("steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (k, line) in lines.iter().enumerate() {
        assert_eq!(line["iteration"], k);
        assert_eq!(line["source_indices"].as_array().unwrap().len(), 8);
        assert_eq!(line["target_indices"].as_array().unwrap().len(), 8);
        let stats = line["stats"].as_object().unwrap();
        assert!(stats["domain_loss"].as_f64().unwrap() > 0.0, "{line}");
        let lr = 0.01 * (1.0 + 10.0 * k as f64 / 40.0).powf(-0.75);
        assert!((line["lr"].as_f64().unwrap() - lr).abs() < 1e-12, "{line}");
        // Nothing draws between a step's end and the next checkpoint: the
        // generator state before step k is checkpoint k's.
        if k > 0 {
            let state: Value = serde_json::from_str(
                &std::fs::read_to_string(run.join(format!("checkpoints/iter-{k:08}/state.json")))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                line["rng_before"].to_string(),
                state["rng"].to_string(),
                "step {k}"
            );
        }
        // The batch is the fixture's samples at the recorded indices.
        let tensors = candle_core::safetensors::load(
            trace.join(format!("step-{k:08}.safetensors")),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert_eq!(tensors["source.inputs"].dims(), [8, 1, 28, 28]);
        assert_eq!(tensors["target.inputs"].dims(), [8, 1, 28, 28]);
        let labels: Vec<u32> = tensors["source.labels"].to_vec1().unwrap();
        let expected: Vec<u32> = line["source_indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| ((i.as_u64().unwrap() * 7 + 1) % 10) as u32)
            .collect();
        assert_eq!(labels, expected, "step {k}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

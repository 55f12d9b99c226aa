//! Figures of a real short run: M2U EBDA on the shared MNIST and USPS files,
//! drawn into the run's `plots/` when training ends and again by
//! `ebda report --plots`; the PNGs are decoded and checked.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../crates/ebda-report/tests/common/png.rs"]
mod png;

use std::process::Command;

#[test]
fn a_real_short_run_draws_its_figures() {
    let (Some(mnist), Some(usps)) = (common::real_data("mnist"), common::real_data("usps")) else {
        return;
    };
    let dir = common::temp_dir("plots-real");
    let run = dir.join("run");
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/digits/M2U-5k.json"
    );
    let (m, u) = (mnist.display(), usps.display());
    let sets = [
        "method=ebda".to_string(),
        format!("data.source.root={m}"),
        format!("data.source_test.root={m}"),
        format!("data.target.root={u}"),
        format!("data.target_test.root={u}"),
        "train.iterations=60".into(),
        "train.eval_every=20".into(),
        "train.checkpoint_every=60".into(),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebda"));
    cmd.args([
        "--threads",
        "1",
        "train",
        "--no-progress",
        "--config",
        config,
        "--out",
    ])
    .arg(&run);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Energy snapshots at the first and the last evaluation only.
    let mut snaps: Vec<String> = std::fs::read_dir(run.join("energies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    assert_eq!(snaps, ["iter-00000020.json", "iter-00000060.json"]);
    let snap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("energies/iter-00000060.json")).unwrap())
            .unwrap();
    assert_eq!(
        snap["source"].as_array().unwrap().len(),
        10_000,
        "MNIST t10k"
    );
    assert_eq!(snap["target"].as_array().unwrap().len(), 2007, "USPS test");

    let plots = run.join("plots");
    for (stem, size) in [
        ("accuracy", (1120, 420)),
        ("energy", (1120, 420)),
        ("energy-hist", (1120, 420)),
        ("proxy-a-distance", (840, 420)),
    ] {
        png::check_png(&plots.join(format!("{stem}.png")), Some(size));
        png::check_svg(&plots.join(format!("{stem}.svg")), &["M2U-5k ebda seed 0"]);
    }
    let losses = png::check_png(&plots.join("losses.png"), None);
    assert!(losses.width() >= 1120 && losses.height() > 420);

    let figures = dir.join("figures");
    let out = Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args(["report", "--plots"])
        .arg(&figures)
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| ebda |"));
    png::check_png(&figures.join("M2U-5k-accuracy.png"), Some((1120, 420)));
    png::check_png(
        &figures.join("M2U-5k-ebda-seed0-energy-hist.png"),
        Some((1120, 420)),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

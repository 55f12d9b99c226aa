//! Figures from run directories written with known metrics: the files, their
//! size, that they are drawn (ink, series colours, seed bands), and errors.

mod common;

use common::png::{check_png, check_svg, count_near};
use common::records::{complete, write_run_dir};
use ebda_records::{CriticEval, MetricsLine, read_metrics};
use ebda_report::{EnergySnapshot, find_runs, read_energies, report_plots, run_plots};
use ebda_testkit::temp_dir;
use std::path::{Path, PathBuf};

/// Baselines first, as `ebda report` orders methods by default.
fn order() -> Vec<String> {
    ["source-only", "dann", "ebda"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

const EBDA_RED: [u8; 3] = [0xd6, 0x27, 0x28];
const DANN_BLUE: [u8; 3] = [0x1f, 0x77, 0xb4];
/// EBDA red at 18 % over white: the seed band.
const EBDA_BAND: [u8; 3] = [248, 216, 216];

/// A complete run with curves that rise with the iteration and differ by seed.
fn write_run(root: &Path, method: &str, seed: u64, energies: bool) -> PathBuf {
    let dir = root.join(format!("M2U-{method}-seed{seed}"));
    let mut lines = Vec::new();
    for k in 1..=10u64 {
        let p = k as f64 / 10.0;
        let s = seed as f64;
        // Methods apart, so no line hides another.
        let m = if method == "dann" { -0.15 } else { 0.0 };
        let mut line = MetricsLine {
            iteration: k * 100,
            target_acc: 0.6 + 0.3 * p + 0.02 * s + m,
            source_acc: Some(0.9 + 0.05 * p + m / 5.0),
            proxy_a_distance: Some(1.9 - 0.5 * p - 0.05 * s),
            train: [
                ("ce".to_string(), 1.0 - 0.8 * p),
                ("loss".to_string(), 1.2 - 0.7 * p),
            ]
            .into(),
            ..MetricsLine::default()
        };
        if method == "ebda" {
            line.critic = Some(CriticEval {
                margin: 1.0,
                target_energy: 0.8 - 0.3 * p + 0.02 * s,
                source_energy: Some(0.3),
                energy_gap: Some(0.5 - 0.3 * p + 0.02 * s),
            });
            line.train.insert("critic_loss".into(), 0.8 + 0.1 * p);
        }
        lines.push(line);
    }
    let summary = complete("M2U", method, seed, 1000, lines.last().unwrap());
    write_run_dir(&dir, ("M2U", method, seed, 1000), &lines, Some(&summary));
    if energies {
        std::fs::create_dir_all(dir.join("energies")).unwrap();
        for (it, shift) in [(100u64, 0.6f32), (1000, 0.1)] {
            // Source energies low; target higher, closer at the end.
            let source: Vec<f32> = (0..500)
                .map(|i| 0.2 + 0.2 * ((i * 37 % 100) as f32 / 100.0))
                .collect();
            let target: Vec<f32> = (0..400)
                .map(|i| 0.2 + shift + 0.3 * ((i * 53 % 100) as f32 / 100.0))
                .collect();
            let snap = EnergySnapshot {
                iteration: it,
                source,
                target,
            };
            std::fs::write(
                dir.join("energies").join(EnergySnapshot::file_name(it)),
                serde_json::to_vec(&snap).unwrap(),
            )
            .unwrap();
        }
    }
    dir
}

#[test]
fn one_run_gets_every_figure_as_png_and_svg() {
    let root = temp_dir("run");
    let run = write_run(&root, "ebda", 0, true);
    let files = run_plots(&run, &order()).unwrap();
    let plots = run.join("plots");
    for stem in [
        "accuracy",
        "losses",
        "energy",
        "proxy-a-distance",
        "energy-hist",
    ] {
        assert!(
            files.contains(&plots.join(format!("{stem}.png"))),
            "{stem}.png"
        );
        assert!(
            files.contains(&plots.join(format!("{stem}.svg"))),
            "{stem}.svg"
        );
    }
    assert_eq!(files.len(), 10);
    // Two panels side by side: 2 × 560 wide, title + one row of 380.
    let acc = check_png(&plots.join("accuracy.png"), Some((1120, 420)));
    assert!(
        count_near(&acc, EBDA_RED, 2) > 200,
        "the EBDA line is drawn"
    );
    check_svg(
        &plots.join("accuracy.svg"),
        &["target test accuracy", "M2U ebda seed 0"],
    );
    let hist = check_png(&plots.join("energy-hist.png"), Some((1120, 420)));
    // Bars: source blue and target red at 35 % over white, both present.
    let bar = |c: [u8; 3]| c.map(|v| (0.35 * f64::from(v) + 0.65 * 255.0).round() as u8);
    assert!(count_near(&hist, bar(DANN_BLUE), 3) > 1000, "source bars");
    assert!(count_near(&hist, bar(EBDA_RED), 3) > 1000, "target bars");
    check_svg(
        &plots.join("energy-hist.svg"),
        &["iteration 100", "iteration 1000", "source test (n=500)"],
    );
    // One panel: the minimum width.
    check_png(&plots.join("proxy-a-distance.png"), Some((840, 420)));
    // Three training statistics: three panels in a row.
    check_png(&plots.join("losses.png"), Some((1680, 420)));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn report_plots_average_seeds_with_a_band_per_method() {
    let root = temp_dir("report");
    for seed in 0..3 {
        write_run(&root, "ebda", seed, seed == 0);
        write_run(&root, "dann", seed, false);
    }
    let runs = find_runs(std::slice::from_ref(&root)).unwrap();
    let out = root.join("figures");
    let files = report_plots(
        &runs,
        &out,
        &["source-only".into(), "dann".into(), "ebda".into()],
    )
    .unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for n in [
        "M2U-accuracy.png",
        "M2U-losses.svg",
        "M2U-energy.png",
        "M2U-proxy-a-distance.png",
        "M2U-ebda-seed0-energy-hist.png",
    ] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    // Energy histograms only for the run that has snapshots.
    assert!(!names.iter().any(|n| n.contains("seed1-energy-hist")));
    let acc = check_png(&out.join("M2U-accuracy.png"), Some((1120, 420)));
    assert!(count_near(&acc, EBDA_RED, 2) > 200, "EBDA mean line");
    assert!(count_near(&acc, DANN_BLUE, 2) > 200, "DANN mean line");
    assert!(
        count_near(&acc, EBDA_BAND, 3) > 500,
        "EBDA seeds differ: a band"
    );
    check_svg(&out.join("M2U-accuracy.svg"), &["ebda (n=3)", "dann (n=3)"]);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn curves_and_bad_snapshots() {
    let root = temp_dir("bad");
    let run = write_run(&root, "ebda", 1, true);
    let c = read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(c.len(), 10);
    assert!((c[9].train["ce"] - 0.2).abs() < 1e-12);
    assert_eq!(read_energies(&run).unwrap().len(), 2);
    let bad = run.join("energies/iter-00000500.json");
    std::fs::write(&bad, "{\"iteration\": 500}").unwrap();
    let e = read_energies(&run).unwrap_err().to_string();
    assert!(
        e.contains("iter-00000500.json") && e.contains("not an energy snapshot"),
        "{e}"
    );
    std::fs::write(run.join("metrics.jsonl"), "{\"target_acc\": 0.5}\n").unwrap();
    let e = read_metrics(&run.join("metrics.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("metrics.jsonl") && e.contains("line 1"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

//! Aggregation on run directories written with known metrics.

mod common;

use common::records::{complete as complete_summary, line, write_run_dir};
use ebda_records::Summary;
use ebda_report::{Status, aggregate, find_runs, mean_std};
use ebda_testkit::temp_dir;
use std::path::Path;

/// Baselines first, as `ebda report` orders them by default.
fn order() -> Vec<String> {
    ["source-only", "dann", "ebda"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A run planned for `planned` iterations with target accuracies `accs` at
/// evenly spaced evaluations ending at `planned` if `complete`, else at 100, 200, ….
fn write_run_for(
    root: &Path,
    task: &str,
    method: &str,
    seed: u64,
    accs: &[f64],
    complete: bool,
    planned: u64,
) {
    let dir = root.join(format!("{task}-{method}-seed{seed}"));
    let n = accs.len() as u64;
    let lines: Vec<_> = accs
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let it = if complete {
                planned * (i as u64 + 1) / n
            } else {
                100 * (i as u64 + 1)
            };
            line(it, a)
        })
        .collect();
    let summary =
        complete.then(|| complete_summary(task, method, seed, planned, lines.last().unwrap()));
    write_run_dir(
        &dir,
        (task, method, seed, planned),
        &lines,
        summary.as_ref(),
    );
}

fn write_run(root: &Path, task: &str, method: &str, seed: u64, accs: &[f64], complete: bool) {
    write_run_for(root, task, method, seed, accs, complete, 600);
}

#[test]
fn mean_std_by_hand() {
    // [0.80, 0.84, 0.88]: mean 0.84, sample std sqrt((0.0016 + 0 + 0.0016)/2) = 0.04.
    let (m, s) = mean_std(&[0.80, 0.84, 0.88]).unwrap();
    assert!((m - 0.84).abs() < 1e-12 && (s - 0.04).abs() < 1e-12);
    assert_eq!(mean_std(&[0.5]), Some((0.5, 0.0)));
    assert_eq!(mean_std(&[]), None);
}

#[test]
fn groups_by_task_and_method_with_labelled_oracle_and_flags() {
    let root = temp_dir("agg");
    // M2U ebda: last 0.80 / 0.84 / 0.88, bests 0.90 / 0.86 / 0.88.
    write_run(&root, "M2U", "ebda", 0, &[0.5, 0.9, 0.80], true);
    write_run(&root, "M2U", "ebda", 1, &[0.86, 0.84], true);
    write_run(&root, "M2U", "ebda", 2, &[0.88], true);
    // M2U source-only: one complete (0.70), one incomplete (not averaged).
    write_run(&root, "M2U", "source-only", 0, &[0.6, 0.7], true);
    write_run(&root, "M2U", "source-only", 1, &[0.99], false);
    // U2M ebda: 0.90.
    write_run(&root, "U2M", "ebda", 0, &[0.90], true);
    let runs = find_runs(std::slice::from_ref(&root)).unwrap();
    assert_eq!(runs.len(), 6);
    let table = aggregate(&runs, &order());
    assert_eq!(table.tasks, vec!["M2U", "U2M"]);
    assert_eq!(
        table.methods,
        vec!["source-only", "ebda"],
        "baselines first"
    );
    let cell = |t: &str, m: &str| {
        table
            .cells
            .iter()
            .find(|c| c.task == t && c.method == m)
            .unwrap()
    };
    let e = cell("M2U", "ebda");
    assert_eq!((e.n, e.total), (3, 3));
    assert!((e.mean.unwrap() - 0.84).abs() < 1e-12 && (e.std.unwrap() - 0.04).abs() < 1e-12);
    // Oracle: bests 0.90, 0.86, 0.88 → mean 0.88, std 0.02.
    assert!(
        (e.oracle_mean.unwrap() - 0.88).abs() < 1e-12
            && (e.oracle_std.unwrap() - 0.02).abs() < 1e-12
    );
    let s = cell("M2U", "source-only");
    assert_eq!((s.n, s.total), (1, 2));
    assert_eq!(
        s.mean,
        Some(0.7),
        "the incomplete run's 0.99 is not averaged"
    );
    assert_eq!(table.flagged.len(), 1);
    assert_eq!(table.flagged[0].status, Status::Incomplete);

    let md = table.markdown();
    assert!(
        md.contains("| ebda | 84.0 ± 4.0 | 90.0 ± 0.0 | 87.0 |"),
        "{md}"
    );
    assert!(
        md.contains("| source-only | 70.0 ± 0.0 (1 of 2 runs) | — | — |"),
        "{md}"
    );
    assert!(
        md.contains("ORACLE") && md.contains("| ebda | 88.0 ± 2.0 | 90.0 ± 0.0 | 89.0 |"),
        "{md}"
    );
    assert!(
        md.contains("Flagged runs, not averaged")
            && md.contains("Incomplete at iteration 100 of 600"),
        "{md}"
    );
    let csv = table.csv();
    assert!(
        csv.contains("M2U,ebda,3,3,0 1 2,84.0000,4.0000,88.0000,2.0000"),
        "{csv}"
    );
    assert_eq!(table.json()["cells"].as_array().unwrap().len(), 3);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn diverged_runs_are_flagged_and_bad_input_is_named() {
    let root = temp_dir("bad");
    write_run(&root, "M2U", "dann", 0, &[0.5], true);
    let dir = root.join("M2U-dann-seed0");
    let diverged = Summary::Diverged {
        iteration: 1,
        error: "non-finite loss".into(),
    };
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string(&diverged).unwrap(),
    )
    .unwrap();
    let table = aggregate(&find_runs(std::slice::from_ref(&root)).unwrap(), &order());
    assert_eq!(table.flagged[0].status, Status::Diverged);
    assert!(table.markdown().contains("— (0 of 1 runs complete)"));
    let first = line(1, 0.5).to_json_line();
    std::fs::write(dir.join("metrics.jsonl"), format!("{first}\nnot json\n")).unwrap();
    let err = find_runs(std::slice::from_ref(&root))
        .unwrap_err()
        .to_string();
    assert!(err.contains("metrics.jsonl: line 2"), "{err}");
    let empty = temp_dir("empty");
    assert!(
        find_runs(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string()
            .contains("no run directories")
    );
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn runs_of_different_lengths_are_separate_columns() {
    let root = temp_dir("lengths");
    write_run_for(&root.join("a"), "U2M", "ebda", 0, &[0.5, 0.8], true, 200);
    write_run_for(
        &root.join("b"),
        "U2M",
        "ebda",
        0,
        &[0.5, 0.6, 0.9],
        true,
        300,
    );
    let table = aggregate(&find_runs(std::slice::from_ref(&root)).unwrap(), &order());
    assert_eq!(table.tasks, vec!["U2M @200", "U2M @300"]);
    assert!(
        table
            .markdown()
            .contains("| ebda | 80.0 ± 0.0 | 90.0 ± 0.0 | 85.0 |"),
        "{}",
        table.markdown()
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_label_makes_its_own_row_after_its_method() {
    let root = temp_dir("label");
    write_run(&root, "A2W", "cdan", 0, &[0.5, 0.6], true);
    write_run(&root, "A2W", "ebda", 0, &[0.5, 0.7], true);
    // A cdan run with entropy conditioning, labelled cdan+e in its config.
    let dir = root.join("A2W-cdan+e-seed0");
    write_run(&root, "A2W", "cdan+e", 0, &[0.5, 0.8], true);
    let cfg = serde_json::json!({"task": "A2W", "method": {"cdan": {"entropy": true}},
        "label": "cdan+e", "seed": 0, "train": {"iterations": 600}});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let runs = find_runs(std::slice::from_ref(&root)).unwrap();
    let order: Vec<String> = ["source-only", "dann", "cdan", "ebda"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let table = aggregate(&runs, &order);
    assert_eq!(table.methods, ["cdan", "cdan+e", "ebda"]);
    let md = table.markdown();
    assert!(md.contains("| cdan+e | 80.0"), "{md}");
    assert!(md.contains("| cdan | 60.0"), "{md}");
}

//! Run directories for tests, written through the record types the trainer
//! writes (`ebda_records`): a renamed field breaks these tests at compile time.

use ebda_records::{Complete, MetricsLine, Selection, Summary};
use std::path::Path;

/// A metrics line with the given iteration and target accuracy.
pub fn line(iteration: u64, target_acc: f64) -> MetricsLine {
    MetricsLine {
        iteration,
        target_acc,
        ..MetricsLine::default()
    }
}

/// The summary of a complete run ending at `last`.
pub fn complete(task: &str, method: &str, seed: u64, planned: u64, last: &MetricsLine) -> Summary {
    let select = |what: &str| Selection {
        what: what.into(),
        target_acc: last.target_acc,
        source_acc: last.source_acc,
        iteration: last.iteration,
    };
    Summary::Complete(Box::new(Complete {
        task: task.into(),
        method: method.into(),
        seed,
        iterations: planned,
        headline: select("last"),
        oracle_best_on_target: select("oracle"),
        selected_by_source_acc: None,
        evaluations: 1,
        wall_seconds: 10.0,
        train_seconds: 9.0,
        train_images_per_s: 1000.0,
    }))
}

/// Writes `config.json` (its head: task, method, seed, iterations),
/// `metrics.jsonl` and, if given, `summary.json` into `dir`.
pub fn write_run_dir(
    dir: &Path,
    (task, method, seed, planned): (&str, &str, u64, u64),
    lines: &[MetricsLine],
    summary: Option<&Summary>,
) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({"task": task, "method": method, "seed": seed, "train": {"iterations": planned}});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let text: Vec<String> = lines.iter().map(MetricsLine::to_json_line).collect();
    std::fs::write(dir.join("metrics.jsonl"), text.join("\n") + "\n").unwrap();
    if let Some(s) = summary {
        std::fs::write(dir.join("summary.json"), serde_json::to_string(s).unwrap()).unwrap();
    }
}

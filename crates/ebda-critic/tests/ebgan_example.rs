//! The EBGAN example (`examples/ebgan_mnist.rs`) runs a short training on the
//! real MNIST and writes what it promises. `cargo test` builds the examples
//! before it runs the tests, so the binary sits beside this test's.

use std::path::PathBuf;
use std::process::Command;

fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/ebgan_example-<hash> → target/<profile>/examples/
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile
        .join("examples")
        .join(format!("ebgan_mnist{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} missing: run through `cargo test`, which builds the examples",
        bin.display()
    );
    bin
}

#[test]
fn short_ebgan_run_writes_grids_energies_and_scores() {
    let Some(mnist) = ebda_testkit::real_data("mnist-full") else {
        return;
    };
    let out = ebda_testkit::temp_dir("ebgan");
    let status = Command::new(example_binary())
        .args(["--data", mnist.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args([
            "--iterations",
            "120",
            "--log-every",
            "20",
            "--snapshots",
            "40",
        ])
        .args(["--classifier-iterations", "150", "--eval-samples", "500"])
        .status()
        .expect("run the example");
    assert!(status.success(), "example failed: {status}");

    for grid in ["grid-40.png", "grid-120.png"] {
        let img = image::open(out.join(grid)).unwrap_or_else(|e| panic!("{grid}: {e}"));
        // 10 × 10 tiles of 28 px, 2 px apart, scaled ×2.
        assert_eq!((img.width(), img.height()), (604, 604), "{grid}");
    }
    assert!(out.join("energy.png").exists() && out.join("energy.svg").exists());

    let csv = std::fs::read_to_string(out.join("energy.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 6, "one row per 20 iterations:\n{csv}");
    // The critic learns to reconstruct real digits: their energy falls from
    // the first window to the last. (Generated samples start below the real
    // ones — the untrained generator's flat images are easy to reconstruct —
    // so no order between the two is asserted this early.)
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    assert!(
        last[1] < 0.8 * first[1],
        "real energy did not fall: {first:?} → {last:?}"
    );
    assert!(rows.iter().flatten().all(|v| v.is_finite()), "{csv}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // 150 LeNet steps already classify real digits well above chance.
    let acc = summary["classifier_test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.8, "classifier accuracy {acc}");
    for set in ["generated", "real_test"] {
        let s = &summary[set];
        let hist: Vec<f64> = s["class_histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(hist.len(), 10);
        assert!(
            (hist.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{set}: {hist:?}"
        );
        let h = s["class_entropy"].as_f64().unwrap();
        assert!((0.0..=10f64.ln() + 1e-9).contains(&h), "{set}: entropy {h}");
        let score = s["digits_score"].as_f64().unwrap();
        assert!(
            (1.0 - 1e-9..=10.0 + 1e-9).contains(&score),
            "{set}: score {score}"
        );
    }
    // Real test digits are all ten classes in near-equal shares.
    assert!(summary["real_test"]["class_entropy"].as_f64().unwrap() > 2.2);

    // The table of the README, from the summaries below a directory.
    let table = Command::new(example_binary())
        .args(["--report", out.to_str().unwrap()])
        .output()
        .expect("run the example");
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    let entropy = summary["generated"]["class_entropy"].as_f64().unwrap();
    assert!(
        table.contains(&format!(
            "| EBGAN-PT: D(G(z)) + 0.1 · PT | 1 | {entropy:.3} ± 0.000 |"
        )),
        "{table}"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let out = Command::new(example_binary())
        .args(["--data", "/nonexistent/mnist", "--out"])
        .arg(ebda_testkit::temp_dir("ebgan-args"))
        .output()
        .expect("run the example");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/mnist"), "stderr: {err}");

    let out = Command::new(example_binary())
        .args(["--eval-samples", "10"])
        .output()
        .expect("run the example");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--eval-samples"), "stderr: {err}");
}

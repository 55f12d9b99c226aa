//! End-to-end tests of the `ebda` binary.

use std::process::{Command, Output};

fn ebda(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("cannot run the ebda binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_show_prints_resolved_json_with_the_override() {
    let out = ebda(&["config", "show", "--set", "method.ebda.critic.margin=2.5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(cfg["method"]["ebda"]["critic"]["margin"], 2.5);
    // Defaults are filled in.
    assert_eq!(cfg["method"]["ebda"]["critic"]["energy"], "relative");
    assert!(cfg["model"]["features"]["backbone"]["lenet"].is_object());
}

#[test]
fn config_show_reads_a_file_then_applies_overrides() {
    let dir = std::env::temp_dir().join(format!("ebda-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("exp.json");
    std::fs::write(
        &file,
        r#"{"seed": 4, "method": {"ebda": {"critic": {"pull_away_weight": 0.5}}}}"#,
    )
    .unwrap();
    let out = ebda(&[
        "config",
        "show",
        "--config",
        file.to_str().unwrap(),
        "--set",
        "seed=9",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["seed"], 9);
    assert_eq!(cfg["method"]["ebda"]["critic"]["pull_away_weight"], 0.5);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_key_exits_non_zero_with_the_key_path() {
    let out = ebda(&["config", "show", "--set", "method.ebda.critic.margn=1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("method.ebda.critic.margn: unknown field `margn`, expected one of"),
        "{err}"
    );
}

#[test]
fn invalid_value_exits_non_zero_with_the_key_path() {
    let out = ebda(&["config", "show", "--set", "method.ebda.critic.margin=-1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("method.ebda.critic.margin: must be > 0, got -1"),
        "{err}"
    );
    let out = ebda(&["config", "show", "--set", "method.ebda.critic.margin=wide"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("method.ebda.critic.margin: invalid type: string \"wide\""));
}

#[test]
fn devices_on_a_cpu_build_say_cuda_is_not_compiled_in() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = ebda(&["devices"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("cpu: available"), "{stdout}");
    assert!(stdout.contains("cuda: not compiled in"), "{stdout}");
    assert!(stdout.contains("--device auto selects: cpu"), "{stdout}");

    let out = ebda(&["--device", "cuda", "devices"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("built without CUDA support"), "{err}");
}

#[test]
fn bad_device_and_threads_are_usage_errors() {
    let out = ebda(&["--device", "gpu", "devices"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected auto, cpu, cuda or cuda:N"));
    let out = ebda(&["--threads", "0", "devices"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_runs_without_data() {
    // A few iterations only: the full demo (400 iterations) is timed by hand.
    let dir = std::env::temp_dir().join(format!("ebda-demo-{}", std::process::id()));
    let out = ebda(&[
        "--threads",
        "1",
        "demo",
        "--iterations",
        "8",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("source-only  target accuracy")
            && stdout.contains("ebda         target accuracy"),
        "{stdout}"
    );
    for f in [
        "source.png",
        "target.png",
        "ebda/summary.json",
        "source-only/summary.json",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

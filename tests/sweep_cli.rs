//! `ebda sweep` on this machine: a `tasks` axis made from one config by
//! overrides, and `--task` / `--method` selecting part of the grid.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;

#[path = "run_fixture/mod.rs"]
mod run_fixture;

use serde_json::Value;
use std::process::Command;

const EBDA: &str = env!("CARGO_BIN_EXE_ebda");

fn plan(sweep: &std::path::Path) -> Vec<Value> {
    let out = Command::new(EBDA)
        .args(["sweep", "plan", "--json"])
        .arg(sweep)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_selection_runs_only_its_runs_and_tasks_set_their_data() {
    let dir = common::temp_dir("sweep-cli");
    let cfg = run_fixture::fixture(&dir);
    let (src, tgt) = (dir.join("src"), dir.join("tgt"));
    let sweep = dir.join("sweep.json");
    let v = serde_json::json!({
        "out": dir.join("out"),
        "configs": [cfg],
        "tasks": [
            {"task": "fwd", "set": {}},
            {"task": "rev", "set": {
                "data.source.root": tgt, "data.source_test.root": tgt,
                "data.target.root": src, "data.target_test.root": src}}
        ],
        "methods": ["source-only", "ebda"],
        "seeds": [0],
        "set": {"train.iterations": 20, "train.eval_every": 10, "train.checkpoint_every": 10}
    });
    std::fs::write(&sweep, v.to_string()).unwrap();
    let names: Vec<String> = plan(&sweep)
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "fwd-source-only-seed0",
            "fwd-ebda-seed0",
            "rev-source-only-seed0",
            "rev-ebda-seed0"
        ]
    );

    let out = Command::new(EBDA)
        .args(["--threads", "1", "sweep", "run", "--jobs", "2"])
        .arg(&sweep)
        .args(["--task", "rev", "--method", "ebda"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("1 runs (selected of 4)"), "{err}");
    let status: Vec<(String, String)> = plan(&sweep)
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(status[3], ("rev-ebda-seed0".into(), "done".into()));
    for s in &status[..3] {
        assert_eq!(s.1, "pending", "{s:?}");
    }
    // The run trained on the task's data: its config names the swapped roots.
    let run_cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/rev-ebda-seed0/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(run_cfg["task"], "rev");
    assert_eq!(run_cfg["data"]["source"]["root"], tgt.to_str().unwrap());
    assert_eq!(run_cfg["data"]["target"]["root"], src.to_str().unwrap());

    // A selection that names nothing in the sweep is refused, listing what is there.
    let out = Command::new(EBDA)
        .args(["sweep", "plan"])
        .arg(&sweep)
        .args(["--task", "sideways"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no run has task \"sideways\"") && err.contains("fwd, rev"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `ebda sweep` against a real SLURM: a one-node cluster on this machine
//! (`scripts/slurm-local.sh`: Debian's slurm-wlm + munge, as root) runs a
//! sweep as a job array; every run must equal the same run made by
//! `ebda sweep run` (CPU runs are deterministic at a fixed thread count).
//! One array task is cancelled mid-run (SIGTERM: the run checkpoints),
//! requeued, and must resume to the uninterrupted run's metrics.
//!
//! Where SLURM cannot run (not root, packages missing) the test says so
//! loudly and passes, unless `EBDA_REQUIRE_SLURM=1` (CI) makes it fail.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;

#[path = "run_fixture/mod.rs"]
mod run_fixture;

use ebda_testkit::metrics_without_timing;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const EBDA: &str = env!("CARGO_BIN_EXE_ebda");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-local.sh");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Why SLURM cannot be started here, if it cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (munged and slurmd need it)".into());
    }
    for bin in [
        "slurmctld",
        "slurmd",
        "munged",
        "sbatch",
        "squeue",
        "scontrol",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{bin} not found (install with `scripts/slurm-local.sh install`)"
            ));
        }
    }
    None
}

/// The cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        // A port of its own, so a machine's SLURM and parallel runs do not meet.
        let port = 20000 + std::process::id() % 20000;
        let out = Command::new("bash")
            .args([SCRIPT, "start"])
            .arg(dir)
            .env("SLURM_LOCAL_PORT", port.to_string())
            .output()
            .unwrap();
        eprintln!("{}", ok(out, "slurm-local.sh start").trim());
        Self {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
        }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Runs a SLURM client command and returns its stdout.
    fn client(&self, program: &str, args: &[&str]) -> String {
        ok(
            self.cmd(program).args(args).output().unwrap(),
            &format!("{program} {}", args.join(" ")),
        )
    }

    fn job_state(&self, job: &str) -> String {
        let out = self.client("scontrol", &["show", "job", job]);
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("JobState="))
            .unwrap_or("?")
            .to_string()
    }

    /// Waits until no job of `jobs` is pending or running.
    fn wait_idle(&self, jobs: &[&str], timeout: Duration) {
        let t0 = Instant::now();
        loop {
            let q = self.client("squeue", &["-h", "-j", &jobs.join(","), "-o", "%i %T"]);
            if q.trim().is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < timeout,
                "jobs still queued after {timeout:?}:\n{q}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd("scancel").args(["-u", "root"]).output();
        let _ = Command::new("bash")
            .args([SCRIPT, "stop"])
            .arg(&self.dir)
            .output();
    }
}

fn write_sweep(path: &Path, out: &Path, cfg: &Path, methods: &[&str], seeds: &[u64], set: Value) {
    let v = serde_json::json!({
        "out": out,
        "configs": [cfg],
        "methods": methods,
        "seeds": seeds,
        "set": set,
    });
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn plan(sweep: &Path) -> Vec<Value> {
    let out = Command::new(EBDA)
        .args(["sweep", "plan", "--json"])
        .arg(sweep)
        .output()
        .unwrap();
    ok(out, "ebda sweep plan")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn latest_iteration(run: &Path) -> u64 {
    std::fs::read_to_string(run.join("checkpoints/latest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["iteration"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_sweep_runs_as_a_slurm_job_array_and_a_cancelled_task_resumes_after_requeue() {
    if let Some(why) = unavailable() {
        let msg = format!("SLURM TEST NOT RUN: {why}");
        if std::env::var("EBDA_REQUIRE_SLURM").as_deref() == Ok("1") {
            panic!("{msg} (EBDA_REQUIRE_SLURM=1)");
        }
        eprintln!("\n**********\n{msg}\n**********\n");
        return;
    }
    let t0 = Instant::now();
    let dir = common::temp_dir("slurm");
    let cfg = run_fixture::fixture(&dir);
    let cluster = Cluster::start(&dir.join("cluster"));

    // The grid: 2 methods × 2 seeds; and one longer run to cancel.
    let grid_set = serde_json::json!({"train.iterations": 100, "train.eval_every": 20, "train.checkpoint_every": 20});
    let long_set = serde_json::json!({"train.iterations": 600, "train.eval_every": 20, "train.checkpoint_every": 20});
    let grid = dir.join("grid.json");
    let long = dir.join("long.json");
    write_sweep(
        &grid,
        &dir.join("slurm-grid"),
        &cfg,
        &["source-only", "ebda"],
        &[0, 1],
        grid_set.clone(),
    );
    write_sweep(
        &long,
        &dir.join("slurm-long"),
        &cfg,
        &["ebda"],
        &[3],
        long_set.clone(),
    );

    let submit = |sweep: &Path, extra: &[&str]| -> String {
        let out = cluster
            .cmd(EBDA)
            .args(["sweep", "slurm"])
            .arg(sweep)
            .args(["--cpus", "1", "--submit"])
            .args(extra)
            .output()
            .unwrap();
        let id = ok(out, "ebda sweep slurm --submit").trim().to_string();
        assert!(
            id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty(),
            "job id {id:?}"
        );
        id
    };
    let long_job = submit(&long, &[]);
    let grid_job = submit(&grid, &["--concurrency", "1"]);
    let script = std::fs::read_to_string(dir.join("slurm-grid/.sweep/sweep.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --array=0-3%1") && script.contains("--requeue"),
        "{script}"
    );

    // Cancel the long run once it has written a checkpoint (scancel sends
    // SIGTERM: the run checkpoints at the next step and exits 143).
    let long_run = dir.join("slurm-long/fixture-ebda-seed3");
    let task = format!("{long_job}_0");
    let t = Instant::now();
    while latest_iteration(&long_run) < 60 {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the long run never checkpointed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.client("scancel", &[&task]);
    let t = Instant::now();
    while cluster.job_state(&task) != "CANCELLED" {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{task} not cancelled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped_at = latest_iteration(&long_run);
    assert!(stopped_at < 600, "cancelled after the end");
    let log =
        std::fs::read_to_string(dir.join(format!("slurm-long/.sweep/slurm/{long_job}_0.out")))
            .unwrap();
    assert!(log.contains("stopped by signal 15"), "{log}");
    assert!(
        !long_run.join("summary.json").exists() || {
            let s = std::fs::read_to_string(long_run.join("summary.json")).unwrap();
            !s.contains("complete")
        }
    );
    // Requeue it (and let it start now rather than after slurm's requeue delay).
    cluster.client("scontrol", &["requeue", &task]);
    cluster.client(
        "scontrol",
        &["update", &format!("jobid={task}"), "starttime=now"],
    );
    // Wait for the requeued task itself to complete: right after a requeue
    // the task can be missing from squeue for a moment, so an empty queue
    // alone does not mean it has run.
    let t = Instant::now();
    loop {
        match cluster.job_state(&task).as_str() {
            "COMPLETED" => break,
            s @ ("FAILED" | "TIMEOUT" | "NODE_FAIL" | "OUT_OF_MEMORY") => {
                panic!("the requeued task ended {s}")
            }
            s => assert!(
                t.elapsed() < Duration::from_secs(600),
                "the requeued task is still {s} after 600 s"
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.wait_idle(&[&long_job, &grid_job], Duration::from_secs(600));
    let log =
        std::fs::read_to_string(dir.join(format!("slurm-long/.sweep/slurm/{long_job}_0.out")))
            .unwrap();
    assert!(
        log.contains("--resume"),
        "the requeued task did not resume:\n{log}"
    );

    // Every run finished, by the sweep's own account.
    for sweep in [&grid, &long] {
        for run in plan(sweep) {
            assert_eq!(run["status"], "done", "{run}");
        }
    }

    // The same sweeps on this machine (one thread, as the array tasks).
    let local_grid = dir.join("local-grid.json");
    let local_long = dir.join("local-long.json");
    write_sweep(
        &local_grid,
        &dir.join("local-grid"),
        &cfg,
        &["source-only", "ebda"],
        &[0, 1],
        grid_set,
    );
    write_sweep(
        &local_long,
        &dir.join("local-long"),
        &cfg,
        &["ebda"],
        &[3],
        long_set,
    );
    for sweep in [&local_grid, &local_long] {
        let out = Command::new(EBDA)
            .args(["--threads", "1", "sweep", "run", "--jobs", "2"])
            .arg(sweep)
            .output()
            .unwrap();
        ok(out, "ebda sweep run");
    }
    let mut compared = 0;
    for (slurm_root, local_root) in [("slurm-grid", "local-grid"), ("slurm-long", "local-long")] {
        for run in plan(&dir.join(format!("{local_root}.json"))) {
            let name = run["name"].as_str().unwrap();
            assert_eq!(
                metrics_without_timing(&dir.join(slurm_root).join(name)),
                metrics_without_timing(&dir.join(local_root).join(name)),
                "{name}: SLURM and local runs differ"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 5);

    // `ebda report` over the array's output root gives the grid's table.
    let out = Command::new(EBDA)
        .arg("report")
        .arg(dir.join("slurm-grid"))
        .output()
        .unwrap();
    let table = ok(out, "ebda report");
    assert!(
        table.contains("| source-only |") && table.contains("| ebda |"),
        "{table}"
    );
    eprintln!(
        "SLURM test: long run cancelled at iteration {stopped_at} and resumed; {compared} runs equal; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    drop(cluster);
    // The daemons may still be closing their logs in `dir` for a moment.
    for attempt in 0.. {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => break,
            Err(e) if attempt >= 20 => {
                eprintln!("could not remove {}: {e}", dir.display());
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

//! Runs that meet faults: damaged checkpoints, signals, a second process on
//! the same run directory, repeated `kill -9`, a full disk — and memory that
//! must not grow with the step count. Each ends, after `--resume` where that
//! applies, with the metrics of an uninterrupted run.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;
#[path = "run_fixture/mod.rs"]
mod run_fixture;

use ebda_testkit::metrics_without_timing;
use run_fixture::fixture;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ebda() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ebda"));
    c.args(["--threads", "1"]).env_remove("RUST_LOG");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn train_args(cfg: &Path, out: &Path, sets: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--config", cfg.to_str().unwrap()]
        .map(String::from)
        .into();
    a.extend([
        "--out".into(),
        out.to_str().unwrap().into(),
        "--no-progress".into(),
    ]);
    for s in sets {
        a.extend(["--set".into(), s.to_string()]);
    }
    a
}

fn run(args: &[String]) -> Output {
    ebda().args(args).output().unwrap()
}

fn resume(dir: &Path) -> Output {
    ebda()
        .args(["train", "--resume", dir.to_str().unwrap(), "--no-progress"])
        .output()
        .unwrap()
}

fn spawn(args: &[String]) -> Child {
    ebda()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path, limit_s: u64) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed().as_secs() < limit_s,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

fn checkpoint_dirs(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("iter-")
                && !p.to_string_lossy().ends_with(".partial")
        })
        .collect();
    v.sort();
    v
}

/// An uninterrupted reference run of `sets` (the metrics every faulted run
/// must end with).
fn reference(cfg: &Path, dir: &Path, sets: &[&str]) -> PathBuf {
    let full = dir.join("full");
    let out = run(&train_args(cfg, &full, sets));
    assert!(out.status.success(), "{}", text(&out.stderr));
    full
}

#[test]
fn a_damaged_checkpoint_is_detected_and_the_previous_one_used() {
    let dir = common::temp_dir("fault-ckpt");
    let cfg = fixture(&dir);
    let sets = ["method=ebda", "train.iterations=60"];
    let full = reference(&cfg, &dir, &sets);

    for damage in ["flip", "truncate", "remove"] {
        let run_dir = dir.join(damage);
        let mut args = train_args(&cfg, &run_dir, &sets);
        args.extend(["--stop-after".into(), "40".into()]);
        let out = run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let ckpts = checkpoint_dirs(&run_dir);
        assert_eq!(ckpts.len(), 2, "keep_checkpoints = 2: {ckpts:?}");
        let newest = ckpts[1].clone();
        let weights = newest.join("shared.safetensors");
        match damage {
            "flip" => {
                let mut b = std::fs::read(&weights).unwrap();
                let at = b.len() - 7;
                b[at] ^= 0x20;
                std::fs::write(&weights, b).unwrap();
            }
            "truncate" => {
                let b = std::fs::read(newest.join("state.json")).unwrap();
                std::fs::write(newest.join("state.json"), &b[..b.len() / 2]).unwrap();
            }
            _ => std::fs::remove_file(newest.join("optim.safetensors")).unwrap(),
        }
        let out = resume(&run_dir);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{damage}: {err}");
        assert!(
            err.contains(&newest.display().to_string())
                && err.contains(&format!("falling back to {}", ckpts[0].display())),
            "{damage}: {err}"
        );
        assert_eq!(
            metrics_without_timing(&run_dir),
            metrics_without_timing(&full),
            "{damage}"
        );
    }

    // Both checkpoints damaged: a clear refusal naming each, nothing resumed.
    let run_dir = dir.join("both");
    let mut args = train_args(&cfg, &run_dir, &sets);
    args.extend(["--stop-after".into(), "40".into()]);
    assert!(run(&args).status.success());
    let ckpts = checkpoint_dirs(&run_dir);
    for c in &ckpts {
        let p = c.join("shared.safetensors");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
    }
    let out = resume(&run_dir);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no intact checkpoint"), "{err}");
    for c in &ckpts {
        assert!(err.contains(&c.display().to_string()), "{err}");
    }
    assert!(!run_dir.join("summary.json").exists());
}

#[test]
fn sigint_and_sigterm_checkpoint_at_the_next_step_and_resume_exactly() {
    let dir = common::temp_dir("fault-signal");
    let cfg = fixture(&dir);
    // Evaluations every 50 iterations: a signal lands inside an interval
    // almost always, so the interval's partial statistics travel in the
    // checkpoint.
    let sets = [
        "method=ebda",
        "train.iterations=1500",
        "train.eval_every=50",
        "train.checkpoint_every=500",
    ];
    let full = reference(&cfg, &dir, &sets);

    for (sig, status) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let run_dir = dir.join(format!("sig{sig}"));
        let child = spawn(&train_args(&cfg, &run_dir, &sets));
        wait_for(&run_dir.join("metrics.jsonl"), 120);
        std::thread::sleep(Duration::from_millis(30));
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{err}");
        assert!(
            err.contains(&format!("stopped by signal {sig} at iteration"))
                && err.contains("--resume"),
            "{err}"
        );
        assert!(!run_dir.join("summary.json").exists(), "finished too early");
        let ckpt = checkpoint_dirs(&run_dir).pop().expect("a checkpoint");
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).unwrap()).unwrap();
        eprintln!(
            "signal {sig}: checkpoint at iteration {}, partial interval {}",
            state["iteration"],
            state.get("window").is_some()
        );
        let out = resume(&run_dir);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            metrics_without_timing(&run_dir),
            metrics_without_timing(&full),
            "signal {sig}"
        );
    }

    // Two Ctrl-C in a row: the second exits at once, with the same status;
    // the run directory stays resumable.
    let run_dir = dir.join("twice");
    let child = spawn(&train_args(&cfg, &run_dir, &sets));
    wait_for(&run_dir.join("metrics.jsonl"), 120);
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let out = resume(&run_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        metrics_without_timing(&run_dir),
        metrics_without_timing(&full)
    );
}

#[test]
fn a_second_process_on_a_run_directory_is_refused() {
    let dir = common::temp_dir("fault-lock");
    let cfg = fixture(&dir);
    let sets = [
        "method=ebda",
        "train.iterations=100000",
        "train.eval_every=50",
        "train.checkpoint_every=500",
    ];
    let run_dir = dir.join("run");
    let child = spawn(&train_args(&cfg, &run_dir, &sets));
    wait_for(&run_dir.join("metrics.jsonl"), 120);
    let out = resume(&run_dir);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("in use by another ebda process")
            && err.contains(&format!("pid {}", child.id())),
        "{err}"
    );
    // A fresh run into the same directory is refused by the lock as well.
    let out = run(&train_args(&cfg, &run_dir, &sets));
    assert!(text(&out.stderr).contains("in use by another ebda process"));
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
}

/// A small deterministic generator for the kill moments.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn twenty_kill_9s_at_random_moments_end_with_the_uninterrupted_metrics() {
    let dir = common::temp_dir("fault-kill9");
    let cfg = fixture(&dir);
    // A checkpoint every 10 iterations: many kills land inside a write.
    let sets = ["method=ebda", "train.iterations=400"];
    let full = reference(&cfg, &dir, &sets);
    let run_dir = dir.join("soak");
    let mut rng = 0x5eed_u64;
    let mut kills = 0;
    let mut finished_early = false;
    // On a loaded machine a start may not reach its first checkpoint before
    // the kill: wait longer after each such kill, so the soak still moves on.
    let mut extra_ms = 0;
    let mut resumes = 0;
    for k in 0..20 {
        let args = if k == 0 || !run_dir.join("checkpoints/latest.json").exists() {
            if run_dir.exists() {
                std::fs::remove_dir_all(&run_dir).unwrap();
            }
            train_args(&cfg, &run_dir, &sets)
        } else {
            [
                "train",
                "--resume",
                run_dir.to_str().unwrap(),
                "--no-progress",
            ]
            .map(String::from)
            .into()
        };
        if args.iter().any(|a| a == "--resume") {
            resumes += 1;
        }
        let mut child = ebda()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(60 + lcg(&mut rng) % 400 + extra_ms));
        if child.try_wait().unwrap().is_some() {
            finished_early = true;
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if !run_dir.join("checkpoints/latest.json").exists() {
            extra_ms += 250;
        }
    }
    eprintln!(
        "{kills} kills, {resumes} resumes before the run could finish (finished early: {finished_early})"
    );
    assert!(kills >= 10, "only {kills} kills landed");
    assert!(
        resumes >= 3,
        "only {resumes} of the kills were followed by a resume"
    );
    if !run_dir.join("summary.json").exists() {
        let out = resume(&run_dir);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(
        metrics_without_timing(&run_dir),
        metrics_without_timing(&full)
    );
}

/// Peak resident memory of a finished child, from `wait4` (which also reaps
/// it: std's `wait` cannot report the child's resource usage).
#[allow(clippy::zombie_processes)]
fn run_peak_rss_kib(args: &[String]) -> i64 {
    let child = ebda()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    usage.ru_maxrss
}

#[test]
fn peak_memory_does_not_grow_with_the_step_count() {
    let dir = common::temp_dir("fault-rss");
    let cfg = fixture(&dir);
    let n = 400;
    let peak = |iters: usize, name: &str| {
        let it = format!("train.iterations={iters}");
        run_peak_rss_kib(&train_args(
            &cfg,
            &dir.join(name),
            &[
                "method=ebda",
                &it,
                "train.eval_every=100",
                "train.checkpoint_every=100",
            ],
        ))
    };
    let short = peak(n, "short");
    let long = peak(5 * n, "long");
    eprintln!(
        "peak RSS: {short} KiB after {n} steps, {long} KiB after {} steps",
        5 * n
    );
    // A graph or optimizer state kept per step would grow by megabytes over
    // 1600 more steps; allocator noise stays well under 8 MiB.
    assert!(
        long <= short + 8 * 1024,
        "peak RSS grew from {short} KiB ({n} steps) to {long} KiB ({} steps)",
        5 * n
    );
}

/// A run whose output directory fills up stops with an error naming the
/// path; after space is freed, `--resume` ends with the uninterrupted
/// metrics. Needs root (a small tmpfs is mounted).
#[test]
fn a_full_disk_stops_the_run_cleanly_and_resume_finishes_it() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED (LOUDLY): the full-disk test needs root to mount a tmpfs");
        return;
    }
    let dir = common::temp_dir("fault-disk");
    let cfg = fixture(&dir);
    let sets = [
        "method=ebda",
        "train.iterations=200",
        "train.checkpoint_every=10",
    ];
    let full = reference(&cfg, &dir, &sets);
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = |opts: &str| {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs", mnt.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success(), "mount -o {opts}");
    };
    let remount = |opts: &str| {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}"), mnt.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success(), "remount {opts}");
    };
    // A checkpoint of the fixture's EBDA run takes 6.3 MiB and two are kept:
    // 14 MiB holds the first two and fills while the third is written.
    mount("size=14m");
    let run_dir = mnt.join("run");
    let out = run(&train_args(&cfg, &run_dir, &sets));
    let err = text(&out.stderr);
    let result = std::panic::catch_unwind(|| {
        assert!(!out.status.success(), "the run fitted in 14 MiB");
        assert!(
            err.contains("No space left on device") && err.contains(&run_dir.display().to_string()),
            "{err}"
        );
        remount("size=64m");
        let out = resume(&run_dir);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            metrics_without_timing(&run_dir),
            metrics_without_timing(&full)
        );
    });
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

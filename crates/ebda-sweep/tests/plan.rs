//! Grid expansion, run names, status on disk and the SLURM script (golden file).

use ebda_sweep::{RunStatus, SlurmOptions, Sweep};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write_sweep(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("sweep.json");
    std::fs::write(&path, text).unwrap();
    path
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ebda-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn grid_file(dir: &Path) -> PathBuf {
    let m2u = repo().join("experiments/digits/M2U-5k.json");
    let u2m = repo().join("experiments/digits/U2M-5k.json");
    write_sweep(
        dir,
        &serde_json::json!({
            "out": dir.join("out"),
            "configs": [m2u, u2m],
            "methods": ["dann", {"label": "cdan+e", "set": {"method": "cdan", "method.cdan.entropy": true}}],
            "seeds": [0, 1],
            "grid": {"optim.lr": [0.01, 0.003], "adapt.lambda_max": [1]},
            "set": {"train.iterations": 300}
        })
        .to_string(),
    )
}

#[test]
fn the_grid_expands_in_order_with_deterministic_names_and_sets() {
    let dir = temp("expand");
    let sweep = Sweep::load(&grid_file(&dir)).unwrap();
    assert_eq!(sweep.runs.len(), 2 * 2 * 2 * 2);
    let names: Vec<&str> = sweep.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names[..5],
        [
            "M2U-5k-dann-seed0-adapt.lambda_max=1-optim.lr=0.01",
            "M2U-5k-dann-seed0-adapt.lambda_max=1-optim.lr=0.003",
            "M2U-5k-dann-seed1-adapt.lambda_max=1-optim.lr=0.01",
            "M2U-5k-dann-seed1-adapt.lambda_max=1-optim.lr=0.003",
            "M2U-5k-cdan+e-seed0-adapt.lambda_max=1-optim.lr=0.01",
        ]
    );
    assert_eq!(
        names[15],
        "U2M-5k-cdan+e-seed1-adapt.lambda_max=1-optim.lr=0.003"
    );
    let r = &sweep.runs[5];
    assert_eq!(r.index, 5);
    assert_eq!(r.dir, dir.join("out").join(&r.name));
    assert_eq!(r.task, "M2U-5k");
    assert_eq!(r.seed, 0);
    // A grid point is its own report row.
    assert_eq!(r.method, "cdan+e adapt.lambda_max=1 optim.lr=0.003");
    assert_eq!(
        r.sets,
        [
            "train.iterations=300",
            "method=\"cdan\"",
            "method.cdan.entropy=true",
            "label=\"cdan+e\"",
            "seed=0",
            "adapt.lambda_max=1",
            "optim.lr=0.003",
            "label=\"cdan+e adapt.lambda_max=1 optim.lr=0.003\"",
        ]
    );
    // Loading the same file twice gives the same plan.
    let again = Sweep::load(&dir.join("sweep.json")).unwrap();
    assert_eq!(sweep.runs, again.runs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_sweep_files_name_the_problem() {
    let dir = temp("bad");
    let m2u = repo().join("experiments/digits/M2U-5k.json");
    let err = |v: serde_json::Value| {
        let p = write_sweep(&dir, &v.to_string());
        Sweep::load(&p).unwrap_err().to_string()
    };
    let e = err(serde_json::json!({"out": "x", "configs": []}));
    assert!(e.contains("`configs` is empty"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u], "colour": 1}));
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u], "methods": ["danm"]}));
    assert!(e.contains("run 0") && e.contains("danm"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u], "grid": {"optim.lr": []}}));
    assert!(e.contains("grid key \"optim.lr\" has no values"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u], "grid": {"seed": [1, 2]}}));
    assert!(e.contains("use `methods` / `seeds`"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u],
        "tasks": [{"task": "A"}, {"task": "A"}]}));
    assert!(
        e.contains("tasks[0] and tasks[1] are both named \"A\""),
        "{e}"
    );
    let e = err(serde_json::json!({"out": "x", "configs": [m2u],
        "tasks": [{"task": "A", "set": {"seed": 3}}]}));
    assert!(e.contains("tasks[0] (A) sets \"seed\""), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u],
        "tasks": [{"task": "A", "set": {"data.source.colour": 3}}]}));
    assert!(e.contains("run 0") && e.contains("colour"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u], "tasks": [{"name": "A"}]}));
    assert!(e.contains("unknown field `name`"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u], "set": {"optim.lr": "fast"}}));
    assert!(e.contains("optim.lr") && e.contains("run 0"), "{e}");
    let e = err(serde_json::json!({"out": "x", "configs": [m2u, m2u]}));
    assert!(e.contains("both named"), "{e}");
    let e = Sweep::load(&dir.join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_is_read_from_the_run_directory() {
    let dir = temp("status");
    let sweep = Sweep::load(&grid_file(&dir)).unwrap();
    let run = &sweep.runs[0];
    assert_eq!(sweep.status(run), RunStatus::Pending);
    std::fs::create_dir_all(run.dir.join("checkpoints")).unwrap();
    assert_eq!(sweep.status(run), RunStatus::Pending, "no checkpoint yet");
    std::fs::write(
        run.dir.join("checkpoints/latest.json"),
        r#"{"iteration":40,"dir":"iter-00000040"}"#,
    )
    .unwrap();
    assert_eq!(
        sweep.status(run),
        RunStatus::Partial {
            iteration: Some(40)
        }
    );
    // A process holding the run's lock: running.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(run.dir.join("lock"))
        .unwrap();
    lock.lock().unwrap();
    assert_eq!(sweep.status(run), RunStatus::Running);
    drop(lock);
    std::fs::create_dir_all(sweep.failure_path(run).parent().unwrap()).unwrap();
    std::fs::write(sweep.failure_path(run), "exit status: 1\nno such file").unwrap();
    assert!(
        matches!(sweep.status(run), RunStatus::Failed { reason } if reason.contains("no such file"))
    );
    std::fs::write(
        run.dir.join("summary.json"),
        r#"{"status":"diverged","iteration":60,"error":"non-finite loss"}"#,
    )
    .unwrap();
    assert!(
        matches!(sweep.status(run), RunStatus::Diverged { reason } if reason.contains("iteration 60"))
    );
    std::fs::write(run.dir.join("summary.json"), "{").unwrap();
    assert!(
        matches!(sweep.status(run), RunStatus::Failed { reason } if reason.contains("unreadable"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_slurm_script_matches_its_golden_file() {
    let dir = Path::new("/work/sweeps");
    let m2u = repo().join("experiments/digits/M2U-5k.json");
    let file: ebda_sweep::SweepFile = serde_json::from_value(serde_json::json!({
        "out": "runs/office",
        "configs": [m2u],
        "methods": ["source-only", "dann", "ebda"],
        "seeds": [0, 1, 2]
    }))
    .unwrap();
    let sweep = Sweep::plan(&dir.join("office.json"), file).unwrap();
    let opts = SlurmOptions {
        job_name: "ebda-office".into(),
        partition: Some("gpu".into()),
        gres: Some("gpu:1".into()),
        time: Some("04:00:00".into()),
        cpus_per_task: 8,
        mem: Some("32G".into()),
        concurrency: Some(4),
        device: Some("cuda".into()),
    };
    let all: Vec<usize> = (0..sweep.runs.len()).collect();
    let script = ebda_sweep::slurm_script(
        &sweep,
        &all,
        &opts,
        Path::new("/opt/ebda/bin/ebda"),
        Path::new("/work/my project"),
        Path::new("sweeps/office.json"),
    );
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/office.sbatch");
    if std::env::var_os("EBDA_BLESS").is_some() {
        std::fs::write(&golden, &script).unwrap();
    }
    assert_eq!(
        script,
        std::fs::read_to_string(&golden).unwrap(),
        "regenerate with EBDA_BLESS=1 after checking the difference"
    );
}

#[test]
fn tasks_make_one_config_into_several_and_selection_picks_runs() {
    let dir = temp("tasks");
    let surf = repo().join("experiments/office_caltech10/surf.json");
    let path = write_sweep(
        &dir,
        &serde_json::json!({
            "out": dir.join("out"),
            "configs": [surf],
            "tasks": [
                {"task": "A2C", "set": {"data.source.root": "a.mat", "data.target.root": "c.mat"}},
                {"task": "C2A", "set": {"data.source.root": "c.mat", "data.target.root": "a.mat"}}
            ],
            "methods": ["dann", {"label": "cdan+e", "set": {"method": "cdan", "method.cdan.entropy": true}}],
            "seeds": [0, 1],
            "set": {"train.iterations": 100}
        })
        .to_string(),
    );
    let sweep = Sweep::load(&path).unwrap();
    let names: Vec<&str> = sweep.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "A2C-dann-seed0",
            "A2C-dann-seed1",
            "A2C-cdan+e-seed0",
            "A2C-cdan+e-seed1",
            "C2A-dann-seed0",
            "C2A-dann-seed1",
            "C2A-cdan+e-seed0",
            "C2A-cdan+e-seed1",
        ]
    );
    let r = &sweep.runs[4];
    assert_eq!(r.task, "C2A");
    assert_eq!(
        r.sets,
        [
            "train.iterations=100",
            "task=\"C2A\"",
            "data.source.root=\"c.mat\"",
            "data.target.root=\"a.mat\"",
            "method=\"dann\"",
            "seed=0",
        ]
    );
    // The overrides reach the config.
    let cfg = ebda_train::ExperimentConfig::load(Some(&r.config), &r.sets).unwrap();
    assert_eq!(cfg.task, "C2A");

    let pick = |tasks: &[&str], methods: &[&str]| -> Vec<usize> {
        let t: Vec<String> = tasks.iter().map(|s| s.to_string()).collect();
        let m: Vec<String> = methods.iter().map(|s| s.to_string()).collect();
        sweep
            .select(&t, &m)
            .unwrap()
            .iter()
            .map(|r| r.index)
            .collect()
    };
    assert_eq!(pick(&[], &[]), (0..8).collect::<Vec<_>>());
    assert_eq!(pick(&["C2A"], &[]), [4, 5, 6, 7]);
    assert_eq!(pick(&[], &["cdan+e"]), [2, 3, 6, 7]);
    assert_eq!(pick(&["A2C"], &["dann", "cdan+e"]), [0, 1, 2, 3]);
    let e = sweep
        .select(&["A2W".to_string()], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no run has task \"A2W\"") && e.contains("A2C, C2A"),
        "{e}"
    );
    let e = sweep
        .select(&[], &["ebda".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no run has method \"ebda\""), "{e}");

    // A selection keeps the plan's indices in the job array.
    let script = ebda_sweep::slurm_script(
        &sweep,
        &pick(&[], &["cdan+e"]),
        &SlurmOptions {
            job_name: "t".into(),
            concurrency: Some(2),
            ..Default::default()
        },
        Path::new("/e"),
        Path::new("/w"),
        Path::new("s.json"),
    );
    assert!(script.contains("#SBATCH --array=2-3,6-7%2\n"), "{script}");
    assert!(
        script.contains("# 4 runs of s.json (4 of its 8)"),
        "{script}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn array_indices_are_written_as_ranges() {
    use ebda_sweep::array_ranges;
    assert_eq!(array_ranges(&[0, 1, 2, 3]), "0-3");
    assert_eq!(array_ranges(&[7, 0, 1, 9, 10, 3]), "0-1,3,7,9-10");
    assert_eq!(array_ranges(&[5]), "5");
    assert_eq!(array_ranges(&[2, 2, 3]), "2-3");
}

#[test]
fn the_configs_own_method_keeps_its_settings_and_another_takes_its_defaults() {
    let dir = temp("own-method");
    let frozen = repo().join("experiments/office31/frozen/frozen.json");
    let path = write_sweep(
        &dir,
        &serde_json::json!({
            "out": dir.join("out"),
            "configs": [frozen],
            "methods": ["dann", "cdan"],
            "seeds": [0]
        })
        .to_string(),
    );
    let sweep = Sweep::load(&path).unwrap();
    let (own, other) = (&sweep.runs[0], &sweep.runs[1]);
    assert_eq!(own.sets, ["seed=0"]);
    assert_eq!(own.method, "dann");
    assert_eq!(other.sets, ["method=\"cdan\"", "seed=0"]);
    let cfg = |r: &ebda_sweep::Run| {
        serde_json::to_value(ebda_train::ExperimentConfig::load(Some(&r.config), &r.sets).unwrap())
            .unwrap()
    };
    // frozen.json's DANN discriminator (tllib's 1024-1024 with BatchNorm).
    let d = &cfg(own)["method"]["dann"]["discriminator"];
    assert_eq!(d["hidden"], serde_json::json!([1024, 1024]), "{d}");
    assert_eq!(d["batch_norm"], true, "{d}");
    // CDAN at its defaults.
    let d = &cfg(other)["method"]["cdan"]["discriminator"];
    assert_eq!(d["hidden"], serde_json::json!([500, 500]), "{d}");
    std::fs::remove_dir_all(&dir).unwrap();
}

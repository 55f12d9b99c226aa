//! Experiment configs: a JSON file, then `--set KEY=VALUE` overrides (one
//! per line after the first NUL byte); also a run directory's config.json.
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let (json, sets) = scratch::split(data, 0);
    let path = scratch::file("exp.json", json);
    let sets: Vec<String> = String::from_utf8_lossy(sets)
        .lines()
        .map(str::to_string)
        .collect();
    let _ = ebda_train::ExperimentConfig::load(Some(&path), &sets);
    let run = scratch::dir().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.json"), json).unwrap();
    let _ = ebda_train::ExperimentConfig::load_run(&run);
});

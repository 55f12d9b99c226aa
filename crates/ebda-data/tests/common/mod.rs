//! Helpers shared by the data tests (also included by the binary's tests).
#![allow(dead_code)]

pub mod formats;

use std::path::PathBuf;

/// The shared real data: `$EBDA_DATA_DIR`, else `../shared/data` beside the
/// repository. `None` (with a printed reason) when absent, unless
/// `EBDA_REQUIRE_REAL_DATA=1`, which turns absence into a failure.
pub fn real_data(sub: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("EBDA_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        // The repository sits beside `shared/`: look upwards from this package.
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/data"))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| PathBuf::from("../shared/data")),
    };
    let path = dir.join(sub);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("EBDA_REQUIRE_REAL_DATA").as_deref() == Ok("1") {
        panic!(
            "EBDA_REQUIRE_REAL_DATA=1 but {} is missing (set EBDA_DATA_DIR)",
            path.display()
        );
    }
    eprintln!(
        "skipped: real data {} not found (set EBDA_DATA_DIR to run this test)",
        path.display()
    );
    None
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ebda-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

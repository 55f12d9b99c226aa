//! Inputs found by the fuzz targets (`fuzz/`) that once crashed a reader.
//! Each must now end in an error that names the file and the fault.

use std::path::{Path, PathBuf};

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(name)
}

/// A MATLAB file whose feature matrix declares a size (rows × cols) that
/// overflows and does not match the values it holds: once a capacity-overflow
/// panic while transposing, found by the `mat` target in its first minutes.
#[test]
fn mat_matrix_size_beyond_its_values_is_an_error() {
    let path = case("mat-size-overflow.mat");
    let err = ebda_data::mat::mat_features(&path, "fts", "labels", 1, Some(31))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mat-size-overflow.mat") && err.contains("fts declares size"),
        "{err}"
    );
}

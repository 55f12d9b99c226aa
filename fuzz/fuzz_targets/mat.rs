//! MATLAB v5 files: SVHN splits and feature files (variables by name).
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file("features.mat", data);
    let _ = ebda_data::mat::mat_features(&path, "fts", "labels", 1, Some(31));
    let svhn = scratch::file("svhn/test_32x32.mat", data);
    let _ = ebda_data::mat::svhn(svhn.parent().unwrap(), "test");
});

//! Safetensors feature files (`features` [n, d], `labels` [n]).
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file("features.safetensors", data);
    let _ = ebda_data::features::safetensors_features(&path, "features", "labels", 0, None);
    let _ = ebda_data::features::safetensors_features(&path, "features", "labels", 1, Some(10));
});

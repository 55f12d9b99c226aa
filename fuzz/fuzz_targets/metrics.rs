//! `metrics.jsonl` as `ebda report` reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file("metrics.jsonl", data);
    let _ = ebda_records::read_metrics(&path);
});

//! USPS libsvm text, plain or bzip2.
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let bz = data.starts_with(b"BZh");
    let name = if bz { "usps.bz2" } else { "usps" };
    let path = scratch::file(name, data);
    if let Ok(text) = ebda_data::read_maybe_compressed(&path) {
        let _ = ebda_data::digits::parse_usps_libsvm(&path, &text);
    }
});

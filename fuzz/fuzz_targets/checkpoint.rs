//! Checkpoint directories: `latest.json`, then a checkpoint's `state.json`
//! and `checksums.json` (inputs separated by NUL bytes), as `--resume`
//! reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let (latest, rest) = scratch::split(data, 0);
    let (state, sums) = scratch::split(rest, 0);
    let dir = scratch::dir().join("checkpoints");
    let _ = std::fs::remove_dir_all(&dir);
    let ckpt = dir.join("iter-00000010");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(dir.join("latest.json"), latest).unwrap();
    std::fs::write(ckpt.join("state.json"), state).unwrap();
    if !sums.is_empty() {
        std::fs::write(ckpt.join("checksums.json"), sums).unwrap();
    }
    if let Ok(Some((found, _))) = ebda_train::checkpoint::latest_intact(&dir) {
        let _ = ebda_train::checkpoint::read_state(&found);
    }
    let _ = ebda_train::checkpoint::read_state(&ckpt);
});

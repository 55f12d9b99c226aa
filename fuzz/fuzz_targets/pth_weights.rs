//! Backbone weights: PyTorch `.pth` (zip + pickle) and safetensors.
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

/// candle's pickle reader panics on some malformed archives (e.g. an index
/// past a short argument list in `rebuild_args`); `weights::read` turns such
/// a panic into an error with `catch_unwind`. libfuzzer-sys's panic hook
/// would abort even on a caught panic, so it is replaced by a silent one: a
/// panic that escapes `weights::read` still aborts (libfuzzer-sys wraps each
/// input in `catch_unwind` and aborts when it fails).
static QUIET_CAUGHT_PANICS: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_CAUGHT_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let path = scratch::file("weights.pth", data);
    if let Ok(tensors) = ebda_features::weights::read(&path) {
        let _ = ebda_features::weights::to_torchvision(tensors);
    }
    let path = scratch::file("weights.safetensors", data);
    let _ = ebda_features::weights::read(&path);
});

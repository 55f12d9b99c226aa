//! Backbone weights: PyTorch `.pth` (zip + pickle) and safetensors.
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file("weights.pth", data);
    if let Ok(tensors) = ebda_features::weights::read(&path) {
        let _ = ebda_features::weights::to_torchvision(tensors);
    }
    let path = scratch::file("weights.safetensors", data);
    let _ = ebda_features::weights::read(&path);
});

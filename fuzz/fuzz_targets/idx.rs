//! MNIST idx files, plain or gzip (the reader detects the compression).
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let gz = data.starts_with(&[0x1f, 0x8b]);
    let name = if gz {
        "train-images-idx3-ubyte.gz"
    } else {
        "train-images-idx3-ubyte"
    };
    let path = scratch::file(name, data);
    let _ = ebda_data::digits::read_idx_images(&path);
    let _ = ebda_data::digits::read_idx_labels(&path, 10);
    // A whole split from a directory holding the input as both files.
    let root = scratch::dir().join("mnist");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("t10k-images-idx3-ubyte"), data).unwrap();
    std::fs::write(root.join("t10k-labels-idx1-ubyte"), data).unwrap();
    let _ = ebda_data::digits::mnist(&root, "test");
});

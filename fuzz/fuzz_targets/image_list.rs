//! Image lists (`relative/path label` lines), labels from base 0 or 1.
#![no_main]
use libfuzzer_sys::fuzz_target;
mod scratch;

fuzz_target!(|data: &[u8]| {
    let root = scratch::dir().join("list");
    std::fs::create_dir_all(root.join("a")).unwrap();
    let img = root.join("a/x.jpg");
    if !img.exists() {
        std::fs::write(&img, b"not decoded by the list reader").unwrap();
    }
    std::fs::write(root.join("list.txt"), data).unwrap();
    let list = std::path::Path::new("list.txt");
    let _ = ebda_data::images::image_list(&root, list, 0, None);
    let _ = ebda_data::images::image_list(&root, list, 1, Some(31));
});

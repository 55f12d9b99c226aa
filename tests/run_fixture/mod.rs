//! The small two-domain MNIST-format fixture the CLI tests train on.

use crate::common;
use common::formats::write_mnist;
use std::path::{Path, PathBuf};

/// Two small "domains" in MNIST format: blobs whose position encodes the class;
/// the target draws them brighter and shifted.
pub fn fixture(dir: &Path) -> PathBuf {
    let make = |sub: &str, prefix: &str, n: usize, bright: u8, shift: usize, seed: usize| {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let mut images = vec![0u8; n * 784];
        let mut labels = vec![0u8; n];
        for i in 0..n {
            let class = (i * 7 + seed) % 10;
            labels[i] = class as u8;
            let (cy, cx) = (4 + (class / 5) * 12 + shift, 3 + (class % 5) * 5);
            for y in cy..cy + 6 {
                for x in cx..(cx + 4).min(28) {
                    images[i * 784 + y * 28 + x] =
                        bright.wrapping_sub(((i * 13 + y * 3 + x) % 40) as u8);
                }
            }
        }
        write_mnist(&d, prefix, &images, &labels, 28, 28, true);
    };
    make("src", "train", 120, 250, 0, 1);
    make("src", "t10k", 60, 250, 0, 2);
    make("tgt", "train", 120, 200, 2, 3);
    make("tgt", "t10k", 60, 200, 2, 4);
    let cfg = serde_json::json!({
        "task": "fixture",
        "data": {
            "source": {"format": "mnist", "root": dir.join("src"), "split": "train"},
            "target": {"format": "mnist", "root": dir.join("tgt"), "split": "train"},
            "target_test": {"format": "mnist", "root": dir.join("tgt"), "split": "test"},
            "source_test": {"format": "mnist", "root": dir.join("src"), "split": "test"},
            "batch_size": 8,
            "eval_batch_size": 32
        },
        "train": {"iterations": 40, "eval_every": 10, "checkpoint_every": 10}
    });
    let path = dir.join("exp.json");
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    path
}

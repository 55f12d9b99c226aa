//! Bad inputs give an error naming the file and the cause — never a panic.

mod common;

use candle_core::Device;
use common::formats::{MatVar, idx_bytes, mat_v5, write_mnist};
use ebda_data::{DataSpec, Error, Format};
use std::path::Path;

/// Loads `spec` and returns its error message, asserting it names `file`.
fn error_naming(spec: &DataSpec, file: &Path) -> String {
    let err = spec.load().expect_err("bad input must be an error");
    let msg = err.to_string();
    assert!(
        msg.contains(&file.display().to_string()),
        "error does not name {}: {msg}",
        file.display()
    );
    msg
}

#[test]
fn idx_errors() {
    let dir = common::temp_dir("bad-idx");
    let spec = DataSpec::new(Format::Mnist, &dir, "train");
    let images = dir.join("train-images-idx3-ubyte");
    let labels = dir.join("train-labels-idx1-ubyte");

    // Missing file.
    let msg = error_naming(&spec, &dir.join("train-images-idx3-ubyte.gz"));
    assert!(msg.contains("file not found"), "{msg}");

    // Wrong magic: a labels header where images are expected.
    write_mnist(&dir, "train", &[0; 8], &[1, 2], 2, 2, false);
    std::fs::write(&images, idx_bytes(0x0801, &[2], &[0, 0])).unwrap();
    let msg = error_naming(&spec, &images);
    assert!(
        msg.contains("bad magic number 0x00000801, expected 0x00000803"),
        "{msg}"
    );

    // Truncated: header says 2×2×2 pixels, 5 present.
    std::fs::write(&images, idx_bytes(0x0803, &[2, 2, 2], &[0; 5])).unwrap();
    let msg = error_naming(&spec, &images);
    assert!(
        msg.contains("truncated file") && msg.contains("found 21 bytes"),
        "{msg}"
    );
    std::fs::write(&images, [0u8, 0, 8]).unwrap();
    assert!(error_naming(&spec, &images).contains("truncated"));

    // Truncated gzip stream.
    let gz = common::formats::gzip(&idx_bytes(0x0803, &[2, 2, 2], &[7; 8]));
    std::fs::remove_file(&images).unwrap();
    let gz_path = dir.join("train-images-idx3-ubyte.gz");
    std::fs::write(&gz_path, &gz[..gz.len() / 2]).unwrap();
    assert!(error_naming(&spec, &gz_path).contains("gzip"));
    std::fs::remove_file(&gz_path).unwrap();

    // Count mismatch: 2 images, 3 labels.
    write_mnist(&dir, "train", &[0; 8], &[1, 2], 2, 2, false);
    std::fs::write(&labels, idx_bytes(0x0801, &[3], &[1, 2, 3])).unwrap();
    let msg = error_naming(&spec, &labels);
    assert!(
        msg.contains("3 labels, but") && msg.contains("holds 2 images"),
        "{msg}"
    );

    // Label out of range.
    std::fs::write(&labels, idx_bytes(0x0801, &[2], &[1, 12])).unwrap();
    let msg = error_naming(&spec, &labels);
    assert!(
        msg.contains("label 12 of sample 1 out of range 0..9"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn libsvm_errors() {
    let dir = common::temp_dir("bad-usps");
    let spec = DataSpec::new(Format::Usps, &dir, "test");
    let file = dir.join("usps.t");
    for (text, cause) in [
        (
            "3 1:0.5 2:abc\n",
            "line 1: value \"abc\" of index 2 is not a number",
        ),
        (
            "3 1:0.5\n4 257:0.1\n",
            "line 2: feature index 257 out of range 1..256",
        ),
        ("3 x:0.5\n", "feature index \"x\" is not an integer"),
        ("3 1-0.5\n", "token \"1-0.5\" is not index:value"),
        ("11 1:0.5\n", "label 11 out of range 1..10"),
        ("six 1:0.5\n", "label \"six\" is not a number"),
        ("2 1:1.7\n", "value 1.7 of index 1 outside [-1, 1]"),
        ("", "no samples"),
    ] {
        std::fs::write(&file, text).unwrap();
        let msg = error_naming(&spec, &file);
        assert!(msg.contains(cause), "{text:?}: {msg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn image_errors() {
    let root = common::temp_dir("bad-img");
    // Undecodable PNG in MNIST-M.
    std::fs::create_dir_all(root.join("mnist_m_train")).unwrap();
    let png = root.join("mnist_m_train/00000000.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(root.join("mnist_m_train_labels.txt"), "00000000.png 3\n").unwrap();
    let msg = error_naming(&DataSpec::new(Format::MnistM, &root, "train"), &png);
    assert!(msg.contains("cannot decode image"), "{msg}");
    // Label out of range in the labels file.
    image::RgbImage::new(2, 2).save(&png).unwrap();
    std::fs::write(root.join("mnist_m_train_labels.txt"), "00000000.png 10\n").unwrap();
    let list = root.join("mnist_m_train_labels.txt");
    assert!(
        error_naming(&DataSpec::new(Format::MnistM, &root, "train"), &list)
            .contains("label 10 out of range 0..9")
    );

    // Office-31: unknown class folder.
    let office = DataSpec {
        format: Format::Office31,
        root: root.clone(),
        domain: "webcam".into(),
        ..DataSpec::default()
    };
    let unknown = root.join("webcam/images/sofa");
    std::fs::create_dir_all(&unknown).unwrap();
    let msg = error_naming(&office, &unknown);
    assert!(
        msg.contains("unknown Office-31 class folder \"sofa\""),
        "{msg}"
    );
    std::fs::remove_dir_all(&unknown).unwrap();

    // Office-31: an undecodable JPEG is reported when its batch is assembled.
    let mug = root.join("webcam/images/mug");
    std::fs::create_dir_all(&mug).unwrap();
    let jpg = mug.join("frame_0001.jpg");
    std::fs::write(&jpg, b"\xff\xd8\xff\xe0 truncated").unwrap();
    let ds = office.load().unwrap();
    let input = ebda_data::InputConfig::imagenet(false);
    let err = ebda_data::assemble(&ds, &input, &[0], false, 0, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&jpg.display().to_string()) && msg.contains("cannot decode image"),
        "{msg}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn mat_and_feature_errors() {
    let dir = common::temp_dir("bad-mat");
    let path = dir.join("f.mat");
    std::fs::write(
        &path,
        mat_v5(&[("fts", MatVar::F32(&[2, 2], &[0.0; 4]))], false),
    )
    .unwrap();
    let spec = DataSpec {
        format: Format::Features,
        root: path.clone(),
        features_key: "fts".into(),
        ..DataSpec::default()
    };
    let msg = error_naming(&spec, &path);
    assert!(
        msg.contains("no variable \"labels\" (the file has [\"fts\"])"),
        "{msg}"
    );

    std::fs::write(&path, vec![b'x'; 200]).unwrap();
    assert!(error_naming(&spec, &path).contains("not a MATLAB .mat file"));
    std::fs::write(
        &path,
        &mat_v5(&[("fts", MatVar::F32(&[2, 2], &[0.0; 4]))], false)[..100],
    )
    .unwrap();
    assert!(error_naming(&spec, &path).contains("truncated"));
    let full = mat_v5(
        &[
            ("fts", MatVar::F32(&[2, 2], &[0.0; 4])),
            ("labels", MatVar::F64(&[2, 1], &[0.0, 1.0])),
        ],
        false,
    );
    std::fs::write(&path, &full[..full.len() - 20]).unwrap();
    let msg = error_naming(&spec, &path);
    assert!(msg.contains("truncated: data element 1"), "{msg}");

    // SVHN with labels out of range.
    let x = vec![0u8; 3072];
    std::fs::write(
        dir.join("train_32x32.mat"),
        mat_v5(
            &[
                ("X", MatVar::U8(&[32, 32, 3, 1], &x)),
                ("y", MatVar::F64(&[1, 1], &[11.0])),
            ],
            true,
        ),
    )
    .unwrap();
    let svhn = dir.join("train_32x32.mat");
    let msg = error_naming(&DataSpec::new(Format::Svhn, &dir, "train"), &svhn);
    assert!(msg.contains("y[0] = 11: label out of range 1..10"), "{msg}");

    // Missing safetensors file.
    let missing = dir.join("none.safetensors");
    let spec = DataSpec {
        format: Format::Features,
        root: missing.clone(),
        ..DataSpec::default()
    };
    assert!(error_naming(&spec, &missing).contains("file not found"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spec_errors_name_the_key() {
    let bad = |s: DataSpec| match s.load().unwrap_err() {
        Error::Config { key, reason } => format!("{key}: {reason}"),
        other => panic!("expected a config error, got {other}"),
    };
    assert_eq!(
        bad(DataSpec::new(Format::Mnist, "x", "valid")),
        "split: must be one of [\"train\", \"test\"] for Mnist, got \"valid\""
    );
    assert_eq!(
        bad(DataSpec {
            format: Format::Office31,
            domain: "art".into(),
            ..DataSpec::default()
        }),
        "domain: must be one of amazon, dslr, webcam, got \"art\""
    );
}

//! Each real on-disk format, written small by the test and read back exactly.

mod common;

use candle_core::{DType, Device, Tensor};
use common::formats::{MatVar, bzip2, mat_v5, usps_text, write_mnist};
use ebda_data::{DataSpec, Format, OFFICE31_CLASSES, Samples};
use std::collections::HashMap;

fn pixels(ds: &ebda_data::Dataset) -> &[u8] {
    match &ds.samples {
        Samples::Images { pixels, .. } => pixels,
        other => panic!("expected stored images, got {other:?}"),
    }
}

#[test]
fn idx_plain_and_gz_read_back_exactly() {
    for gz in [false, true] {
        let dir = common::temp_dir(&format!("idx-{gz}"));
        let images: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 7 % 256) as u8).collect();
        write_mnist(&dir, "t10k", &images, &[3, 0, 9], 4, 5, gz);
        let ds = DataSpec::new(Format::Mnist, &dir, "test").load().unwrap();
        assert_eq!(ds.labels, vec![3, 0, 9]);
        assert_eq!(ds.stored_dims(), Some(vec![1, 4, 5]));
        assert_eq!(pixels(&ds), images.as_slice());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn libsvm_plain_and_bz2_read_back_exactly() {
    let mut a = [0u8; 256];
    let mut b = [255u8; 256];
    for k in 0..256 {
        a[k] = (k % 256) as u8;
        b[k] = if k % 5 == 0 { 128 } else { 255 - (k as u8) };
    }
    let text = usps_text(&[a, b], &[6, 0]);
    for compressed in [false, true] {
        let dir = common::temp_dir(&format!("usps-{compressed}"));
        if compressed {
            std::fs::write(dir.join("usps.bz2"), bzip2(text.as_bytes())).unwrap();
        } else {
            std::fs::write(dir.join("usps"), &text).unwrap();
        }
        let ds = DataSpec::new(Format::Usps, &dir, "train").load().unwrap();
        assert_eq!(ds.labels, vec![6, 0]);
        let px = pixels(&ds);
        assert_eq!(&px[..256], &a[..]);
        assert_eq!(&px[256..], &b[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn svhn_mat_v5_plain_and_compressed_read_back_exactly() {
    // Two 32×32×3 images in MATLAB's column-major order; labels 10 (= digit 0) and 3.
    let n = 2;
    let x: Vec<u8> = (0..32 * 32 * 3 * n).map(|i| (i * 31 % 251) as u8).collect();
    for compressed in [false, true] {
        let dir = common::temp_dir(&format!("svhn-{compressed}"));
        let mat = mat_v5(
            &[
                ("X", MatVar::U8(&[32, 32, 3, n], &x)),
                ("y", MatVar::F64(&[n, 1], &[10.0, 3.0])),
            ],
            compressed,
        );
        std::fs::write(dir.join("test_32x32.mat"), mat).unwrap();
        let ds = DataSpec::new(Format::Svhn, &dir, "test").load().unwrap();
        assert_eq!(ds.labels, vec![0, 3]);
        assert_eq!(ds.stored_dims(), Some(vec![3, 32, 32]));
        let px = pixels(&ds);
        for img in 0..n {
            for k in 0..3 {
                for r in 0..32 {
                    for c in 0..32 {
                        let want = x[r + 32 * c + 1024 * k + 3072 * img];
                        assert_eq!(px[img * 3072 + k * 1024 + r * 32 + c], want);
                    }
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn mat_features_with_configured_names() {
    let dir = common::temp_dir("matfeat");
    // fea: 3 samples × 2 dims, column-major; gnd 1-based.
    let fea = [1.0f32, 2.0, 3.0, 10.0, 20.0, 30.0];
    let mat = mat_v5(
        &[
            ("fea", MatVar::F32(&[3, 2], &fea)),
            ("gnd", MatVar::F64(&[3, 1], &[1.0, 2.0, 1.0])),
        ],
        true,
    );
    let path = dir.join("feats.mat");
    std::fs::write(&path, mat).unwrap();
    let spec = DataSpec {
        format: Format::Features,
        root: path,
        features_key: "fea".into(),
        labels_key: "gnd".into(),
        label_base: 1,
        ..DataSpec::default()
    };
    let ds = spec.load().unwrap();
    assert_eq!(ds.labels, vec![0, 1, 0]);
    match &ds.samples {
        Samples::Vectors { values, dim } => {
            assert_eq!(*dim, 2);
            assert_eq!(values, &vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn safetensors_features_read_back_exactly() {
    let dir = common::temp_dir("safet");
    let path = dir.join("f.safetensors");
    let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
    let mut tensors = HashMap::new();
    tensors.insert(
        "features".to_string(),
        Tensor::from_vec(values.clone(), (4, 3), &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "labels".to_string(),
        Tensor::from_vec(vec![2i64, 0, 1, 2], 4, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let ds = DataSpec {
        format: Format::Features,
        root: path,
        ..DataSpec::default()
    }
    .load()
    .unwrap();
    assert_eq!(ds.labels, vec![2, 0, 1, 2]);
    assert_eq!(ds.num_classes, 3);
    match &ds.samples {
        Samples::Vectors { values: v, dim } => {
            assert_eq!(*dim, 3);
            assert_eq!(v, &values);
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mnist_m_png_folder_reads_back_exactly() {
    let root = common::temp_dir("mnistm");
    let dir = root.join("mnist_m_test");
    std::fs::create_dir_all(&dir).unwrap();
    let mut expected = Vec::new();
    let mut lines = String::new();
    for (i, label) in [7u32, 1, 4].iter().enumerate() {
        let img = image::RgbImage::from_fn(6, 5, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 50) as u8, (i * 80) as u8])
        });
        let name = format!("{i:08}.png");
        img.save(dir.join(&name)).unwrap();
        lines.push_str(&format!("{name} {label}\n"));
        expected.push(img);
    }
    std::fs::write(root.join("mnist_m_test_labels.txt"), lines).unwrap();
    let ds = DataSpec::new(Format::MnistM, &root, "test").load().unwrap();
    assert_eq!(ds.labels, vec![7, 1, 4]);
    assert_eq!(ds.stored_dims(), Some(vec![3, 5, 6]));
    let px = pixels(&ds);
    for (i, img) in expected.iter().enumerate() {
        for (x, y, p) in img.enumerate_pixels() {
            for k in 0..3 {
                assert_eq!(px[i * 90 + k * 30 + (y * 6 + x) as usize], p.0[k]);
            }
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn office31_jpeg_folders_use_the_fixed_class_list() {
    let root = common::temp_dir("office");
    let classes = ["bike", "trash_can", "back_pack"];
    for (c, class) in classes.iter().enumerate() {
        let dir = root.join("dslr/images").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..2 {
            // Flat colours survive JPEG compression within a grey level or two.
            let img = image::RgbImage::from_pixel(
                40,
                30,
                image::Rgb([200, (c * 60) as u8, (j * 100) as u8]),
            );
            img.save(dir.join(format!("frame_{j:04}.jpg"))).unwrap();
        }
    }
    std::fs::write(root.join("dslr/images/bike/.DS_Store"), b"junk").unwrap();
    let spec = DataSpec {
        format: Format::Office31,
        root: root.clone(),
        domain: "dslr".into(),
        ..DataSpec::default()
    };
    let ds = spec.load().unwrap();
    assert_eq!(ds.num_classes, 31);
    // Sorted folder order: back_pack (0), bike (1), trash_can (30).
    assert_eq!(ds.labels, vec![0, 0, 1, 1, 30, 30]);
    let mut sorted = OFFICE31_CLASSES.to_vec();
    sorted.sort();
    assert_eq!(sorted, OFFICE31_CLASSES.to_vec());
    // Decoding happens per batch: a 30×40 JPEG, no resize, to 3×30×40 in [0, 1].
    let input = ebda_data::InputConfig {
        channels: 3,
        height: 30,
        width: 40,
        mean: vec![0.0],
        std: vec![1.0],
        ..Default::default()
    };
    let batch = ebda_data::assemble(&ds, &input, &[2, 5], false, 0, &Device::Cpu).unwrap();
    assert_eq!(batch.inputs.dims(), &[2, 3, 30, 40]);
    let red: Vec<f32> = batch
        .inputs
        .narrow(1, 0, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(
        red.iter().all(|v| (v - 200.0 / 255.0).abs() < 3.0 / 255.0),
        "red channel off"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn image_list_reads_paths_and_labels() {
    let root = common::temp_dir("list");
    std::fs::create_dir_all(root.join("a b")).unwrap();
    for (i, v) in [10u8, 250].iter().enumerate() {
        image::GrayImage::from_pixel(3, 3, image::Luma([*v]))
            .save(root.join(format!("a b/{i}.png")))
            .unwrap();
    }
    std::fs::write(root.join("list.txt"), "a b/0.png 1\n\na b/1.png 2\n").unwrap();
    let spec = DataSpec {
        format: Format::ImageList,
        root: root.clone(),
        list: "list.txt".into(),
        label_base: 1,
        ..DataSpec::default()
    };
    let ds = spec.load().unwrap();
    assert_eq!(ds.labels, vec![0, 1]);
    let input = ebda_data::InputConfig {
        channels: 1,
        height: 3,
        width: 3,
        mean: vec![0.0],
        std: vec![1.0],
        ..Default::default()
    };
    let batch = ebda_data::assemble(&ds, &input, &[0, 1], false, 0, &Device::Cpu).unwrap();
    let v: Vec<f32> = batch
        .inputs
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(
        v[..9].iter().all(|x| *x == 10.0 / 255.0) && v[9..].iter().all(|x| *x == 250.0 / 255.0)
    );
    std::fs::remove_dir_all(&root).unwrap();
}

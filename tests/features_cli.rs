//! `ebda features extract` end to end: a fixture image list in the real
//! list format (JPEG and PNG files), augmented views, determinism, the
//! metadata, errors, training on the written file; and the real Office-31
//! webcam domain.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ebda(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args(["--threads", "2"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Six small RGB images of three classes (colour encodes the class), as
/// JPEG and PNG files listed in `list.txt` (`path label` lines).
fn image_list(dir: &Path) -> PathBuf {
    let mut lines = Vec::new();
    for i in 0..6u32 {
        let class = i % 3;
        let img = image::RgbImage::from_fn(90 + 7 * i, 80, |x, y| {
            let c = [
                (class * 100) as u8,
                ((x * 3) % 256) as u8,
                ((y * 5 + i) % 256) as u8,
            ];
            image::Rgb(c)
        });
        let name = if i % 2 == 0 {
            format!("img{i}.jpg")
        } else {
            format!("img{i}.png")
        };
        img.save(dir.join(&name)).unwrap();
        lines.push(format!("{name} {class}"));
    }
    std::fs::write(dir.join("list.txt"), lines.join("\n") + "\n").unwrap();
    dir.join("list.txt")
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn metadata(path: &Path) -> HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

#[test]
fn extract_writes_features_the_trainer_reads() {
    let dir = common::temp_dir("features-extract");
    image_list(&dir);
    let spec = format!("image_list:{}:list.txt", dir.display());
    let out1 = dir.join("one.safetensors");
    let args = |out: &Path, views: &str| {
        vec![
            "features".to_string(),
            "extract".into(),
            "--backbone".into(),
            "resnet18".into(),
            "--random-init".into(),
            "--data".into(),
            spec.clone(),
            "--out".into(),
            out.display().to_string(),
            "--input-size".into(),
            "64".into(),
            "--resize".into(),
            "72".into(),
            "--batch".into(),
            "4".into(),
            "--views".into(),
            views.into(),
        ]
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = ebda(&a);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let said = run(args(&out1, "1"));
    assert!(
        said.contains("6 rows of 512 features (6 images × 1 views)"),
        "{said}"
    );
    assert!(said.contains("images/s"), "{said}");
    let t = read(&out1);
    assert_eq!(t["features"].dims(), &[6, 512]);
    let labels: Vec<u32> = t["labels"].to_vec1().unwrap();
    assert_eq!(labels, [0, 1, 2, 0, 1, 2]);
    let meta = metadata(&out1);
    assert_eq!(meta["backbone"], "resnet18");
    assert_eq!(meta["weights"], "random initialisation");
    assert!(meta["transform"].contains("centre crop 64"), "{meta:?}");
    let paths: Vec<String> = serde_json::from_str(&meta["paths"]).unwrap();
    assert_eq!(paths.len(), 6);
    assert!(paths[1].ends_with("img1.png"));

    // Augmented views: sample-major rows, different views, same file twice.
    let out3 = dir.join("three.safetensors");
    run(args(&out3, "3"));
    let t3 = read(&out3);
    assert_eq!(t3["features"].dims(), &[18, 512]);
    let index: Vec<u32> = t3["index"].to_vec1().unwrap();
    let view: Vec<u32> = t3["view"].to_vec1().unwrap();
    assert_eq!(&index[..6], &[0, 0, 0, 1, 1, 1]);
    assert_eq!(&view[..6], &[0, 1, 2, 0, 1, 2]);
    let f: Vec<Vec<f32>> = t3["features"].to_vec2().unwrap();
    assert_ne!(f[0], f[1], "two views of one image are different crops");
    let again = dir.join("again.safetensors");
    run(args(&again, "3"));
    let f2: Vec<Vec<f32>> = read(&again)["features"].to_vec2().unwrap();
    assert!(f == f2, "the same seed gives the same views");

    // The trainer reads the file (source = target here; it is a format check).
    let data = format!(r#"{{"format": "features", "root": "{}"}}"#, out1.display());
    let run_dir = dir.join("run");
    let sets = [
        format!("data.source={data}"),
        format!("data.target={data}"),
        format!("data.target_test={data}"),
        "data.source_test=null".to_string(),
        r#"model.features.backbone={"mlp": {"in_dim": 512, "hidden": [32]}}"#.to_string(),
        "model.classifier.num_classes=3".into(),
        "data.batch_size=4".into(),
        "data.eval_batch_size=4".into(),
        "method=dann".into(),
        "train.iterations=6".into(),
        "train.eval_every=3".into(),
        "train.checkpoint_every=3".into(),
    ];
    let mut a = vec![
        "train".to_string(),
        "--out".into(),
        run_dir.display().to_string(),
    ];
    for s in &sets {
        a.push("--set".into());
        a.push(s.clone());
    }
    let o = ebda(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(run_dir.join("metrics.jsonl").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn extract_refuses_what_it_cannot_do() {
    let dir = common::temp_dir("features-refuse");
    image_list(&dir);
    let spec = format!("image_list:{}:list.txt", dir.display());
    let out = dir.join("x.safetensors");
    let o = ebda(&[
        "features",
        "extract",
        "--backbone",
        "resnet50",
        "--data",
        &spec,
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = text(&o.stderr);
    assert!(
        !o.status.success()
            && e.contains("ebda data fetch resnet50")
            && e.contains("--random-init"),
        "{e}"
    );
    let o = ebda(&[
        "features",
        "extract",
        "--backbone",
        "vgg16",
        "--random-init",
        "--data",
        &spec,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text(&o.stderr).contains("expected resnet18, resnet34, resnet50 or resnet101"));
    let bad = dir.join("bad.pth");
    std::fs::write(&bad, b"\x80\x02 not a zip").unwrap();
    let o = ebda(&[
        "features",
        "extract",
        "--backbone",
        "resnet18",
        "--weights",
        bad.to_str().unwrap(),
        "--data",
        &spec,
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = text(&o.stderr);
    assert!(e.contains("bad.pth") && e.contains("legacy format"), "{e}");
    let o = ebda(&[
        "features",
        "extract",
        "--backbone",
        "resnet18",
        "--random-init",
        "--data",
        &spec,
        "--out",
        dir.join("x.bin").to_str().unwrap(),
    ]);
    assert!(text(&o.stderr).contains("must end in .safetensors"));
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The real Office-31 webcam domain (795 JPEGs), a random-init ResNet-18
/// at 112×112 to keep CI short: every image gives a row with its label.
#[test]
fn extract_reads_real_office31() {
    let Some(root) = common::real_data("office31") else {
        return;
    };
    let dir = common::temp_dir("features-office");
    let out = dir.join("webcam.safetensors");
    let o = ebda(&[
        "features",
        "extract",
        "--backbone",
        "resnet18",
        "--random-init",
        "--data",
        &format!("office31:{}:webcam", root.display()),
        "--out",
        out.to_str().unwrap(),
        "--input-size",
        "112",
        "--resize",
        "128",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    eprintln!("{}", text(&o.stdout));
    let t = read(&out);
    assert_eq!(t["features"].dims(), &[795, 512]);
    let labels: Vec<u32> = t["labels"].to_vec1().unwrap();
    assert_eq!(labels.iter().copied().max(), Some(30));
    let f = t["features"].to_dtype(DType::F64).unwrap();
    let finite: f64 = f.sum_all().unwrap().to_scalar().unwrap();
    assert!(finite.is_finite());
    std::fs::remove_dir_all(&dir).unwrap();
}

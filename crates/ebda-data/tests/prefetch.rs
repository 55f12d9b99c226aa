//! Batches prepared ahead on a worker thread equal batches made on demand,
//! across a checkpoint and a restore; decode errors reach the caller.

mod common;

use candle_core::Device;
use ebda_data::{DataSpec, Format, InputConfig, Loader, Sampling, eval_batches};
use std::sync::Arc;

fn values(b: &ebda_data::Batch) -> (Vec<f32>, Vec<u32>) {
    (
        b.inputs.flatten_all().unwrap().to_vec1().unwrap(),
        b.labels.to_vec1().unwrap(),
    )
}

/// A small image list: `n` PNGs of distinct content, 2 classes; image
/// `broken` (if any) is not an image.
fn image_list(
    name: &str,
    n: usize,
    broken: Option<usize>,
) -> (std::path::PathBuf, Arc<ebda_data::Dataset>) {
    let root = common::temp_dir(name);
    let mut list = String::new();
    for i in 0..n {
        let name = format!("{i}.png");
        if Some(i) == broken {
            std::fs::write(root.join(&name), b"not a png").unwrap();
        } else {
            image::RgbImage::from_fn(12, 10, |x, y| {
                image::Rgb([(i * 20) as u8, (x * 20) as u8, (y * 25) as u8])
            })
            .save(root.join(&name))
            .unwrap();
        }
        list.push_str(&format!("{name} {}\n", i % 2));
    }
    std::fs::write(root.join("list.txt"), list).unwrap();
    let ds = DataSpec {
        format: Format::ImageList,
        root: root.clone(),
        list: "list.txt".into(),
        ..DataSpec::default()
    }
    .load()
    .unwrap();
    (root, Arc::new(ds))
}

fn augmented_input() -> InputConfig {
    let mut input = InputConfig::imagenet(true);
    input.height = 8;
    input.width = 8;
    input.resize = Some(10);
    input
}

#[test]
fn prefetched_batches_equal_batches_made_on_demand_across_a_restore() {
    let (root, data) = image_list("prefetch-equal", 11, None);
    let input = augmented_input();
    let make = |ahead| {
        Loader::new(data.clone(), input.clone(), 4, 7, Sampling::Shuffle)
            .unwrap()
            .prefetch(ahead)
    };
    let dev = Device::Cpu;
    let mut plain = make(0);
    let mut ahead = make(3);
    let mut saved = None;
    for step in 0..9 {
        let (a, b) = (
            plain.next_batch(&dev).unwrap(),
            ahead.next_batch(&dev).unwrap(),
        );
        assert_eq!(values(&a), values(&b), "step {step}");
        assert_eq!(a.indices, b.indices);
        // The position is the one after the batch handed out, not after the
        // batches prepared beyond it.
        assert_eq!(plain.state(), ahead.state(), "step {step}");
        if step == 4 {
            saved = Some(ahead.state());
        }
    }
    // A loader restored to step 4's position (prefetching or not) goes on
    // exactly as the uninterrupted one did after step 4.
    let mut uninterrupted = make(0);
    let rest: Vec<_> = (0..9)
        .map(|_| values(&uninterrupted.next_batch(&dev).unwrap()))
        .skip(5)
        .collect();
    for k in [0, 2] {
        let mut resumed = make(k);
        resumed.next_batch(&dev).unwrap(); // work in flight is dropped by restore
        resumed.restore(saved.unwrap()).unwrap();
        let again: Vec<_> = (0..4)
            .map(|_| values(&resumed.next_batch(&dev).unwrap()))
            .collect();
        assert_eq!(again, rest, "prefetch {k}");
    }
    // Evaluation batches (decoded ahead for files) equal assembled ones.
    let eval_input = InputConfig::imagenet(false);
    let mut seen = 0;
    for b in eval_batches(&data, &eval_input, 3, &dev) {
        let b = b.unwrap();
        let direct = ebda_data::assemble(&data, &eval_input, &b.indices, false, 0, &dev).unwrap();
        assert_eq!(values(&b), values(&direct));
        assert_eq!(b.indices, (seen..(seen + 3).min(11)).collect::<Vec<_>>());
        seen += b.indices.len();
    }
    assert_eq!(seen, 11);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_broken_image_is_named_by_the_batch_that_holds_it() {
    let (root, data) = image_list("prefetch-broken", 6, Some(3));
    let dev = Device::Cpu;
    let mut loader = Loader::new(data.clone(), augmented_input(), 6, 0, Sampling::Shuffle)
        .unwrap()
        .prefetch(2);
    let e = loader.next_batch(&dev).unwrap_err().to_string();
    assert!(e.contains("3.png"), "{e}");
    let e = eval_batches(&data, &InputConfig::imagenet(false), 2, &dev)
        .find_map(|b| b.err())
        .expect("an error")
        .to_string();
    assert!(e.contains("3.png"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The real Office-31 webcam images: a prefetching loader gives the same
/// augmented batches as one assembling on demand.
#[test]
fn real_office31_prefetch_is_exact() {
    let Some(root) = common::real_data("office31") else {
        return;
    };
    let spec = DataSpec {
        format: Format::Office31,
        root,
        domain: "webcam".into(),
        ..DataSpec::default()
    };
    let data = Arc::new(spec.load().unwrap());
    let mut input = InputConfig::imagenet(true);
    (input.height, input.width, input.resize) = (64, 64, Some(72));
    let make = |ahead| {
        Loader::new(data.clone(), input.clone(), 8, 3, Sampling::Shuffle)
            .unwrap()
            .prefetch(ahead)
    };
    let (mut a, mut b) = (make(0), make(2));
    for _ in 0..4 {
        let (x, y) = (
            a.next_batch(&Device::Cpu).unwrap(),
            b.next_batch(&Device::Cpu).unwrap(),
        );
        assert_eq!(values(&x), values(&y));
    }
}

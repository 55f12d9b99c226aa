//! The loaders on the real shared digits (`../shared/data` or `$EBDA_DATA_DIR`).

mod common;

use candle_core::Device;
use ebda_data::{DataSpec, Format, InputConfig, Loader, Sampling, eval_batches};
use std::sync::Arc;

#[test]
fn mnist_real_counts_and_ranges() {
    let Some(root) = common::real_data("mnist") else {
        return;
    };
    let train = DataSpec::new(Format::Mnist, &root, "train").load().unwrap();
    assert_eq!(train.len(), 5000);
    assert_eq!(train.class_counts(), vec![500; 10]);
    assert_eq!(train.stored_dims(), Some(vec![1, 28, 28]));
    assert_eq!(train.value_range, Some((0.0, 255.0)));
    let test = DataSpec::new(Format::Mnist, &root, "test").load().unwrap();
    assert_eq!(test.len(), 10000);
    assert_eq!(
        test.class_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(test.value_range, Some((0.0, 255.0)));
}

#[test]
fn usps_real_counts_and_ranges() {
    let Some(root) = common::real_data("usps") else {
        return;
    };
    let train = DataSpec::new(Format::Usps, &root, "train").load().unwrap();
    assert_eq!(train.len(), 7291);
    assert_eq!(
        train.class_counts(),
        vec![1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
    );
    assert_eq!(train.labels[0], 6, "the first USPS training digit is a 6");
    assert_eq!(train.stored_dims(), Some(vec![1, 16, 16]));
    let (lo, hi) = train.value_range.unwrap();
    assert!(
        (-1.0..-0.99).contains(&lo) && (0.99..=1.0).contains(&hi),
        "range [{lo}, {hi}]"
    );
    let test = DataSpec::new(Format::Usps, &root, "test").load().unwrap();
    assert_eq!(test.len(), 2007);
    assert_eq!(
        test.class_counts(),
        vec![359, 264, 198, 166, 200, 160, 170, 147, 166, 177]
    );
}

#[test]
fn real_batches_have_the_configured_shape_and_range() {
    let Some(root) = common::real_data("usps") else {
        return;
    };
    let usps = Arc::new(DataSpec::new(Format::Usps, &root, "train").load().unwrap());
    // USPS 16×16 resized to LeNet's 28×28, normalised to [−1, 1].
    let mut loader = Loader::new(
        usps.clone(),
        InputConfig::default(),
        64,
        0,
        Sampling::Shuffle,
    )
    .unwrap();
    let batch = loader.next_batch(&Device::Cpu).unwrap();
    assert_eq!(batch.inputs.dims(), &[64, 1, 28, 28]);
    let lo = batch.inputs.min_all().unwrap().to_scalar::<f32>().unwrap();
    let hi = batch.inputs.max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(lo >= -1.0 && hi <= 1.0 && hi - lo > 1.5, "[{lo}, {hi}]");
    let n: usize = eval_batches(&usps, &InputConfig::default(), 1000, &Device::Cpu)
        .map(|b| b.unwrap().labels.dims()[0])
        .sum();
    assert_eq!(n, 7291);
}

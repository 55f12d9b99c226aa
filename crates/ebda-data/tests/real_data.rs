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

/// Office-Caltech10 SURF (`.mat` v5): the counts of the shared README, the
/// 800-d bag-of-words histograms, and the L1 + z-score normalisation.
#[test]
fn office_caltech10_surf_real_counts_and_normalisation() {
    use ebda_data::{Samples, VectorNorm};
    let Some(root) = common::real_data("office_caltech10/surf") else {
        return;
    };
    let expected: [(&str, [usize; 10]); 4] = [
        ("amazon", [92, 82, 94, 99, 100, 100, 99, 100, 94, 98]),
        ("Caltech10", [151, 110, 100, 138, 85, 128, 133, 94, 87, 97]),
        ("dslr", [12, 21, 12, 13, 10, 24, 22, 12, 8, 23]),
        ("webcam", [29, 21, 31, 27, 27, 30, 43, 30, 27, 30]),
    ];
    for (domain, counts) in expected {
        let spec = DataSpec {
            format: Format::Features,
            root: root.join(format!("{domain}_SURF_L10.mat")),
            features_key: "fts".into(),
            labels_key: "labels".into(),
            label_base: 1,
            num_classes: Some(10),
            ..DataSpec::default()
        };
        let raw = spec.load().unwrap();
        assert_eq!(raw.class_counts(), counts, "{domain}");
        assert_eq!(raw.stored_dims(), Some(vec![800]), "{domain}");
        let Samples::Vectors { values: raw_v, .. } = &raw.samples else {
            panic!("vectors")
        };
        // Counts of visual words: non-negative integers, every image has some.
        assert!(
            raw_v.iter().all(|&v| v >= 0.0 && v.fract() == 0.0),
            "{domain}"
        );
        assert!(raw_v.chunks(800).all(|r| r.iter().sum::<f32>() > 0.0));

        let l1 = DataSpec {
            normalize: vec![VectorNorm::L1],
            ..spec.clone()
        }
        .load()
        .unwrap();
        let Samples::Vectors { values, .. } = &l1.samples else {
            panic!("vectors")
        };
        for row in values.chunks(800) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let z = DataSpec {
            normalize: vec![VectorNorm::L1, VectorNorm::Zscore],
            ..spec
        }
        .load()
        .unwrap();
        let Samples::Vectors { values, .. } = &z.samples else {
            panic!("vectors")
        };
        let n = z.len();
        for j in (0..800).step_by(37) {
            let col: Vec<f64> = values
                .iter()
                .skip(j)
                .step_by(800)
                .map(|&v| f64::from(v))
                .collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!(mean.abs() < 1e-5, "{domain} column {j}: mean {mean}");
            // A column with no occurrence in this domain stays 0.
            assert!(
                (var - 1.0).abs() < 1e-4 || var == 0.0,
                "{domain} column {j}: var {var}"
            );
        }
    }
}

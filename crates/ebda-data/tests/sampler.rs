//! Sampler and loader determinism: one seed, one sequence; a restored state
//! continues it exactly.

use candle_core::Device;
use ebda_data::{Dataset, InputConfig, Loader, Sampler, Samples, Sampling};
use std::sync::Arc;

fn toy(n: usize) -> Dataset {
    Dataset {
        name: "toy".into(),
        samples: Samples::Images {
            pixels: (0..n * 16).map(|i| (i % 251) as u8).collect(),
            dims: [1, 4, 4],
        },
        labels: (0..n as u32).map(|i| i % 3).collect(),
        num_classes: 3,
        class_names: None,
        files: Vec::new(),
        value_range: None,
    }
}

#[test]
fn same_seed_same_batches_and_restore_continues() {
    for mode in [Sampling::Shuffle, Sampling::ClassBalanced] {
        let labels: Vec<u32> = (0..50).map(|i| i % 3).collect();
        let mut a = Sampler::new(&labels, 3, 8, 42, mode).unwrap();
        let mut b = Sampler::new(&labels, 3, 8, 42, mode).unwrap();
        let seq_a: Vec<Vec<usize>> = (0..20).map(|_| a.next_indices()).collect();
        let seq_b: Vec<Vec<usize>> = (0..20).map(|_| b.next_indices()).collect();
        assert_eq!(seq_a, seq_b, "{mode:?}");
        let mut other = Sampler::new(&labels, 3, 8, 43, mode).unwrap();
        assert_ne!(seq_a[0], other.next_indices());

        // Save after 7 batches (mid-epoch and across an epoch boundary), restore into a fresh sampler.
        let mut c = Sampler::new(&labels, 3, 8, 42, mode).unwrap();
        for _ in 0..7 {
            c.next_indices();
        }
        let saved = serde_json::to_string(&c.state()).unwrap();
        let mut d = Sampler::new(&labels, 3, 8, 42, mode).unwrap();
        d.restore(serde_json::from_str(&saved).unwrap()).unwrap();
        let rest: Vec<Vec<usize>> = (7..20).map(|_| d.next_indices()).collect();
        assert_eq!(rest, seq_a[7..].to_vec(), "{mode:?}");
    }
}

#[test]
fn loaders_with_augmentation_replay_from_state() {
    let data = Arc::new(toy(40));
    let input = InputConfig {
        height: 4,
        width: 4,
        augment: ebda_data::Augment {
            random_resized_crop: true,
            hflip: true,
            ..Default::default()
        },
        ..InputConfig::default()
    };
    let dev = Device::Cpu;
    let mut a = Loader::new(data.clone(), input.clone(), 6, 9, Sampling::Shuffle).unwrap();
    let batches: Vec<Vec<f32>> = (0..10)
        .map(|_| {
            a.next_batch(&dev)
                .unwrap()
                .inputs
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    let mut b = Loader::new(data.clone(), input.clone(), 6, 9, Sampling::Shuffle).unwrap();
    for _ in 0..4 {
        b.next_batch(&dev).unwrap();
    }
    let state = b.state();
    let mut c = Loader::new(data, input, 6, 9, Sampling::Shuffle).unwrap();
    c.restore(state).unwrap();
    for want in &batches[4..] {
        let got: Vec<f32> = c
            .next_batch(&dev)
            .unwrap()
            .inputs
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(&got, want);
    }
}

#[test]
fn bad_sampler_settings_are_errors() {
    let labels = vec![0u32; 5];
    assert!(
        Sampler::new(&labels, 1, 6, 0, Sampling::Shuffle)
            .unwrap_err()
            .to_string()
            .contains("batch size 6 exceeds the 5 samples")
    );
    assert!(Sampler::new(&labels, 1, 0, 0, Sampling::Shuffle).is_err());
    let mut s = Sampler::new(&labels, 1, 2, 0, Sampling::Shuffle).unwrap();
    let bad = ebda_data::SamplerState {
        epoch: 0,
        position: 99,
        batches: 0,
    };
    assert!(s.restore(bad).is_err());
}

//! Seeded, endless, resumable index samplers for iteration-counted training.
//!
//! - `shuffle`: a fresh permutation every epoch (seeded by `(seed, epoch)`),
//!   consumed in batches; a partial batch at an epoch's end is dropped and
//!   the next epoch starts (as PyTorch's `drop_last=True` loaders in
//!   iteration-counted DA loops, and the reference `torch_da.py`).
//! - `class_balanced`: each draw picks a class uniformly among the non-empty
//!   ones, then a sample of that class uniformly, with replacement (seeded
//!   by `(seed, batch number)`).
//!
//! The state is three counters ([`SamplerState`]): saving and restoring it
//! continues the same sequence, because every random choice is derived from
//! the seed and the counters rather than from a running generator.

use crate::{Error, Result};
use rand::Rng as _;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

/// How a sampler picks indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    #[default]
    Shuffle,
    ClassBalanced,
}

/// Where a sampler stands in its sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// Current epoch (shuffle).
    pub epoch: u64,
    /// Next position in the current epoch's permutation (shuffle).
    pub position: usize,
    /// Batches drawn so far.
    pub batches: u64,
}

/// Mixes counters into a seed (SplitMix64 finaliser over a running xor).
pub fn mix(parts: &[u64]) -> u64 {
    let mut z: u64 = 0x9e37_79b9_7f4a_7c15;
    for &p in parts {
        z ^= p
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(z << 6)
            .wrapping_add(z >> 2);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

/// An endless sampler of index batches.
#[derive(Clone, Debug)]
pub struct Sampler {
    n: usize,
    batch: usize,
    seed: u64,
    mode: Sampling,
    by_class: Vec<Vec<u32>>,
    perm: Vec<u32>,
    state: SamplerState,
}

impl Sampler {
    /// A sampler over `labels.len()` samples in batches of `batch`.
    pub fn new(
        labels: &[u32],
        num_classes: usize,
        batch: usize,
        seed: u64,
        mode: Sampling,
    ) -> Result<Self> {
        let n = labels.len();
        if batch == 0 {
            return Err(Error::Usage("batch size must be > 0".into()));
        }
        if mode == Sampling::Shuffle && batch > n {
            return Err(Error::Usage(format!(
                "batch size {batch} exceeds the {n} samples of the dataset"
            )));
        }
        if n == 0 {
            return Err(Error::Usage("cannot sample from an empty dataset".into()));
        }
        let mut by_class = Vec::new();
        if mode == Sampling::ClassBalanced {
            by_class = vec![Vec::new(); num_classes];
            for (i, &y) in labels.iter().enumerate() {
                by_class[y as usize].push(i as u32);
            }
            by_class.retain(|c| !c.is_empty());
        }
        let mut s = Self {
            n,
            batch,
            seed,
            mode,
            by_class,
            perm: Vec::new(),
            state: SamplerState::default(),
        };
        s.reshuffle();
        Ok(s)
    }

    fn reshuffle(&mut self) {
        if self.mode == Sampling::Shuffle {
            self.perm = (0..self.n as u32).collect();
            let mut rng = Pcg64Mcg::seed_from_u64(mix(&[self.seed, self.state.epoch]));
            self.perm.shuffle(&mut rng);
        }
    }

    /// The next batch of indices.
    pub fn next_indices(&mut self) -> Vec<usize> {
        let out = match self.mode {
            Sampling::Shuffle => {
                if self.state.position + self.batch > self.n {
                    self.state.epoch += 1;
                    self.state.position = 0;
                    self.reshuffle();
                }
                let p = self.state.position;
                self.state.position += self.batch;
                self.perm[p..p + self.batch]
                    .iter()
                    .map(|&i| i as usize)
                    .collect()
            }
            Sampling::ClassBalanced => {
                let mut rng =
                    Pcg64Mcg::seed_from_u64(mix(&[self.seed, u64::MAX, self.state.batches]));
                (0..self.batch)
                    .map(|_| {
                        let class = &self.by_class[rng.random_range(0..self.by_class.len())];
                        class[rng.random_range(0..class.len())] as usize
                    })
                    .collect()
            }
        };
        self.state.batches += 1;
        out
    }

    /// The position in the sequence.
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Continues from a saved position.
    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        if state.position > self.n {
            return Err(Error::Usage(format!(
                "sampler state position {} exceeds the {} samples of the dataset",
                state.position, self.n
            )));
        }
        let epoch_changed = state.epoch != self.state.epoch;
        self.state = state;
        if epoch_changed || self.perm.is_empty() {
            self.reshuffle();
        }
        Ok(())
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_partial_batches_are_dropped() {
        let labels = vec![0u32; 10];
        let mut s = Sampler::new(&labels, 1, 3, 7, Sampling::Shuffle).unwrap();
        let mut seen: Vec<usize> = (0..3).flat_map(|_| s.next_indices()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9, "9 distinct indices in the first epoch");
        s.next_indices();
        assert_eq!(s.state().epoch, 1);
        assert_eq!(s.state().position, 3);
    }

    #[test]
    fn balanced_sampling_evens_out_classes() {
        let mut labels = vec![0u32; 900];
        labels.extend(vec![1u32; 100]);
        let mut s = Sampler::new(&labels, 2, 100, 1, Sampling::ClassBalanced).unwrap();
        let ones: usize = (0..20)
            .flat_map(|_| s.next_indices())
            .filter(|&i| i >= 900)
            .count();
        assert!(
            (800..1200).contains(&ones),
            "{ones} of 2000 from the small class"
        );
    }
}

//! Batches as candle tensors: sampled for training, in order for evaluation.

use crate::dataset::{Dataset, Samples};
use crate::images::decode_image;
use crate::preprocess::{InputConfig, Planar, process, resize_file_image};
use crate::sampler::{Sampler, SamplerState, Sampling, mix};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use std::sync::Arc;

/// A batch on a device.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[b, c, h, w]` images or `[b, d]` vectors, `f32`.
    pub inputs: Tensor,
    /// `[b]` class ids, `u32`.
    pub labels: Tensor,
    /// Dataset indices of the batch's samples.
    pub indices: Vec<usize>,
}

/// Assembles the samples `indices` of `data` into a batch on `device`.
///
/// Stored images are converted per sample (cheap for digits); image files
/// are decoded in parallel with rayon. With `augment`, the random choices of
/// sample `i` of the batch come from a generator seeded by `(aug_seed, i)`.
pub fn assemble(
    data: &Dataset,
    input: &InputConfig,
    indices: &[usize],
    augment: bool,
    aug_seed: u64,
    device: &Device,
) -> Result<Batch> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(Error::Usage(format!(
            "index {bad} out of range for {} ({} samples)",
            data.name,
            data.len()
        )));
    }
    let b = indices.len();
    let labels: Vec<u32> = indices.iter().map(|&i| data.labels[i]).collect();
    let labels = Tensor::from_vec(labels, b, device)?;
    let inputs = match &data.samples {
        Samples::Vectors { values, dim } => {
            let mut out = Vec::with_capacity(b * dim);
            for &i in indices {
                out.extend_from_slice(&values[i * dim..(i + 1) * dim]);
            }
            Tensor::from_vec(out, (b, *dim), device)?
        }
        Samples::Images {
            pixels,
            dims: [c, h, w],
        } => {
            let len = c * h * w;
            let mut out = vec![0f32; b * input.sample_len()];
            for (slot, (&i, dst)) in indices
                .iter()
                .zip(out.chunks_exact_mut(input.sample_len()))
                .enumerate()
            {
                let img = Planar::from_u8(*c, *h, *w, &pixels[i * len..(i + 1) * len]);
                let mut rng = Pcg64Mcg::seed_from_u64(mix(&[aug_seed, slot as u64]));
                process(img, input, augment, &mut rng, dst);
            }
            Tensor::from_vec(out, (b, input.channels, input.height, input.width), device)?
        }
        Samples::Files { paths } => {
            let mut out = vec![0f32; b * input.sample_len()];
            out.par_chunks_exact_mut(input.sample_len())
                .zip(indices.par_iter().enumerate())
                .try_for_each(|(dst, (slot, &i))| -> Result<()> {
                    let img = resize_file_image(decode_image(&paths[i])?, input.resize);
                    let mut rng = Pcg64Mcg::seed_from_u64(mix(&[aug_seed, slot as u64]));
                    process(
                        Planar::from_image(&img, input.channels),
                        input,
                        augment,
                        &mut rng,
                        dst,
                    );
                    Ok(())
                })?;
            Tensor::from_vec(out, (b, input.channels, input.height, input.width), device)?
        }
    };
    Ok(Batch {
        inputs,
        labels,
        indices: indices.to_vec(),
    })
}

/// An endless training loader: a [`Sampler`] plus preprocessing with augmentation.
#[derive(Clone, Debug)]
pub struct Loader {
    data: Arc<Dataset>,
    input: InputConfig,
    sampler: Sampler,
    seed: u64,
}

impl Loader {
    /// A loader over `data` with batches of `batch`, seeded by `seed`.
    pub fn new(
        data: Arc<Dataset>,
        input: InputConfig,
        batch: usize,
        seed: u64,
        sampling: Sampling,
    ) -> Result<Self> {
        input.validate()?;
        let sampler = Sampler::new(&data.labels, data.num_classes, batch, seed, sampling)?;
        Ok(Self {
            data,
            input,
            sampler,
            seed,
        })
    }

    /// The next training batch (augmented if the input config says so).
    pub fn next_batch(&mut self, device: &Device) -> Result<Batch> {
        let draw = self.sampler.state().batches;
        let indices = self.sampler.next_indices();
        let aug_seed = mix(&[self.seed, 0xa5a5, draw]);
        assemble(&self.data, &self.input, &indices, true, aug_seed, device)
    }

    /// The sampler's position (part of a checkpoint).
    pub fn state(&self) -> SamplerState {
        self.sampler.state()
    }

    /// Continues from a saved position.
    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        self.sampler.restore(state)
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.data
    }
}

/// The whole dataset in order, in batches of at most `batch`, without augmentation.
pub fn eval_batches<'a>(
    data: &'a Dataset,
    input: &'a InputConfig,
    batch: usize,
    device: &'a Device,
) -> impl Iterator<Item = Result<Batch>> + 'a {
    let batch = batch.max(1);
    (0..data.len()).step_by(batch).map(move |start| {
        let indices: Vec<usize> = (start..(start + batch).min(data.len())).collect();
        assemble(data, input, &indices, false, 0, device)
    })
}

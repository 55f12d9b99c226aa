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
    assemble_host(data, input, indices, augment, aug_seed)?.to_device(device)
}

/// A batch in host memory, before it is moved to a device: what a worker
/// thread prepares ahead of the training step.
#[derive(Clone, Debug)]
pub struct HostBatch {
    /// Row-major inputs of shape `shape`.
    pub inputs: Vec<f32>,
    /// `[b, c, h, w]` or `[b, d]`.
    pub shape: Vec<usize>,
    pub labels: Vec<u32>,
    pub indices: Vec<usize>,
}

impl HostBatch {
    /// The batch as tensors on `device`.
    pub fn to_device(self, device: &Device) -> Result<Batch> {
        let b = self.labels.len();
        Ok(Batch {
            inputs: Tensor::from_vec(self.inputs, self.shape, device)?,
            labels: Tensor::from_vec(self.labels, b, device)?,
            indices: self.indices,
        })
    }
}

/// [`assemble`] into host memory.
pub fn assemble_host(
    data: &Dataset,
    input: &InputConfig,
    indices: &[usize],
    augment: bool,
    aug_seed: u64,
) -> Result<HostBatch> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(Error::Usage(format!(
            "index {bad} out of range for {} ({} samples)",
            data.name,
            data.len()
        )));
    }
    let b = indices.len();
    let labels: Vec<u32> = indices.iter().map(|&i| data.labels[i]).collect();
    let image_shape = vec![b, input.channels, input.height, input.width];
    let (inputs, shape) = match &data.samples {
        Samples::Vectors { values, dim } => {
            let mut out = Vec::with_capacity(b * dim);
            for &i in indices {
                out.extend_from_slice(&values[i * dim..(i + 1) * dim]);
            }
            (out, vec![b, *dim])
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
            (out, image_shape)
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
            (out, image_shape)
        }
    };
    Ok(HostBatch {
        inputs,
        shape,
        labels,
        indices: indices.to_vec(),
    })
}

/// One batch to prepare: its samples and the seed of their augmentation.
struct Job {
    indices: Vec<usize>,
    aug_seed: u64,
}

/// A thread that assembles jobs in the order they are sent.
struct Worker {
    jobs: std::sync::mpsc::Sender<Job>,
    done: std::sync::mpsc::Receiver<Result<HostBatch>>,
}

impl Worker {
    fn spawn(data: Arc<Dataset>, input: InputConfig, augment: bool) -> Result<Self> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("ebda-prefetch {}", data.name))
            .spawn(move || {
                for job in job_rx {
                    let batch = assemble_host(&data, &input, &job.indices, augment, job.aug_seed);
                    if done_tx.send(batch).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Usage(format!("cannot start a batch-preparing thread: {e}")))?;
        Ok(Self { jobs, done })
    }
}

/// An endless training loader: a [`Sampler`] plus preprocessing with augmentation.
///
/// With [`Loader::prefetch`], a worker thread prepares the next batches
/// (decoding and augmenting image files) while the caller trains on the
/// current one. The batches are the same with and without it: which samples
/// and which augmentation a batch gets depend only on the seed and the
/// number of batches drawn before it, and [`Loader::state`] is the position
/// after the last batch handed out, whatever was prepared beyond it.
pub struct Loader {
    data: Arc<Dataset>,
    input: InputConfig,
    sampler: Sampler,
    seed: u64,
    ahead: usize,
    worker: Option<Worker>,
    /// Sampler positions after each batch sent to the worker, oldest first.
    pending: std::collections::VecDeque<SamplerState>,
    /// The position after the last batch handed out.
    consumed: SamplerState,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("data", &self.data.name)
            .field("seed", &self.seed)
            .field("ahead", &self.ahead)
            .field("consumed", &self.consumed)
            .finish()
    }
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
        let consumed = sampler.state();
        Ok(Self {
            data,
            input,
            sampler,
            seed,
            ahead: 0,
            worker: None,
            pending: Default::default(),
            consumed,
        })
    }

    /// Prepares up to `ahead` batches beyond the current one on a worker
    /// thread (0: every batch is assembled when asked for).
    pub fn prefetch(mut self, ahead: usize) -> Self {
        self.ahead = ahead;
        self
    }

    /// The next training batch (augmented if the input config says so).
    pub fn next_batch(&mut self, device: &Device) -> Result<Batch> {
        if self.ahead == 0 {
            let job = self.plan();
            self.consumed = self.sampler.state();
            return assemble_host(&self.data, &self.input, &job.indices, true, job.aug_seed)?
                .to_device(device);
        }
        if self.worker.is_none() {
            self.worker = Some(Worker::spawn(self.data.clone(), self.input.clone(), true)?);
        }
        while self.pending.len() <= self.ahead {
            let job = self.plan();
            self.pending.push_back(self.sampler.state());
            let sent = self.worker.as_ref().map(|w| w.jobs.send(job));
            if !matches!(sent, Some(Ok(()))) {
                return Err(self.worker_lost());
            }
        }
        let received = self.worker.as_ref().map(|w| w.done.recv());
        let Some(Ok(batch)) = received else {
            return Err(self.worker_lost());
        };
        self.consumed = self.pending.pop_front().expect("a batch was pending");
        batch?.to_device(device)
    }

    /// The samples and augmentation seed of the next batch to prepare.
    fn plan(&mut self) -> Job {
        let draw = self.sampler.state().batches;
        let indices = self.sampler.next_indices();
        Job {
            indices,
            aug_seed: mix(&[self.seed, 0xa5a5, draw]),
        }
    }

    fn worker_lost(&mut self) -> Error {
        self.worker = None;
        Error::Usage(format!(
            "the thread preparing batches of {} stopped (see the log above)",
            self.data.name
        ))
    }

    /// The sampler's position after the last batch handed out (part of a
    /// checkpoint).
    pub fn state(&self) -> SamplerState {
        self.consumed
    }

    /// Continues from a saved position; batches prepared ahead are dropped.
    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        self.worker = None;
        self.pending.clear();
        self.sampler.restore(state)?;
        self.consumed = state;
        Ok(())
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.data
    }
}

/// The whole dataset in order, in batches of at most `batch`, without augmentation.
///
/// Image files are decoded on a worker thread two batches ahead of the
/// caller; in-memory data is assembled when asked for.
pub fn eval_batches<'a>(
    data: &'a Dataset,
    input: &'a InputConfig,
    batch: usize,
    device: &'a Device,
) -> impl Iterator<Item = Result<Batch>> + 'a {
    let batch = batch.max(1);
    let chunks = move |n: usize| {
        (0..n)
            .step_by(batch)
            .map(move |start| (start..(start + batch).min(n)).collect::<Vec<usize>>())
    };
    let worker = match data.samples {
        Samples::Files { .. } => Some(
            Worker::spawn(Arc::new(data.clone()), input.clone(), false).map(|w| {
                // At most two batches in flight: bounded memory, decode overlapped.
                let mut plan = chunks(data.len());
                for job in plan.by_ref().take(2) {
                    let _ = w.jobs.send(Job {
                        indices: job,
                        aug_seed: 0,
                    });
                }
                (w, plan)
            }),
        ),
        _ => None,
    };
    match worker {
        Some(Ok((w, plan))) => EvalIter::Ahead {
            worker: w,
            plan: Box::new(plan),
            left: data.len().div_ceil(batch),
            device,
        },
        Some(Err(e)) => EvalIter::Failed(Some(e)),
        None => EvalIter::Direct(Box::new(
            chunks(data.len())
                .map(move |indices| assemble(data, input, &indices, false, 0, device)),
        )),
    }
}

enum EvalIter<'a> {
    Direct(Box<dyn Iterator<Item = Result<Batch>> + 'a>),
    Ahead {
        worker: Worker,
        plan: Box<dyn Iterator<Item = Vec<usize>> + 'a>,
        left: usize,
        device: &'a Device,
    },
    Failed(Option<Error>),
}

impl Iterator for EvalIter<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        match self {
            EvalIter::Direct(it) => it.next(),
            EvalIter::Failed(e) => e.take().map(Err),
            EvalIter::Ahead {
                worker,
                plan,
                left,
                device,
            } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                if let Some(indices) = plan.next() {
                    let _ = worker.jobs.send(Job {
                        indices,
                        aug_seed: 0,
                    });
                }
                Some(match worker.done.recv() {
                    Ok(b) => b.and_then(|b| b.to_device(device)),
                    Err(_) => Err(Error::Usage(
                        "the thread decoding evaluation batches stopped".into(),
                    )),
                })
            }
        }
    }
}

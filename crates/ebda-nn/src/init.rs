//! Seeded variable initialisation for `VarMap`-backed `VarBuilder`s.
//!
//! candle's CPU backend cannot be seeded (`Device::set_seed` fails on CPU), so
//! `VarMap`'s own initialisation differs on every run. [`SeededInit`] wraps a
//! `VarMap`: a variable that already exists is returned as is (so a loaded
//! checkpoint wins), a new one is drawn on the host from a generator seeded by
//! `(seed, variable name)` — independent of construction order — and moved to
//! the requested device as a trainable `Var`.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng as _, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

/// A `VarMap` backend that initialises new variables from a seeded generator.
pub struct SeededInit {
    map: VarMap,
    seed: u64,
}

impl SeededInit {
    /// Wraps `map` (a handle: variables land in the caller's map).
    pub fn new(map: &VarMap, seed: u64) -> Self {
        Self {
            map: map.clone(),
            seed,
        }
    }
}

/// A `VarBuilder` over `map` whose new variables are seeded by `seed`.
pub fn seeded_var_builder(
    map: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededInit::new(map, seed)), dtype, device.clone())
}

/// FNV-1a of the name, mixed with the seed through SplitMix64's finaliser.
fn stream_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = seed ^ h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sample(init: Init, shape: &Shape, rng: &mut Pcg64Mcg) -> Vec<f32> {
    let n = shape.elem_count();
    let uniform = |lo: f64, up: f64, rng: &mut Pcg64Mcg| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..up) as f32).collect()
    };
    let normal = |mean: f64, std: f64, rng: &mut Pcg64Mcg| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (mean + std * z) as f32
            })
            .collect()
    };
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Uniform { lo, up } if lo < up => uniform(lo, up, rng),
        Init::Uniform { lo, .. } => vec![lo as f32; n],
        Init::Randn { mean, stdev } => normal(mean, stdev, rng),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan.for_shape(shape).max(1);
            let std = non_linearity.gain() / (fan as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(-bound, bound, rng)
                }
                NormalOrUniform::Normal => normal(0.0, std, rng),
            }
        }
    }
}

impl SimpleBackend for SeededInit {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let mut data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            let existing = var.as_tensor();
            if existing.shape() != &shape {
                candle_core::bail!(
                    "variable {name}: expected shape {shape:?}, the map holds {:?}",
                    existing.shape()
                );
            }
            return existing.to_dtype(dtype);
        }
        let mut rng = Pcg64Mcg::seed_from_u64(stream_seed(self.seed, name));
        let values = sample(init, &shape, &mut rng);
        let host = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&host.to_device(device)?)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        match data.get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype)?.to_device(device),
            None => candle_core::bail!("variable {name} is not in the map"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(seed: u64, names: &[&str]) -> Vec<Vec<f32>> {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, seed, DType::F32, &Device::Cpu);
        names
            .iter()
            .map(|n| {
                vb.get_with_hints(8, n, Init::Uniform { lo: -1.0, up: 1.0 })
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn same_seed_same_values_in_any_order() {
        let a = draw(3, &["x", "y"]);
        let b = draw(3, &["y", "x"]);
        assert_eq!(a[0], b[1]);
        assert_eq!(a[1], b[0]);
        assert_ne!(a[0], a[1]);
        assert_ne!(draw(4, &["x"])[0], a[0]);
        assert!(a[0].iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn variables_are_trainable_and_reused() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
        let w = vb.get_with_hints((2, 3), "w", Init::Const(0.5)).unwrap();
        assert_eq!(map.all_vars().len(), 1);
        let again = vb.get_with_hints((2, 3), "w", Init::Const(9.0)).unwrap();
        assert_eq!(again.to_vec2::<f32>().unwrap(), vec![vec![0.5; 3]; 2]);
        let loss = w.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(&map.all_vars()[0]).is_some());
        assert!(vb.get_with_hints((3, 2), "w", Init::Const(0.0)).is_err());
    }
}

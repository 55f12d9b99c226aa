//! Proxy A-distance: how well a linear classifier tells source features from
//! target features (Ben-David et al., "Analysis of Representations for Domain
//! Adaptation", NIPS 2007; used by Ganin et al., JMLR 2016, §5.1.5).
//!
//! `PAD = 2 (1 − 2ε)`, with `ε` the held-out error of a linear domain
//! classifier: 0 when the domains are indistinguishable (ε = ½), 2 when they
//! are perfectly separable (ε = 0). The same measure for every method, so
//! DANN's and EBDA's alignment can be compared on one scale.
//!
//! Here: at most `max_per_domain` feature vectors per domain (a seeded
//! sample), split half for training and half for testing, standardised with
//! the training half's statistics (and scaled by 1/√dim), an L2-regularised logistic regression
//! fitted by full-batch gradient descent, and `ε` measured on the test half
//! (clipped at ½).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64Mcg;

/// Settings of the domain classifier.
#[derive(Clone, Copy, Debug)]
pub struct PadConfig {
    pub max_per_domain: usize,
    pub steps: usize,
    pub lr: f64,
    pub l2: f64,
    pub seed: u64,
}

impl Default for PadConfig {
    fn default() -> Self {
        Self {
            max_per_domain: 2000,
            steps: 300,
            lr: 0.5,
            l2: 1e-3,
            seed: 0,
        }
    }
}

/// Samples of one split: (row index, domain label 1 = source, 0 = target).
type Rows = Vec<(usize, f64)>;

/// `2 (1 − 2ε)` for feature matrices `source` `[n_s, dim]` and `target` `[n_t, dim]` (row-major).
pub fn proxy_a_distance(source: &[f32], target: &[f32], dim: usize, cfg: &PadConfig) -> f64 {
    let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed);
    let mut take = |data: &[f32], label: f64| -> (Rows, Rows) {
        let n = data.len() / dim.max(1);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rng);
        idx.truncate(cfg.max_per_domain);
        let half = idx.len() / 2;
        let rows = |s: &[usize]| s.iter().map(|&i| (i, label)).collect::<Vec<_>>();
        (rows(&idx[..half]), rows(&idx[half..]))
    };
    let (s_train, s_test) = take(source, 1.0);
    let (t_train, t_test) = take(target, 0.0);
    if s_train.is_empty() || t_train.is_empty() || s_test.is_empty() || t_test.is_empty() {
        return 0.0;
    }
    let row = |label: f64, i: usize| -> &[f32] {
        let data = if label > 0.5 { source } else { target };
        &data[i * dim..(i + 1) * dim]
    };
    let train: Vec<(usize, f64)> = s_train.into_iter().chain(t_train).collect();
    let test: Vec<(usize, f64)> = s_test.into_iter().chain(t_test).collect();
    // Standardise with the training half's statistics.
    let mut mean = vec![0.0; dim];
    let mut var = vec![0.0; dim];
    for &(i, y) in &train {
        for (m, &v) in mean.iter_mut().zip(row(y, i)) {
            *m += f64::from(v);
        }
    }
    let n = train.len() as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    for &(i, y) in &train {
        for ((s, m), &v) in var.iter_mut().zip(&mean).zip(row(y, i)) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    // Standardised, then scaled by 1/√dim so that ‖x‖² ≈ 1: the logistic
    // loss is then 1/4-smooth and the fixed step below is stable.
    let scale = (dim as f64).sqrt();
    let std: Vec<f64> = var
        .iter()
        .map(|v| (v / n).sqrt().max(1e-3) * scale)
        .collect();
    let features = |set: &[(usize, f64)]| -> Vec<(Vec<f64>, f64)> {
        set.iter()
            .map(|&(i, y)| {
                (
                    row(y, i)
                        .iter()
                        .zip(&mean)
                        .zip(&std)
                        .map(|((&v, m), s)| (f64::from(v) - m) / s)
                        .collect(),
                    y,
                )
            })
            .collect()
    };
    let (train, test) = (features(&train), features(&test));
    // Logistic regression by full-batch gradient descent.
    let (mut w, mut b) = (vec![0.0; dim], 0.0);
    for _ in 0..cfg.steps {
        let mut gw = vec![0.0; dim];
        let mut gb = 0.0;
        for (x, y) in &train {
            let z: f64 = x.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() + b;
            let p = 1.0 / (1.0 + (-z).exp());
            let e = p - y;
            gw.iter_mut().zip(x).for_each(|(g, a)| *g += e * a);
            gb += e;
        }
        for (wi, g) in w.iter_mut().zip(&gw) {
            *wi -= cfg.lr * (g / n + cfg.l2 * *wi);
        }
        b -= cfg.lr * gb / n;
    }
    let errors = test
        .iter()
        .filter(|(x, y)| {
            let z: f64 = x.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() + b;
            (z > 0.0) != (*y > 0.5)
        })
        .count();
    let eps = (errors as f64 / test.len() as f64).min(0.5);
    2.0 * (1.0 - 2.0 * eps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn cloud(n: usize, dim: usize, shift: f32, seed: u64) -> Vec<f32> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        (0..n * dim)
            .map(|i| {
                let z: f32 = StandardNormal.sample(&mut rng);
                z + if i % dim == 0 { shift } else { 0.0 } + rng.random_range(0.0..1e-6)
            })
            .collect()
    }

    #[test]
    fn separated_clouds_give_near_two_and_one_distribution_near_zero() {
        let dim = 20;
        let cfg = PadConfig::default();
        // Means 12 standard deviations apart along one axis: linearly separable.
        let far = proxy_a_distance(
            &cloud(600, dim, 0.0, 1),
            &cloud(600, dim, 12.0, 2),
            dim,
            &cfg,
        );
        assert!(far > 1.95, "separated clouds: PAD {far}");
        // Two draws of one distribution: chance-level classifier.
        let same = proxy_a_distance(
            &cloud(600, dim, 0.0, 3),
            &cloud(600, dim, 0.0, 4),
            dim,
            &cfg,
        );
        assert!(same < 0.3, "one distribution: PAD {same}");
    }
}

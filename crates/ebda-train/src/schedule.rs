//! Schedules as pure functions of training progress `p ∈ [0, 1]`.
//!
//! From Ganin & Lempitsky, "Unsupervised Domain Adaptation by
//! Backpropagation" (ICML 2015), §5 — also the defaults of tllib's DANN:
//! - learning rate `lr_p = lr₀ · (1 + α p)^−β` with `α = 10`, `β = 0.75`;
//! - adaptation weight `λ_p = λ_max · (2 / (1 + e^{−γ p}) − 1)` with `γ = 10`.
//!
//! `linear` anneals a value (EBDA's margin) over training.

use crate::config::{LrSchedule, OptimConfig};

/// Progress of iteration `it` (0-based) of `total`: `it / total` (as the
/// PyTorch reference `torch_da.py`).
pub fn progress(it: usize, total: usize) -> f64 {
    if total == 0 {
        1.0
    } else {
        it as f64 / total as f64
    }
}

/// `lr₀ · (1 + α p)^−β`.
pub fn annealed_lr(lr0: f64, alpha: f64, beta: f64, p: f64) -> f64 {
    lr0 * (1.0 + alpha * p).powf(-beta)
}

/// `λ_max · (2 / (1 + e^{−γ p}) − 1)`: 0 at `p = 0`, → `λ_max` as `p → 1`.
pub fn lambda(lambda_max: f64, gamma: f64, p: f64) -> f64 {
    lambda_max * (2.0 / (1.0 + (-gamma * p).exp()) - 1.0)
}

/// Linear interpolation from `start` at `p = 0` to `end` at `p = 1`.
pub fn linear(start: f64, end: f64, p: f64) -> f64 {
    start + (end - start) * p.clamp(0.0, 1.0)
}

/// The learning rate an optimizer config gives at progress `p`.
pub fn lr_at(cfg: &OptimConfig, p: f64) -> f64 {
    match cfg.schedule {
        LrSchedule::Constant => cfg.lr,
        LrSchedule::Annealed => annealed_lr(cfg.lr, cfg.alpha, cfg.beta, p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_values() {
        assert_eq!(annealed_lr(0.01, 10.0, 0.75, 0.0), 0.01);
        // p = 0.5: 0.01 · 6^−0.75 = 0.0026084743...
        assert!((annealed_lr(0.01, 10.0, 0.75, 0.5) - 0.002_608_474_3).abs() < 1e-10);
        // p = 1: 0.01 · 11^−0.75 = 0.0016556...
        assert!((annealed_lr(0.01, 10.0, 0.75, 1.0) - 0.001_655_600_26).abs() < 1e-10);
    }

    #[test]
    fn lambda_schedule_values() {
        assert_eq!(lambda(1.0, 10.0, 0.0), 0.0);
        // p = 0.1: 2/(1 + e^−1) − 1 = tanh(0.5) = 0.46211715...
        assert!((lambda(1.0, 10.0, 0.1) - 0.462_117_157_3).abs() < 1e-9);
        // p = 1: tanh(5) = 0.99990920...
        assert!((lambda(1.0, 10.0, 1.0) - 0.999_909_204_3).abs() < 1e-9);
        assert!((lambda(0.5, 10.0, 1.0) - 0.499_954_602).abs() < 1e-8);
    }

    #[test]
    fn progress_and_linear() {
        assert!((linear(0.2, 1.0, 0.5) - 0.6).abs() < 1e-12);
        assert_eq!(linear(0.2, 1.0, 2.0), 1.0);
        assert_eq!(progress(0, 6000), 0.0);
        assert_eq!(progress(3000, 6000), 0.5);
    }
}

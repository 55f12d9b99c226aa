//! Optimizers equal to PyTorch's, with parameter groups and saveable state.
//!
//! `candle_nn::SGD` has neither momentum nor weight decay; these follow
//! `torch.optim.SGD`, `Adam` and `AdamW` (PyTorch 2.x, single-tensor path):
//!
//! SGD with momentum `μ`, dampening 0, weight decay `w`:
//! `g ← ∇ + w·θ;  b ← g (first step) or μ·b + g;  g ← g + μ·b (Nesterov) or b;  θ ← θ − lr·g`
//!
//! Adam (L2 decay `w`) / AdamW (decoupled decay):
//! `g ← ∇ + w·θ` (Adam) or `θ ← θ·(1 − lr·w)` (AdamW);
//! `m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;`
//! `θ ← θ − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
//!
//! Variables without a gradient in a step are left untouched (as PyTorch
//! skips parameters whose `.grad` is `None`).

use crate::config::{OptimConfig, OptimizerKind};
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

/// Variables sharing a learning-rate multiplier.
pub struct ParamGroup {
    pub vars: Vec<(String, Var)>,
    pub lr_mult: f64,
}

/// An optimizer over parameter groups.
pub struct Optimizer {
    cfg: OptimConfig,
    groups: Vec<ParamGroup>,
    /// SGD momentum buffers or Adam first moments, by variable name.
    first: HashMap<String, Tensor>,
    /// Adam second moments, by variable name.
    second: HashMap<String, Tensor>,
    /// Steps taken (Adam's bias correction counts per variable in PyTorch;
    /// here every variable steps together, as long as it has a gradient).
    steps: HashMap<String, u64>,
}

impl Optimizer {
    /// An optimizer of kind `cfg.optimizer` over `groups`.
    pub fn new(cfg: &OptimConfig, groups: Vec<ParamGroup>) -> Self {
        Self {
            cfg: cfg.clone(),
            groups,
            first: HashMap::new(),
            second: HashMap::new(),
            steps: HashMap::new(),
        }
    }

    /// The configuration (kind, base learning rate, schedule).
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// All variables, with their names, in group order.
    pub fn vars(&self) -> impl Iterator<Item = &(String, Var)> {
        self.groups.iter().flat_map(|g| g.vars.iter())
    }

    /// One step at base learning rate `lr` (scaled by each group's multiplier).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let cfg = self.cfg.clone();
        for gi in 0..self.groups.len() {
            let lr = lr * self.groups[gi].lr_mult;
            for vi in 0..self.groups[gi].vars.len() {
                let (name, var) = &self.groups[gi].vars[vi];
                let Some(grad) = grads.get(var) else { continue };
                // Every optimizer tensor is detached: a momentum or moment
                // buffer computed from tracked tensors would chain each step's
                // graph to the previous one and keep them all alive.
                let grad = grad.detach();
                let name = name.clone();
                let var = var.clone();
                match cfg.optimizer {
                    OptimizerKind::Sgd => self.sgd(&name, &var, &grad, lr, &cfg)?,
                    OptimizerKind::Adam | OptimizerKind::Adamw => {
                        self.adam(&name, &var, &grad, lr, &cfg)?
                    }
                }
            }
        }
        Ok(())
    }

    fn sgd(
        &mut self,
        name: &str,
        var: &Var,
        grad: &Tensor,
        lr: f64,
        cfg: &OptimConfig,
    ) -> Result<()> {
        let theta = &var.as_tensor().detach();
        let mut g = if cfg.weight_decay != 0.0 {
            (grad + (theta * cfg.weight_decay)?)?
        } else {
            grad.clone()
        };
        if cfg.momentum != 0.0 {
            let buf = match self.first.get(name) {
                Some(b) => ((b * cfg.momentum)? + &g)?,
                None => g.copy()?,
            };
            g = if cfg.nesterov {
                (&g + (&buf * cfg.momentum)?)?
            } else {
                buf.clone()
            };
            self.first.insert(name.to_string(), buf);
        }
        var.set(&(theta - (g * lr)?)?)?;
        *self.steps.entry(name.to_string()).or_insert(0) += 1;
        Ok(())
    }

    fn adam(
        &mut self,
        name: &str,
        var: &Var,
        grad: &Tensor,
        lr: f64,
        cfg: &OptimConfig,
    ) -> Result<()> {
        let [b1, b2] = cfg.betas;
        let mut theta = var.as_tensor().detach();
        let g = match cfg.optimizer {
            OptimizerKind::Adam if cfg.weight_decay != 0.0 => {
                (grad + (&theta * cfg.weight_decay)?)?
            }
            _ => grad.clone(),
        };
        if cfg.optimizer == OptimizerKind::Adamw && cfg.weight_decay != 0.0 {
            theta = (&theta * (1.0 - lr * cfg.weight_decay))?;
        }
        let m = match self.first.get(name) {
            Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
            None => (&g * (1.0 - b1))?,
        };
        let v = match self.second.get(name) {
            Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
            None => (g.sqr()? * (1.0 - b2))?,
        };
        let t = self.steps.get(name).copied().unwrap_or(0) + 1;
        let m_hat = (&m / (1.0 - b1.powi(t as i32)))?;
        let v_hat = (&v / (1.0 - b2.powi(t as i32)))?;
        let update = (m_hat / (v_hat.sqrt()? + cfg.eps)?)?;
        var.set(&(theta - (update * lr)?)?)?;
        self.first.insert(name.to_string(), m);
        self.second.insert(name.to_string(), v);
        self.steps.insert(name.to_string(), t);
        Ok(())
    }

    /// The state as named tensors (`first.*`, `second.*`) and step counts.
    pub fn state(&self) -> (HashMap<String, Tensor>, HashMap<String, u64>) {
        let mut tensors = HashMap::new();
        for (k, v) in &self.first {
            tensors.insert(format!("first.{k}"), v.clone());
        }
        for (k, v) in &self.second {
            tensors.insert(format!("second.{k}"), v.clone());
        }
        (tensors, self.steps.clone())
    }

    /// Restores [`Optimizer::state`]; tensors are moved to each variable's device.
    pub fn restore(
        &mut self,
        tensors: HashMap<String, Tensor>,
        steps: HashMap<String, u64>,
    ) -> Result<()> {
        let devices: HashMap<String, Var> =
            self.vars().map(|(n, v)| (n.clone(), v.clone())).collect();
        self.first.clear();
        self.second.clear();
        for (k, t) in tensors {
            let (slot, name) = k.split_once('.').unwrap_or(("", ""));
            let Some(var) = devices.get(name) else {
                candle_core::bail!("optimizer state names unknown variable {name:?} ({k})")
            };
            let t = t.to_device(var.device())?.to_dtype(var.dtype())?;
            match slot {
                "first" => self.first.insert(name.to_string(), t),
                "second" => self.second.insert(name.to_string(), t),
                _ => {
                    candle_core::bail!("optimizer state key {k:?} is neither first.* nor second.*")
                }
            };
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn var(v: f32) -> Var {
        Var::from_tensor(&Tensor::new(&[v], &Device::Cpu).unwrap()).unwrap()
    }

    /// Runs `steps` steps of L = Σ θ²/2 (∇ = θ) from θ₀ = 1 at lr 0.1.
    fn run(cfg: &OptimConfig, steps: usize) -> f32 {
        let x = var(1.0);
        let mut opt = Optimizer::new(
            cfg,
            vec![ParamGroup {
                vars: vec![("x".into(), x.clone())],
                lr_mult: 1.0,
            }],
        );
        for _ in 0..steps {
            let loss = (x.as_tensor().sqr().unwrap() * 0.5)
                .unwrap()
                .sum_all()
                .unwrap();
            opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        }
        x.as_tensor().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn sgd_momentum_weight_decay_by_hand() {
        // ∇ = θ, w = 0.1 → g = 1.1θ; μ = 0.9, lr = 0.1.
        // step 1: g = 1.1, b = 1.1, θ = 1 − 0.11 = 0.89
        // step 2: g = 0.979, b = 0.9·1.1 + 0.979 = 1.969, θ = 0.89 − 0.1969 = 0.6931
        let cfg = OptimConfig {
            momentum: 0.9,
            weight_decay: 0.1,
            ..OptimConfig::default()
        };
        assert!((run(&cfg, 1) - 0.89).abs() < 1e-6);
        assert!((run(&cfg, 2) - (0.89 - 0.1969)).abs() < 1e-6);
        // Nesterov: g ← g + μ·b. step 1: g = 1.1 + 0.99 = 2.09, θ = 0.791.
        // step 2: g = 0.8701, b = 0.99 + 0.8701 = 1.8601, g = 0.8701 + 1.67409 = 2.54419, θ = 0.536581.
        let cfg = OptimConfig {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.1,
            ..OptimConfig::default()
        };
        assert!((run(&cfg, 1) - 0.791).abs() < 1e-6);
        assert!((run(&cfg, 2) - 0.536_581).abs() < 1e-6);
        // Plain SGD: θ ← θ(1 − 0.1) per step.
        let cfg = OptimConfig {
            momentum: 0.0,
            weight_decay: 0.0,
            ..OptimConfig::default()
        };
        assert!((run(&cfg, 3) - 0.729).abs() < 1e-6);
    }

    #[test]
    fn state_never_tracks_the_graph() {
        // A moment buffer that kept a backprop op would chain every step's
        // graph to the previous one: memory grows by a whole step per step.
        for cfg in [
            OptimConfig {
                momentum: 0.9,
                weight_decay: 0.1,
                ..OptimConfig::default()
            },
            OptimConfig::adam(0.1),
        ] {
            let x = var(1.0);
            let mut opt = Optimizer::new(
                &cfg,
                vec![ParamGroup {
                    vars: vec![("x".into(), x.clone())],
                    lr_mult: 1.0,
                }],
            );
            for _ in 0..3 {
                let loss = (x.as_tensor().sqr().unwrap() * 0.5)
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt.step(&loss.backward().unwrap(), 0.1).unwrap();
            }
            let (tensors, _) = opt.state();
            assert!(!tensors.is_empty());
            for (name, t) in tensors {
                assert!(!t.track_op(), "{name} tracks a backprop op");
            }
        }
    }

    #[test]
    fn adam_and_adamw_by_hand() {
        // Adam, step 1: m̂ = g, v̂ = g², update = g/(|g| + ε) ≈ 1 → θ = 1 − 0.1 = 0.9.
        let cfg = OptimConfig::adam(0.1);
        assert!((run(&cfg, 1) - 0.9).abs() < 1e-6);
        // step 2: g = 0.9, m = 0.09 + 0.09 = 0.18·... computed: m = 0.9·0.1 + 0.1·0.9 = 0.18,
        // v = 0.999·0.001 + 0.001·0.81 = 0.001809; m̂ = 0.18/0.19 = 0.947368,
        // v̂ = 0.001809/0.001999 = 0.904952, √v̂ = 0.951290; θ = 0.9 − 0.1·0.995880 = 0.800412.
        assert!((run(&cfg, 2) - 0.800_412).abs() < 1e-5);
        // AdamW, w = 0.5: θ ← θ(1 − 0.05) then the Adam step: 0.95 − 0.1 = 0.85.
        let cfg = OptimConfig {
            optimizer: OptimizerKind::Adamw,
            weight_decay: 0.5,
            ..OptimConfig::adam(0.1)
        };
        assert!((run(&cfg, 1) - 0.85).abs() < 1e-6);
    }

    #[test]
    fn groups_scale_the_learning_rate_and_state_round_trips() {
        let (a, b) = (var(1.0), var(1.0));
        let cfg = OptimConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            ..OptimConfig::default()
        };
        let groups = vec![
            ParamGroup {
                vars: vec![("a".into(), a.clone())],
                lr_mult: 0.1,
            },
            ParamGroup {
                vars: vec![("b".into(), b.clone())],
                lr_mult: 1.0,
            },
        ];
        let mut opt = Optimizer::new(&cfg, groups);
        let loss = ((a.as_tensor() + b.as_tensor()).unwrap())
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap(), 1.0).unwrap();
        assert!((a.as_tensor().to_vec1::<f32>().unwrap()[0] - 0.9).abs() < 1e-6);
        assert!((b.as_tensor().to_vec1::<f32>().unwrap()[0] - 0.0).abs() < 1e-6);
        let (tensors, steps) = opt.state();
        assert_eq!(tensors.len(), 2);
        let mut other = Optimizer::new(
            &cfg,
            vec![
                ParamGroup {
                    vars: vec![("a".into(), a.clone())],
                    lr_mult: 0.1,
                },
                ParamGroup {
                    vars: vec![("b".into(), b.clone())],
                    lr_mult: 1.0,
                },
            ],
        );
        other.restore(tensors, steps).unwrap();
        assert_eq!(other.state().1.get("a"), Some(&1));
        let bad: HashMap<String, Tensor> = [(
            "first.zz".to_string(),
            Tensor::new(&[0f32], &Device::Cpu).unwrap(),
        )]
        .into();
        assert!(other.restore(bad, HashMap::new()).is_err());
    }
}

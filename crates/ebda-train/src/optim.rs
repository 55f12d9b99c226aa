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
//!
//! On the CPU each update is done in place, one pass per buffer, with the
//! same floating-point operations in the same order as the tensor-op
//! formulation used on other devices (tested equal to the last bit): no
//! temporaries, as PyTorch's fused `foreach` path.

use crate::config::{OptimConfig, OptimizerKind};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp3, Layout, Result, Tensor, Var, WithDType};
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
    /// Update CPU variables in place (see the module docs).
    in_place: bool,
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
            in_place: true,
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
                let fused = self.in_place
                    && var.device().is_cpu()
                    && matches!(var.dtype(), DType::F32 | DType::F64)
                    && grad.dtype() == var.dtype()
                    && grad.shape() == var.shape()
                    && var.as_tensor().is_contiguous();
                if fused {
                    self.step_in_place(&name, &var, &grad.contiguous()?, lr, &cfg)?;
                    continue;
                }
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

    /// One CPU update in place: the same arithmetic as [`Self::sgd`] and
    /// [`Self::adam`], element by element.
    fn step_in_place(
        &mut self,
        name: &str,
        var: &Var,
        grad: &Tensor,
        lr: f64,
        cfg: &OptimConfig,
    ) -> Result<()> {
        let theta = var.as_tensor();
        let zeros = || theta.zeros_like();
        match cfg.optimizer {
            OptimizerKind::Sgd => {
                let k = SgdKernel {
                    lr,
                    momentum: cfg.momentum,
                    nesterov: cfg.nesterov,
                    weight_decay: cfg.weight_decay,
                };
                if cfg.momentum != 0.0 {
                    // A missing buffer starts at 0: μ·0 + g = g, PyTorch's first step.
                    if !self.first.contains_key(name) {
                        self.first.insert(name.to_string(), zeros()?);
                    }
                    let buf = &self.first[name];
                    buf.inplace_op3(grad, theta, &Update::SgdMomentum(k))?;
                    theta.inplace_op3(grad, buf, &Update::SgdParam(k))?;
                } else {
                    theta.inplace_op3(grad, grad, &Update::SgdParam(k))?;
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let [b1, b2] = cfg.betas;
                let t = self.steps.get(name).copied().unwrap_or(0) + 1;
                for map in [&mut self.first, &mut self.second] {
                    if !map.contains_key(name) {
                        map.insert(name.to_string(), zeros()?);
                    }
                }
                let k = AdamKernel {
                    lr,
                    b1,
                    b2,
                    eps: cfg.eps,
                    l2: if cfg.optimizer == OptimizerKind::Adam {
                        cfg.weight_decay
                    } else {
                        0.0
                    },
                    decoupled: if cfg.optimizer == OptimizerKind::Adamw {
                        cfg.weight_decay
                    } else {
                        0.0
                    },
                    c1: 1.0 - b1.powi(t as i32),
                    c2: 1.0 - b2.powi(t as i32),
                };
                let (m, v) = (&self.first[name], &self.second[name]);
                m.inplace_op3(grad, theta, &Update::AdamFirst(k))?;
                v.inplace_op3(grad, theta, &Update::AdamSecond(k))?;
                theta.inplace_op3(m, v, &Update::AdamParam(k))?;
                self.steps.insert(name.to_string(), t);
                return Ok(());
            }
        }
        *self.steps.entry(name.to_string()).or_insert(0) += 1;
        Ok(())
    }

    /// The state as named tensors (`first.*`, `second.*`) and step counts;
    /// copies, so later (in-place) steps leave them as they are.
    pub fn state(&self) -> (HashMap<String, Tensor>, HashMap<String, u64>) {
        let mut tensors = HashMap::new();
        for (k, v) in &self.first {
            tensors.insert(format!("first.{k}"), v.copy().unwrap_or_else(|_| v.clone()));
        }
        for (k, v) in &self.second {
            tensors.insert(
                format!("second.{k}"),
                v.copy().unwrap_or_else(|_| v.clone()),
            );
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
            // An own copy: CPU steps update the buffers in place.
            let t = t.to_device(var.device())?.to_dtype(var.dtype())?.copy()?;
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

#[derive(Clone, Copy, Debug)]
struct SgdKernel {
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
}

#[derive(Clone, Copy, Debug)]
struct AdamKernel {
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    /// Adam's L2 term added to the gradient.
    l2: f64,
    /// AdamW's decoupled decay.
    decoupled: f64,
    /// Bias corrections `1 − βᵢᵗ`.
    c1: f64,
    c2: f64,
}

/// The in-place updates. Each mirrors the tensor ops of [`Optimizer::sgd`] /
/// [`Optimizer::adam`] operation by operation: a tensor–scalar product there
/// is candle's `affine(x, a, 0)` = `x·a + 0`, computed in the tensor's type.
#[derive(Clone, Copy, Debug)]
enum Update {
    /// `b ← b·μ + g` with `g = ∇ + θ·w` (sources: ∇, θ).
    SgdMomentum(SgdKernel),
    /// `θ ← θ − u·lr`, `u = b`, `g + b·μ` (Nesterov) or `g` without momentum (sources: ∇, b).
    SgdParam(SgdKernel),
    /// `m ← m·β₁ + g·(1 − β₁)` (sources: ∇, θ).
    AdamFirst(AdamKernel),
    /// `v ← v·β₂ + g²·(1 − β₂)` (sources: ∇, θ).
    AdamSecond(AdamKernel),
    /// `θ ← θ' − (m̂ / (√v̂ + ε))·lr`, `θ' = θ·(1 − lr·w)` for AdamW (sources: m, v).
    AdamParam(AdamKernel),
}

/// The float types the updates run in.
trait Real: WithDType {
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Real for f64 {
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// `x·a + 0`, candle's tensor–scalar product.
#[inline]
fn scaled<T: WithDType>(x: T, a: f64) -> T {
    x * T::from_f64(a) + T::zero()
}

/// Elements per parallel task of an update (elementwise: any split gives
/// the same bits).
const UPDATE_CHUNK: usize = 32 * 1024;

fn update_par<T: Real>(op: Update, dst: &mut [T], s2: &[T], s3: &[T]) {
    use rayon::prelude::*;
    if dst.len() < 2 * UPDATE_CHUNK || rayon::current_num_threads() < 2 {
        return update(op, dst, s2, s3);
    }
    dst.par_chunks_mut(UPDATE_CHUNK)
        .zip(s2.par_chunks(UPDATE_CHUNK))
        .zip(s3.par_chunks(UPDATE_CHUNK))
        .for_each(|((d, a), b)| update(op, d, a, b));
}

fn update<T: Real>(op: Update, dst: &mut [T], s2: &[T], s3: &[T]) {
    match op {
        Update::SgdMomentum(k) => {
            for ((b, &g), &th) in dst.iter_mut().zip(s2).zip(s3) {
                let g = if k.weight_decay != 0.0 {
                    g + scaled(th, k.weight_decay)
                } else {
                    g
                };
                *b = scaled(*b, k.momentum) + g;
            }
        }
        Update::SgdParam(k) => {
            for ((th, &g), &b) in dst.iter_mut().zip(s2).zip(s3) {
                let g = if k.weight_decay != 0.0 {
                    g + scaled(*th, k.weight_decay)
                } else {
                    g
                };
                let u = match (k.momentum != 0.0, k.nesterov) {
                    (false, _) => g,
                    (true, false) => b,
                    (true, true) => g + scaled(b, k.momentum),
                };
                *th -= scaled(u, k.lr);
            }
        }
        Update::AdamFirst(k) => {
            for ((m, &g), &th) in dst.iter_mut().zip(s2).zip(s3) {
                let g = if k.l2 != 0.0 { g + scaled(th, k.l2) } else { g };
                *m = scaled(*m, k.b1) + scaled(g, 1.0 - k.b1);
            }
        }
        Update::AdamSecond(k) => {
            for ((v, &g), &th) in dst.iter_mut().zip(s2).zip(s3) {
                let g = if k.l2 != 0.0 { g + scaled(th, k.l2) } else { g };
                *v = scaled(*v, k.b2) + scaled(g * g, 1.0 - k.b2);
            }
        }
        Update::AdamParam(k) => {
            for ((th, &m), &v) in dst.iter_mut().zip(s2).zip(s3) {
                let t = if k.decoupled != 0.0 {
                    scaled(*th, 1.0 - k.lr * k.decoupled)
                } else {
                    *th
                };
                let m_hat = scaled(m, 1.0 / k.c1);
                let v_hat = scaled(v, 1.0 / k.c2);
                // `v̂.sqrt() + ε` is candle's affine(x, 1, ε).
                let den = v_hat.sqrt() * T::one() + T::from_f64(k.eps);
                *th = t - scaled(m_hat / den, k.lr);
            }
        }
    }
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "ebda-optimizer-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        fn range(l: &Layout) -> Result<(usize, usize)> {
            l.contiguous_offsets().ok_or_else(|| {
                candle_core::Error::Msg("optimizer update: non-contiguous tensor".into())
            })
        }
        let ((a1, e1), (a2, e2), (a3, e3)) = (range(l1)?, range(l2)?, range(l3)?);
        if e1 - a1 != e2 - a2 || e1 - a1 != e3 - a3 {
            candle_core::bail!("optimizer update: tensors of different sizes")
        }
        match (s1, s2, s3) {
            (CpuStorage::F32(d), CpuStorage::F32(x), CpuStorage::F32(y)) => {
                update_par(*self, &mut d[a1..e1], &x[a2..e2], &y[a3..e3])
            }
            (CpuStorage::F64(d), CpuStorage::F64(x), CpuStorage::F64(y)) => {
                update_par(*self, &mut d[a1..e1], &x[a2..e2], &y[a3..e3])
            }
            _ => candle_core::bail!("optimizer update: f32 or f64 tensors of one type expected"),
        }
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

    /// The in-place CPU updates equal the tensor-op formulation bit for bit.
    #[test]
    fn in_place_updates_equal_the_tensor_ops() {
        let configs = [
            OptimConfig {
                momentum: 0.9,
                weight_decay: 5e-4,
                ..OptimConfig::default()
            },
            OptimConfig {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-2,
                ..OptimConfig::default()
            },
            OptimConfig {
                momentum: 0.0,
                weight_decay: 1e-3,
                ..OptimConfig::default()
            },
            OptimConfig {
                weight_decay: 1e-2,
                ..OptimConfig::adam(1e-3)
            },
            OptimConfig {
                optimizer: OptimizerKind::Adamw,
                weight_decay: 1e-2,
                ..OptimConfig::adam(1e-3)
            },
        ];
        // (300, 257): large enough for the update to split over threads.
        for (cfg, shape) in
            configs
                .into_iter()
                .zip([(37, 5), (300, 257), (37, 5), (300, 257), (37, 5)])
        {
            for dtype in [DType::F32, DType::F64] {
                let dev = Device::Cpu;
                let init = (Tensor::randn(0f32, 1., shape, &dev).unwrap())
                    .to_dtype(dtype)
                    .unwrap();
                let target = Tensor::randn(0f32, 1., shape, &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let make = |in_place: bool| {
                    let x = Var::from_tensor(&init.copy().unwrap()).unwrap();
                    let mut opt = Optimizer::new(
                        &cfg,
                        vec![ParamGroup {
                            vars: vec![("x".into(), x.clone())],
                            lr_mult: 0.5,
                        }],
                    );
                    opt.in_place = in_place;
                    (x, opt)
                };
                let (xa, mut a) = make(true);
                let (xb, mut b) = make(false);
                for step in 0..7 {
                    for (x, opt) in [(&xa, &mut a), (&xb, &mut b)] {
                        // L = Σ (θ − t)³/3 + θ²: gradients of mixed sign and size.
                        let d = (x.as_tensor() - &target).unwrap();
                        let loss = ((d.powf(3.0).unwrap() / 3.0).unwrap()
                            + x.as_tensor().sqr().unwrap())
                        .unwrap()
                        .sum_all()
                        .unwrap();
                        opt.step(&loss.backward().unwrap(), 0.05).unwrap();
                    }
                    let (va, vb) = (
                        xa.as_tensor()
                            .to_dtype(DType::F64)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f64>()
                            .unwrap(),
                        xb.as_tensor()
                            .to_dtype(DType::F64)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f64>()
                            .unwrap(),
                    );
                    assert_eq!(va, vb, "{:?} {dtype:?} step {step}", cfg.optimizer);
                }
                let (sa, sb) = (a.state(), b.state());
                assert_eq!(sa.1, sb.1);
                for (k, t) in &sa.0 {
                    let u = &sb.0[k];
                    let diff = (t - u)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap();
                    assert_eq!(diff, 0.0, "{k}");
                }
            }
        }
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

//! The three methods behind one trait: a step over a source batch, a target
//! batch and progress `p`, returning its losses and diagnostics.
//!
//! All three share the extractor `F`, the classifier `C`, the data, the
//! optimizer of `F` and `C`, the schedules and the evaluation; a comparison
//! therefore differs only in the method.
//!
//! - `source-only`: `L = CE(C(F(x_s)), y_s)`.
//! - `dann`: `f = F([x_s; x_t])`, `L = CE + BCE(D(R_λ(f)), [1; 0])` with one
//!   optimizer over `F`, `C` and `D` (Ganin & Lempitsky 2015).
//! - `ebda`: `critic_steps` critic steps on the detached features (only the
//!   critic's variables move, with its own optimizer), then the feature step
//!   `L = CE + λ_p · (mean E(f_t) + β · PT)` through the frozen critic.

use crate::config::{ExperimentConfig, Method as MethodKind};
use crate::optim::{Optimizer, ParamGroup};
use crate::schedule;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarMap;
use ebda_classifier::Classifier;
use ebda_critic::EnergyCritic;
use ebda_dann::DomainDiscriminator;
use ebda_data::Batch;
use ebda_features::FeatureExtractor;
use ebda_nn::{Rng, seeded_var_builder, trainable_vars};

/// The methods' names, in the order reports list them (baselines first).
pub const NAMES: [&str; 3] = ["source-only", "dann", "ebda"];

/// Scalar diagnostics of one step, as detached device tensors (read on the
/// host only when logged, so a step never waits for the device).
pub type Stats = Vec<(&'static str, Tensor)>;

/// What every method trains: the extractor and the label classifier.
pub struct Shared {
    pub extractor: Box<dyn FeatureExtractor>,
    pub classifier: Classifier,
    /// Variables of `F` (`features.*`) and `C` (`classifier.*`).
    pub vars: VarMap,
    /// Dropout masks of every model.
    pub rng: Rng,
}

/// Per-step schedule values.
#[derive(Clone, Copy, Debug)]
pub struct StepParams {
    pub p: f64,
    pub lr: f64,
    pub lambda: f64,
    pub margin: f64,
}

/// A domain-adaptation method.
pub trait Method: Send {
    /// The method's name in configs and reports.
    fn kind(&self) -> MethodKind;
    /// Whether the step reads a target batch.
    fn uses_target(&self) -> bool;
    /// One training step.
    fn step(
        &mut self,
        shared: &Shared,
        src: &Batch,
        tgt: Option<&Batch>,
        sp: StepParams,
    ) -> Result<Stats>;
    /// Named variable maps beyond the shared one (`critic`, `discriminator`).
    fn var_maps(&self) -> Vec<(&'static str, &VarMap)>;
    /// The optimizers, by name, for checkpoints.
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)>;
    /// The energy critic, if the method has one.
    fn critic(&self) -> Option<&EnergyCritic> {
        None
    }
    /// The domain discriminator, if the method has one.
    fn discriminator(&self) -> Option<&DomainDiscriminator> {
        None
    }
}

fn shared_optimizer(
    cfg: &ExperimentConfig,
    vars: &VarMap,
    extra: Vec<(String, candle_core::Var)>,
) -> Optimizer {
    let (backbone, head): (Vec<_>, Vec<_>) = trainable_vars(vars)
        .into_iter()
        .partition(|(n, _)| n.starts_with("features.backbone."));
    let mut others = head;
    others.extend(extra);
    Optimizer::new(
        &cfg.optim,
        vec![
            ParamGroup {
                vars: backbone,
                lr_mult: cfg.optim.backbone_lr_mult,
            },
            ParamGroup {
                vars: others,
                lr_mult: 1.0,
            },
        ],
    )
}

fn mean_norm(f: &Tensor) -> Result<Tensor> {
    f.detach().sqr()?.sum(1)?.sqrt()?.mean_all()
}

fn err<E: std::fmt::Display>(e: E) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// Builds the shared models and the method of `cfg`, seeded by `cfg.seed`.
pub fn build(cfg: &ExperimentConfig, device: &Device) -> Result<(Shared, Box<dyn Method>)> {
    let rng = Rng::new(stream_seed(cfg.seed, 1));
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, cfg.seed, DType::F32, device);
    let extractor = cfg
        .model
        .features
        .init(vb.pp("features"), &rng)
        .map_err(err)?;
    let classifier = cfg
        .model
        .classifier
        .init(vb.pp("classifier"), &rng)
        .map_err(err)?;
    let shared = Shared {
        extractor,
        classifier,
        vars,
        rng,
    };
    let method: Box<dyn Method> = match cfg.method {
        MethodKind::SourceOnly => Box::new(SourceOnly {
            opt: shared_optimizer(cfg, &shared.vars, Vec::new()),
        }),
        MethodKind::Dann => {
            let dvars = VarMap::new();
            let vb = seeded_var_builder(&dvars, stream_seed(cfg.seed, 2), DType::F32, device);
            let disc = cfg
                .model
                .discriminator
                .init(vb.pp("discriminator"), &shared.rng)
                .map_err(err)?;
            let opt = shared_optimizer(cfg, &shared.vars, trainable_vars(&dvars));
            Box::new(Dann {
                disc,
                vars: dvars,
                opt,
            })
        }
        MethodKind::Ebda => {
            let cvars = VarMap::new();
            let vb = seeded_var_builder(&cvars, stream_seed(cfg.seed, 3), DType::F32, device);
            let critic = cfg.model.critic.init(vb.pp("critic")).map_err(err)?;
            let critic_opt = Optimizer::new(
                &cfg.adapt.critic_optim,
                vec![ParamGroup {
                    vars: trainable_vars(&cvars),
                    lr_mult: 1.0,
                }],
            );
            let opt = shared_optimizer(cfg, &shared.vars, Vec::new());
            Box::new(Ebda {
                critic,
                vars: cvars,
                critic_opt,
                opt,
                critic_steps: cfg.adapt.critic_steps,
            })
        }
    };
    Ok((shared, method))
}

/// The seed of sub-generator `stream` of a run seeded by `seed`.
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct SourceOnly {
    opt: Optimizer,
}

impl Method for SourceOnly {
    fn kind(&self) -> MethodKind {
        MethodKind::SourceOnly
    }

    fn uses_target(&self) -> bool {
        false
    }

    fn step(
        &mut self,
        shared: &Shared,
        src: &Batch,
        _tgt: Option<&Batch>,
        sp: StepParams,
    ) -> Result<Stats> {
        let f = shared.extractor.forward_t(&src.inputs, true).map_err(err)?; // [b, D]
        let logits = shared.classifier.forward_t(&f, true).map_err(err)?; // [b, K]
        let ce = shared.classifier.loss(&logits, &src.labels).map_err(err)?;
        self.opt.step(&ce.backward()?, sp.lr)?;
        Ok(vec![
            ("loss", ce.detach()),
            ("ce", ce.detach()),
            ("feat_norm_source", mean_norm(&f)?),
        ])
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        Vec::new()
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("optim", &mut self.opt)]
    }
}

/// Source and target features from one extractor pass over `[x_s; x_t]`
/// (so batch statistics see both domains, as the references do), and the
/// source cross-entropy: `(f_s, f_t, f, CE)`.
fn joint_step_start(
    shared: &Shared,
    src: &Batch,
    tgt: &Batch,
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let bs = src.inputs.dim(0)?;
    let bt = tgt.inputs.dim(0)?;
    let x = Tensor::cat(&[&src.inputs, &tgt.inputs], 0)?; // [b_s + b_t, ...]
    let f = shared.extractor.forward_t(&x, true).map_err(err)?; // [b_s + b_t, D]
    let (fs, ft) = (f.narrow(0, 0, bs)?, f.narrow(0, bs, bt)?);
    let logits = shared.classifier.forward_t(&fs, true).map_err(err)?;
    let ce = shared.classifier.loss(&logits, &src.labels).map_err(err)?;
    Ok((fs, ft, f, ce))
}

struct Dann {
    disc: DomainDiscriminator,
    vars: VarMap,
    opt: Optimizer,
}

impl Method for Dann {
    fn kind(&self) -> MethodKind {
        MethodKind::Dann
    }

    fn uses_target(&self) -> bool {
        true
    }

    fn step(
        &mut self,
        shared: &Shared,
        src: &Batch,
        tgt: Option<&Batch>,
        sp: StepParams,
    ) -> Result<Stats> {
        let tgt = tgt.ok_or_else(|| err("dann needs a target batch"))?;
        let (fs, ft, f, ce) = joint_step_start(shared, src, tgt)?;
        let reversed = ebda_dann::grad_reverse(&f, sp.lambda).map_err(err)?;
        let d = self.disc.forward_t(&reversed, true).map_err(err)?; // [b_s + b_t]
        let bs = fs.dim(0)?;
        let (d_s, d_t) = (d.narrow(0, 0, bs)?, d.narrow(0, bs, ft.dim(0)?)?);
        let dloss = ebda_dann::domain_loss(&d_s, &d_t).map_err(err)?;
        let loss = (&ce + &dloss)?;
        self.opt.step(&loss.backward()?, sp.lr)?;
        // Domain accuracy on the step's batch, as a device scalar.
        let dd = d.detach();
        let hits_s = d_s.detach().gt(0.0)?.to_dtype(DType::F32)?.sum_all()?;
        let hits_t = d_t.detach().le(0.0)?.to_dtype(DType::F32)?.sum_all()?;
        let domain_acc = ((hits_s + hits_t)? / dd.dim(0)? as f64)?;
        Ok(vec![
            ("loss", loss.detach()),
            ("ce", ce.detach()),
            ("domain_loss", dloss.detach()),
            ("domain_acc", domain_acc),
            ("feat_norm_source", mean_norm(&fs)?),
            ("feat_norm_target", mean_norm(&ft)?),
        ])
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("discriminator", &self.vars)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("optim", &mut self.opt)]
    }

    fn discriminator(&self) -> Option<&DomainDiscriminator> {
        Some(&self.disc)
    }
}

struct Ebda {
    critic: EnergyCritic,
    vars: VarMap,
    critic_opt: Optimizer,
    opt: Optimizer,
    critic_steps: usize,
}

impl Method for Ebda {
    fn kind(&self) -> MethodKind {
        MethodKind::Ebda
    }

    fn uses_target(&self) -> bool {
        true
    }

    fn step(
        &mut self,
        shared: &Shared,
        src: &Batch,
        tgt: Option<&Batch>,
        sp: StepParams,
    ) -> Result<Stats> {
        let tgt = tgt.ok_or_else(|| err("ebda needs a target batch"))?;
        let (fs, ft, _, ce) = joint_step_start(shared, src, tgt)?;
        // Critic steps: features detached inside critic_loss_at; only the critic moves.
        let critic_lr = schedule::lr_at(self.critic_opt.config(), sp.p);
        let mut last = None;
        for _ in 0..self.critic_steps {
            let c = self
                .critic
                .critic_loss_at(&fs, &ft, sp.margin)
                .map_err(err)?;
            self.critic_opt.step(&c.total.backward()?, critic_lr)?;
            last = Some(c);
        }
        let c = last.expect("critic_steps >= 1 is validated");
        // Feature step through the updated, frozen critic.
        let align = self.critic.alignment_loss(&ft).map_err(err)?;
        let loss = (&ce + (&align.total * sp.lambda)?)?;
        self.opt.step(&loss.backward()?, sp.lr)?;
        Ok(vec![
            ("loss", loss.detach()),
            ("ce", ce.detach()),
            ("critic_loss", c.total.detach()),
            ("critic_source_energy", c.source_energy),
            ("critic_target_energy", c.target_energy),
            ("critic_target_hinge", c.target_hinge),
            ("critic_beyond_margin", c.beyond_margin),
            ("align_energy", align.energy),
            ("pull_away", align.pull_away),
            ("feat_norm_source", mean_norm(&fs)?),
            ("feat_norm_target", mean_norm(&ft)?),
        ])
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("critic", &self.vars)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![
            ("optim", &mut self.opt),
            ("critic_optim", &mut self.critic_opt),
        ]
    }

    fn critic(&self) -> Option<&EnergyCritic> {
        Some(&self.critic)
    }
}

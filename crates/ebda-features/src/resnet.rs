//! ResNet-18/34/50/101 (He et al., CVPR 2016) in torchvision's layout.
//!
//! The layers, their order and their parameter names follow torchvision's
//! `torchvision/models/resnet.py`, so that a torchvision `state_dict` loads
//! key for key: `conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}`,
//! `layer{1..4}.{i}.bn{1,2,3}`, `layer{1..4}.{i}.downsample.{0,1}`. The
//! stride of a stage's first bottleneck sits on its 3×3 convolution
//! (torchvision's "ResNet v1.5"). The classifier `fc` is dropped: the output
//! is the globally average-pooled feature (512 for ResNet-18/34, 2048 for
//! ResNet-50/101).
//!
//! Batch normalisation trains as PyTorch's `BatchNorm2d` does (batch
//! statistics; running mean and unbiased running variance with momentum
//! 0.1; ε = 1e-5) unless the config freezes it: then the running statistics
//! are used in training too and never move, and the affine parameters train
//! or not as configured ([`crate::Group::Frozen`]).
//!
//! The stem's 3×3/2 max-pool is [`ebda_nn::max_pool2d`], whose backward is
//! exact (candle 0.11.1's refuses kernel ≠ stride).
//!
//! Initialisation is torchvision's: convolutions Kaiming-normal with
//! `mode = "fan_out"` and the ReLU gain, BN weight 1 and bias 0. Pretrained
//! weights replace it through [`ResNet::load`].

use crate::{Error, FeatureExtractor, Group, Result};
use candle_core::{DType, Tensor};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Conv2dConfig, Init, Module, VarBuilder};
use ebda_nn::BatchNorm;
use ebda_nn::{Conv2d, Pool2d};

/// The depths torchvision defines and ebda builds.
pub const DEPTHS: [usize; 4] = [18, 34, 50, 101];

/// The shape of a ResNet: block type, blocks per stage and widths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResNetSpec {
    /// Bottleneck blocks (1×1, 3×3, 1×1; expansion 4) or basic blocks (3×3, 3×3).
    pub bottleneck: bool,
    /// Blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Channels of the stem convolution (64 in torchvision).
    pub stem: usize,
    /// Inner width ("planes") of each stage (64, 128, 256, 512 in torchvision).
    pub planes: [usize; 4],
}

impl ResNetSpec {
    /// torchvision's ResNet of this depth (18, 34, 50 or 101).
    pub fn of_depth(depth: usize) -> Option<Self> {
        let (bottleneck, layers) = match depth {
            18 => (false, [2, 2, 2, 2]),
            34 => (false, [3, 4, 6, 3]),
            50 => (true, [3, 4, 6, 3]),
            101 => (true, [3, 4, 23, 3]),
            _ => return None,
        };
        Some(Self {
            bottleneck,
            layers,
            stem: 64,
            planes: [64, 128, 256, 512],
        })
    }

    /// The same network with every stage's width divided by `divisor` (the
    /// stem keeps its width). Used for small test fixtures that go through
    /// the same code as the full network.
    pub fn narrowed(mut self, divisor: usize) -> Self {
        let d = divisor.max(1);
        for p in &mut self.planes {
            *p = (*p / d).max(1);
        }
        self
    }

    /// Output channels per unit of `planes` (4 for bottlenecks, 1 otherwise).
    pub fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    /// Width of the pooled output features.
    pub fn out_dim(&self) -> usize {
        self.planes[3] * self.expansion()
    }

    /// Forward multiply-accumulates of the convolutions for one square
    /// image of side `size` (BN, ReLU and pooling are not counted, as in
    /// the usual "4.1 GMACs" of ResNet-50 at 224).
    pub fn macs(&self, size: usize) -> f64 {
        let out = |s: usize, k: usize, stride: usize| (s + 2 * (k / 2) - k) / stride + 1;
        let mut s = out(size, 7, 2); // conv1
        let mut total = (self.stem * 3 * 49 * s * s) as f64;
        s = (s + 2 - 3) / 2 + 1; // 3×3/2 max-pool, padding 1
        let mut c_in = self.stem;
        for (st, (&n, &planes)) in self.layers.iter().zip(&self.planes).enumerate() {
            let c_out = planes * self.expansion();
            for i in 0..n {
                let stride = if i == 0 && st > 0 { 2 } else { 1 };
                let so = out(s, 3, stride);
                let convs: Vec<(usize, usize, usize, usize)> = if self.bottleneck {
                    vec![
                        (c_in, planes, 1, s),
                        (planes, planes, 9, so),
                        (planes, c_out, 1, so),
                    ]
                } else {
                    vec![(c_in, planes, 9, so), (planes, planes, 9, so)]
                };
                for (ci, co, kk, side) in convs {
                    total += (ci * co * kk * side * side) as f64;
                }
                if i == 0 && (stride != 1 || c_in != c_out) {
                    total += (c_in * c_out * so * so) as f64;
                }
                c_in = c_out;
                s = so;
            }
        }
        total
    }

    /// Every variable of the network (relative name and shape), in
    /// torchvision's `state_dict` order, buffers (BN running statistics)
    /// included, `num_batches_tracked` and `fc` excluded.
    pub fn variables(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let bn = |out: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize| {
            for v in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{name}.{v}"), vec![c]));
            }
        };
        out.push(("conv1.weight".into(), vec![self.stem, 3, 7, 7]));
        bn(&mut out, "bn1", self.stem);
        let mut c_in = self.stem;
        for (s, (&n, &planes)) in self.layers.iter().zip(&self.planes).enumerate() {
            let stride = if s == 0 { 1 } else { 2 };
            for i in 0..n {
                let at = format!("layer{}.{i}", s + 1);
                let c_out = planes * self.expansion();
                let convs: Vec<(usize, usize, usize)> = if self.bottleneck {
                    vec![(c_in, planes, 1), (planes, planes, 3), (planes, c_out, 1)]
                } else {
                    vec![(c_in, planes, 3), (planes, planes, 3)]
                };
                for (j, (ci, co, k)) in convs.into_iter().enumerate() {
                    out.push((format!("{at}.conv{}.weight", j + 1), vec![co, ci, k, k]));
                    bn(&mut out, &format!("{at}.bn{}", j + 1), co);
                }
                if i == 0 && (stride != 1 || c_in != c_out) {
                    out.push((format!("{at}.downsample.0.weight"), vec![c_out, c_in, 1, 1]));
                    bn(&mut out, &format!("{at}.downsample.1"), c_out);
                }
                c_in = c_out;
            }
        }
        out
    }
}

/// How batch normalisation behaves in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnMode {
    /// Use the running statistics in training too, never updating them.
    pub frozen: bool,
    /// Train γ and β (only meaningful when `frozen`; trainable BN always trains them).
    pub affine_trainable: bool,
}

/// A BatchNorm2d (PyTorch's ε = 1e-5, momentum 0.1) that may be frozen.
struct Bn {
    inner: BatchNorm,
    frozen: bool,
}

impl Bn {
    fn new(c: usize, vb: &VarBuilder, name: &str, frozen: bool, named: &mut Named) -> Result<Self> {
        let vb = vb.pp(name);
        let mut get = |v: &str, init: f64| -> Result<Tensor> {
            let t = vb.get_with_hints(c, v, Init::Const(init))?;
            named.push(format!("{name}.{v}"), &t);
            Ok(t)
        };
        let weight = get("weight", 1.0)?;
        let bias = get("bias", 0.0)?;
        let mean = get("running_mean", 0.0)?;
        let var = get("running_var", 1.0)?;
        Ok(Self {
            inner: BatchNorm::new(weight, bias, mean, var)?,
            frozen,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.inner.forward_t(x, train && !self.frozen)?)
    }

    /// Whether this BN uses its running statistics in this pass.
    fn uses_running(&self, train: bool) -> bool {
        !train || self.frozen
    }

    /// `bn(conv(x))`. With running statistics the BN is an affine map per
    /// channel and is folded into the convolution (`W·s`, bias `β − μ·s`,
    /// `s = γ/√(σ² + ε)`): one op instead of three full passes; gradients
    /// still reach `W`, `γ` and `β` through the fold.
    fn after(&self, conv: &Conv2d, x: &Tensor, train: bool) -> Result<Tensor> {
        if !self.uses_running(train) {
            return self.forward_t(&conv.forward(x)?, train);
        }
        let (scale, shift) = self.inner.running_affine(conv.weight().dtype())?; // [oc] each
        let w = conv
            .weight()
            .broadcast_mul(&scale.reshape((scale.dim(0)?, 1, 1, 1))?)?;
        Ok(Conv2d::new(w, Some(shift), *conv.config()).forward(x)?)
    }
}

/// The variables a network was built with, by relative name, so that
/// pretrained values can be written into them in place.
#[derive(Default)]
struct Named(Vec<(String, Tensor)>);

impl Named {
    fn push(&mut self, name: String, t: &Tensor) {
        self.0.push((name, t.clone()));
    }
}

/// A bias-free convolution with torchvision's initialisation.
fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    vb: &VarBuilder,
    name: &str,
    named: &mut Named,
) -> Result<Conv2d> {
    let init = Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanOut,
        non_linearity: NonLinearity::ReLU,
    };
    let w = vb
        .pp(name)
        .get_with_hints((c_out, c_in, k, k), "weight", init)?;
    named.push(format!("{name}.weight"), &w);
    let cfg = Conv2dConfig {
        padding: k / 2,
        stride,
        ..Default::default()
    };
    Ok(Conv2d::new(w, None, cfg))
}

struct Block {
    convs: Vec<(Conv2d, Bn)>,
    downsample: Option<(Conv2d, Bn)>,
}

impl Block {
    /// `relu(bn(conv(x)))` for all but the last conv, then
    /// `relu(bn_last(conv_last(·)) + shortcut(x))`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.convs.len() - 1;
        for (j, (conv, bn)) in self.convs.iter().enumerate() {
            h = bn.after(conv, &h, train)?;
            if j < last {
                h = ebda_nn::relu(&h)?;
            }
        }
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.after(conv, x, train)?,
            None => x.clone(),
        };
        Ok(ebda_nn::relu(&(h + shortcut)?)?)
    }
}

/// A torchvision ResNet without its classifier: `[b, 3, h, w] -> [b, D]`.
pub struct ResNet {
    spec: ResNetSpec,
    bn_mode: BnMode,
    conv1: Conv2d,
    bn1: Bn,
    pool: Pool2d,
    stages: Vec<Vec<Block>>,
    named: Vec<(String, Tensor)>,
    input_size: usize,
}

impl ResNet {
    /// Builds the network with variables named as torchvision's under `vb`.
    /// `input_size` is the side of the square images it is meant for
    /// (reported by `input_dims`; the network itself takes any size ≥ 32).
    pub fn new(
        spec: ResNetSpec,
        bn_mode: BnMode,
        input_size: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut named = Named::default();
        let frozen = bn_mode.frozen;
        let conv1 = conv(3, spec.stem, 7, 2, &vb, "conv1", &mut named)?;
        let bn1 = Bn::new(spec.stem, &vb, "bn1", frozen, &mut named)?;
        let mut stages = Vec::with_capacity(4);
        let mut c_in = spec.stem;
        for (s, (&n, &planes)) in spec.layers.iter().zip(&spec.planes).enumerate() {
            let stride = if s == 0 { 1 } else { 2 };
            let c_out = planes * spec.expansion();
            let mut blocks = Vec::with_capacity(n);
            for i in 0..n {
                let at = format!("layer{}.{i}", s + 1);
                let st = if i == 0 { stride } else { 1 };
                let shapes: Vec<(usize, usize, usize, usize)> = if spec.bottleneck {
                    vec![
                        (c_in, planes, 1, 1),
                        (planes, planes, 3, st),
                        (planes, c_out, 1, 1),
                    ]
                } else {
                    vec![(c_in, planes, 3, st), (planes, planes, 3, 1)]
                };
                let mut convs = Vec::with_capacity(shapes.len());
                for (j, (ci, co, k, stj)) in shapes.into_iter().enumerate() {
                    let c = conv(
                        ci,
                        co,
                        k,
                        stj,
                        &vb,
                        &format!("{at}.conv{}", j + 1),
                        &mut named,
                    )?;
                    let b = Bn::new(co, &vb, &format!("{at}.bn{}", j + 1), frozen, &mut named)?;
                    convs.push((c, b));
                }
                let downsample = if i == 0 && (stride != 1 || c_in != c_out) {
                    let c = conv(
                        c_in,
                        c_out,
                        1,
                        stride,
                        &vb,
                        &format!("{at}.downsample.0"),
                        &mut named,
                    )?;
                    let b = Bn::new(
                        c_out,
                        &vb,
                        &format!("{at}.downsample.1"),
                        frozen,
                        &mut named,
                    )?;
                    Some((c, b))
                } else {
                    None
                };
                blocks.push(Block { convs, downsample });
                c_in = c_out;
            }
            stages.push(blocks);
        }
        Ok(Self {
            spec,
            bn_mode,
            conv1,
            bn1,
            pool: Pool2d::new(3, 2, 1),
            stages,
            named: named.0,
            input_size,
        })
    }

    /// The network's shape.
    pub fn spec(&self) -> &ResNetSpec {
        &self.spec
    }

    /// The network's variables by relative name (torchvision's), in
    /// `state_dict` order.
    pub fn variables(&self) -> &[(String, Tensor)] {
        &self.named
    }

    /// Writes pretrained values into the network's variables, in place.
    /// `weights` must hold exactly the network's variables (names relative
    /// to the network, e.g. after [`crate::weights::to_torchvision`]) with
    /// their shapes; anything else is an error that lists every missing,
    /// unexpected and mis-shaped key. `source` names the file in errors.
    pub fn load(&self, weights: &[(String, Tensor)], source: &str) -> Result<()> {
        use std::collections::BTreeMap;
        let have: BTreeMap<&str, &Tensor> = weights.iter().map(|(k, t)| (k.as_str(), t)).collect();
        let want: BTreeMap<&str, &Tensor> =
            self.named.iter().map(|(k, t)| (k.as_str(), t)).collect();
        let missing: Vec<String> = want
            .iter()
            .filter(|(k, _)| !have.contains_key(*k))
            .map(|(k, t)| format!("{k} {:?}", t.dims()))
            .collect();
        let unexpected: Vec<String> = have
            .iter()
            .filter(|(k, _)| !want.contains_key(*k))
            .map(|(k, t)| format!("{k} {:?}", t.dims()))
            .collect();
        let misshaped: Vec<String> = want
            .iter()
            .filter_map(|(k, t)| {
                let h = have.get(k)?;
                (h.dims() != t.dims())
                    .then(|| format!("{k}: expected {:?}, found {:?}", t.dims(), h.dims()))
            })
            .collect();
        if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
            let list = |what: &str, v: &[String]| {
                if v.is_empty() {
                    String::new()
                } else {
                    let shown = v.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
                    let more = if v.len() > 12 {
                        format!(" … and {} more", v.len() - 12)
                    } else {
                        String::new()
                    };
                    format!("\n  {} {what}: {shown}{more}", v.len())
                }
            };
            return Err(Error::Weights {
                file: source.to_string(),
                reason: format!(
                    "does not fit {}{}{}{}",
                    self.describe(),
                    list("missing", &missing),
                    list("unexpected", &unexpected),
                    list("with the wrong shape", &misshaped)
                ),
            });
        }
        for (name, var) in &self.named {
            let value = have[name.as_str()]
                .to_dtype(var.dtype())?
                .to_device(var.device())?
                .contiguous()?;
            if let Some(bad) = first_non_finite(&value)? {
                return Err(Error::Weights {
                    file: source.to_string(),
                    reason: format!("{name} holds a non-finite value ({bad})"),
                });
            }
            var.slice_set(&value, 0, 0)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let depth = DEPTHS
            .iter()
            .find(|&&d| ResNetSpec::of_depth(d).as_ref() == Some(&self.spec));
        match depth {
            Some(d) => format!("ResNet-{d}"),
            None => format!("a ResNet of shape {:?}", self.spec),
        }
    }
}

fn first_non_finite(t: &Tensor) -> Result<Option<f32>> {
    let v: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    Ok(v.into_iter().find(|x| !x.is_finite()))
}

impl FeatureExtractor for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match x.dims() {
            [b, 3, h, w] if *b > 0 && *h >= 32 && *w >= 32 => {}
            dims => {
                return Err(Error::Input {
                    arch: "resnet",
                    reason: format!("expected [batch > 0, 3, h ≥ 32, w ≥ 32], got {dims:?}"),
                });
            }
        }
        // In evaluation mode no autograd graph is kept (as under PyTorch's
        // no_grad): each block's output is detached, so a block's
        // intermediates are freed as soon as it is done. A gradient through
        // evaluation-mode statistics is had with frozen BN in train mode.
        let cut = |t: Tensor| if train { t } else { t.detach() };
        // [b, 3, h, w] -> [b, stem, h/4, w/4]
        let mut h = self.bn1.after(&self.conv1, x, train)?;
        h = cut(self.pool.forward(&ebda_nn::relu(&h)?)?);
        for stage in &self.stages {
            for block in stage {
                h = cut(block.forward_t(&h, train)?);
            }
        }
        // Global average pool: [b, D, h/32, w/32] -> [b, D]
        Ok(h.mean((2, 3))?)
    }

    fn out_dim(&self) -> usize {
        self.spec.out_dim()
    }

    fn input_dims(&self) -> Vec<usize> {
        vec![3, self.input_size, self.input_size]
    }

    fn group(&self, name: &str) -> Group {
        let Some(rest) = name
            .strip_prefix(crate::BACKBONE)
            .and_then(|r| r.strip_prefix('.'))
        else {
            return Group::NewLayers;
        };
        let is_bn = rest.rsplit_once('.').is_some_and(|(module, _)| {
            module
                .rsplit('.')
                .next()
                .is_some_and(|m| m.starts_with("bn"))
                || module.ends_with("downsample.1")
        });
        if is_bn && self.bn_mode.frozen && !self.bn_mode.affine_trainable {
            Group::Frozen
        } else {
            Group::Backbone
        }
    }
}

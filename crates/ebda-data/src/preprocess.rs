//! Turning a stored sample into a network input of a configured shape.
//!
//! Per sample, in order:
//! 1. to `f32` in [0, 1] (`u8 / 255`);
//! 2. channels: grayscale → RGB repeats the channel; RGB → grayscale is
//!    `0.299 R + 0.587 G + 0.114 B` (ITU-R 601-2, as PIL's `convert("L")`);
//! 3. for image files with `resize`: an antialiased (triangle-filter) resize
//!    to `resize × resize`, as tllib's `ResizeImage(256)` before its crops;
//! 4. a crop box: the whole image, the centre `height × width` (evaluation
//!    with `resize`), or a random resized crop (training with augmentation;
//!    torchvision's `RandomResizedCrop` sampling: 10 tries of an area share in
//!    `scale` and a log-uniform aspect ratio in `ratio`, else the centre);
//! 5. bilinear resampling of the box to `height × width` with PyTorch's
//!    `F.interpolate(mode="bilinear", align_corners=False)` sampling;
//! 6. a horizontal flip with probability ½ (training with `hflip`);
//! 7. per-channel normalisation `(x − mean) / std`.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Training-time augmentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Random resized crop (torchvision `RandomResizedCrop`).
    pub random_resized_crop: bool,
    /// Range of the crop's share of the image area (torchvision: [0.08, 1]).
    pub scale: [f64; 2],
    /// Range of the crop's aspect ratio (torchvision: [3/4, 4/3]).
    pub ratio: [f64; 2],
    /// Random horizontal flip with probability ½.
    pub hflip: bool,
}

impl Default for Augment {
    /// No augmentation (the digits default); ranges are torchvision's.
    fn default() -> Self {
        Self {
            random_resized_crop: false,
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            hflip: false,
        }
    }
}

/// The network input a dataset is turned into.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Image files only: antialiased resize to `resize × resize` first.
    pub resize: Option<usize>,
    /// Per-channel mean (one value applies to every channel).
    pub mean: Vec<f64>,
    /// Per-channel standard deviation (one value applies to every channel).
    pub std: Vec<f64>,
    pub augment: Augment,
}

impl Default for InputConfig {
    /// Digits for LeNet: 1×28×28, normalised with mean 0.5 and std 0.5 to
    /// [−1, 1] (tllib digits `T.Normalize(mean=0.5, std=0.5)`), no augmentation.
    fn default() -> Self {
        Self {
            channels: 1,
            height: 28,
            width: 28,
            resize: None,
            mean: vec![0.5],
            std: vec![0.5],
            augment: Augment::default(),
        }
    }
}

/// ImageNet statistics (torchvision `models` documentation; tllib).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet statistics (torchvision `models` documentation; tllib).
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

impl InputConfig {
    /// Office-31 with an ImageNet backbone, as tllib: resize 256, crop 224,
    /// random resized crop and flip for training, ImageNet normalisation.
    pub fn imagenet(train_augment: bool) -> Self {
        Self {
            channels: 3,
            height: 224,
            width: 224,
            resize: Some(256),
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
            augment: Augment {
                random_resized_crop: train_augment,
                hflip: train_augment,
                ..Augment::default()
            },
        }
    }

    /// Checks every field; keys are relative to the input section.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.channels, 1 | 3) {
            return Err(Error::config(
                "channels",
                format!("must be 1 or 3, got {}", self.channels),
            ));
        }
        if self.height == 0 || self.width == 0 {
            return Err(Error::config(
                "height",
                format!(
                    "height and width must be > 0, got {}×{}",
                    self.height, self.width
                ),
            ));
        }
        if let Some(r) = self.resize
            && (r < self.height || r < self.width)
        {
            return Err(Error::config(
                "resize",
                format!(
                    "must be >= height and width ({}×{}), got {r}",
                    self.height, self.width
                ),
            ));
        }
        for (key, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != self.channels {
                return Err(Error::config(
                    key,
                    format!("needs 1 or {} values, got {}", self.channels, v.len()),
                ));
            }
        }
        if let Some(s) = self.std.iter().find(|s| s.is_nan() || **s <= 0.0) {
            return Err(Error::config("std", format!("values must be > 0, got {s}")));
        }
        let [lo, hi] = self.augment.scale;
        if !(0.0 < lo && lo <= hi && hi <= 1.0) {
            return Err(Error::config(
                "augment.scale",
                format!("must satisfy 0 < lo <= hi <= 1, got [{lo}, {hi}]"),
            ));
        }
        let [lo, hi] = self.augment.ratio;
        if !(0.0 < lo && lo <= hi) {
            return Err(Error::config(
                "augment.ratio",
                format!("must satisfy 0 < lo <= hi, got [{lo}, {hi}]"),
            ));
        }
        Ok(())
    }

    /// Values per sample, `channels · height · width`.
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn channel_stat(v: &[f64], k: usize) -> f32 {
        (if v.len() == 1 { v[0] } else { v[k] }) as f32
    }
}

/// A planar `f32` image `[c, h, w]`.
#[derive(Clone, Debug)]
pub struct Planar {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Planar {
    /// From `u8` planar pixels, scaled to [0, 1].
    pub fn from_u8(c: usize, h: usize, w: usize, pixels: &[u8]) -> Self {
        Self {
            c,
            h,
            w,
            data: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        }
    }

    /// From a decoded image, converted to `channels` (1 or 3).
    pub fn from_image(img: &image::DynamicImage, channels: usize) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        if channels == 1 {
            return Self::from_u8(1, h, w, img.to_luma8().as_raw());
        }
        let rgb = img.to_rgb8();
        let mut data = vec![0f32; 3 * h * w];
        for (p, px) in rgb.as_raw().chunks_exact(3).enumerate() {
            for k in 0..3 {
                data[k * h * w + p] = f32::from(px[k]) / 255.0;
            }
        }
        Self { c: 3, h, w, data }
    }

    /// Converts to `channels` (grayscale ↔ RGB).
    fn with_channels(self, channels: usize) -> Self {
        let plane = self.h * self.w;
        match (self.c, channels) {
            (a, b) if a == b => self,
            (1, 3) => Self {
                c: 3,
                data: self.data.repeat(3),
                ..self
            },
            (3, 1) => {
                let d = &self.data;
                let data = (0..plane)
                    .map(|p| 0.299 * d[p] + 0.587 * d[plane + p] + 0.114 * d[2 * plane + p])
                    .collect();
                Self { c: 1, data, ..self }
            }
            _ => self,
        }
    }
}

/// A crop box in source pixels: left, top, width, height.
type Box4 = (f64, f64, f64, f64);

/// torchvision `RandomResizedCrop.get_params`, in real-valued pixels.
fn random_box<R: rand::Rng>(h: usize, w: usize, aug: &Augment, rng: &mut R) -> Box4 {
    let area = (h * w) as f64;
    let (log_lo, log_hi) = (aug.ratio[0].ln(), aug.ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.random_range(aug.scale[0]..=aug.scale[1]);
        let ratio = if log_lo < log_hi {
            rng.random_range(log_lo..log_hi).exp()
        } else {
            aug.ratio[0]
        };
        let cw = (target * ratio).sqrt().round();
        let ch = (target / ratio).sqrt().round();
        if cw >= 1.0 && ch >= 1.0 && cw <= w as f64 && ch <= h as f64 {
            let top = rng.random_range(0..=(h - ch as usize)) as f64;
            let left = rng.random_range(0..=(w - cw as usize)) as f64;
            return (left, top, cw, ch);
        }
    }
    // Fallback: the largest centre crop within the ratio range.
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < aug.ratio[0] {
        (w as f64, (w as f64 / aug.ratio[0]).round())
    } else if in_ratio > aug.ratio[1] {
        ((h as f64 * aug.ratio[1]).round(), h as f64)
    } else {
        (w as f64, h as f64)
    };
    (
        ((w as f64 - cw) / 2.0).floor(),
        ((h as f64 - ch) / 2.0).floor(),
        cw,
        ch,
    )
}

/// Bilinear resampling of `bx` to `out_h × out_w`, PyTorch `align_corners=False`:
/// `src = max(0, (dst + 0.5) · scale − 0.5)`, neighbours clamped to the image.
fn resample(src: &Planar, bx: Box4, out_h: usize, out_w: usize, out: &mut [f32]) {
    let (left, top, bw, bh) = bx;
    if left == 0.0
        && top == 0.0
        && bw as usize == src.w
        && bh as usize == src.h
        && src.w == out_w
        && src.h == out_h
    {
        out.copy_from_slice(&src.data);
        return;
    }
    let axis = |n_out: usize, start: f64, len: f64, n_src: usize| -> Vec<(usize, usize, f32)> {
        let scale = len / n_out as f64;
        (0..n_out)
            .map(|d| {
                let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(len as usize - 1);
                let i1 = (i0 + 1).min(len as usize - 1);
                let frac = (s - i0 as f64).clamp(0.0, 1.0) as f32;
                let base = start as usize;
                ((base + i0).min(n_src - 1), (base + i1).min(n_src - 1), frac)
            })
            .collect()
    };
    let rows = axis(out_h, top, bh, src.h);
    let cols = axis(out_w, left, bw, src.w);
    let plane = src.h * src.w;
    for k in 0..src.c {
        let img = &src.data[k * plane..(k + 1) * plane];
        let dst = &mut out[k * out_h * out_w..(k + 1) * out_h * out_w];
        for (y, &(r0, r1, fy)) in rows.iter().enumerate() {
            for (x, &(c0, c1, fx)) in cols.iter().enumerate() {
                let top = img[r0 * src.w + c0] * (1.0 - fx) + img[r0 * src.w + c1] * fx;
                let bottom = img[r1 * src.w + c0] * (1.0 - fx) + img[r1 * src.w + c1] * fx;
                dst[y * out_w + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}

/// Runs steps 2 and 4–7 on one image into `out` (`cfg.sample_len()` values).
/// `rng` is used only when `augment` is true.
pub fn process<R: rand::Rng>(
    img: Planar,
    cfg: &InputConfig,
    augment: bool,
    rng: &mut R,
    out: &mut [f32],
) {
    let img = img.with_channels(cfg.channels);
    let (h, w) = (img.h, img.w);
    let aug = &cfg.augment;
    let bx = if augment && aug.random_resized_crop {
        random_box(h, w, aug, rng)
    } else if cfg.resize.is_some() && h >= cfg.height && w >= cfg.width {
        // Centre crop (torchvision CenterCrop rounding).
        let top = ((h - cfg.height) as f64 / 2.0).round();
        let left = ((w - cfg.width) as f64 / 2.0).round();
        (left, top, cfg.width as f64, cfg.height as f64)
    } else {
        (0.0, 0.0, w as f64, h as f64)
    };
    resample(&img, bx, cfg.height, cfg.width, out);
    let plane = cfg.height * cfg.width;
    if augment && aug.hflip && rng.random_bool(0.5) {
        for row in out.chunks_exact_mut(cfg.width) {
            row.reverse();
        }
    }
    for k in 0..cfg.channels {
        let (m, s) = (
            InputConfig::channel_stat(&cfg.mean, k),
            InputConfig::channel_stat(&cfg.std, k),
        );
        for v in &mut out[k * plane..(k + 1) * plane] {
            *v = (*v - m) / s;
        }
    }
}

/// Step 3: antialiased resize of a decoded file image to `size × size`.
pub fn resize_file_image(img: image::DynamicImage, size: Option<usize>) -> image::DynamicImage {
    match size {
        Some(s) if (img.width() as usize, img.height() as usize) != (s, s) => {
            img.resize_exact(s as u32, s as u32, image::imageops::FilterType::Triangle)
        }
        _ => img,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    #[test]
    fn bilinear_matches_pytorch_align_corners_false() {
        // F.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4), mode="bilinear",
        // align_corners=False) gives rows [0, .25, .75, 1], [.5, .75, 1.25, 1.5],
        // [1.5, 1.75, 2.25, 2.5], [2, 2.25, 2.75, 3].
        let src = Planar {
            c: 1,
            h: 2,
            w: 2,
            data: vec![0.0, 1.0, 2.0, 3.0],
        };
        let mut out = vec![0f32; 16];
        resample(&src, (0.0, 0.0, 2.0, 2.0), 4, 4, &mut out);
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn normalises_and_converts_channels() {
        let cfg = InputConfig {
            channels: 3,
            height: 1,
            width: 2,
            ..InputConfig::default()
        };
        let img = Planar::from_u8(1, 1, 2, &[0, 255]);
        let mut out = vec![0f32; 6];
        process(img, &cfg, false, &mut Pcg64Mcg::seed_from_u64(0), &mut out);
        assert_eq!(out, vec![-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]);
        let cfg = InputConfig {
            channels: 1,
            height: 1,
            width: 1,
            mean: vec![0.0],
            std: vec![1.0],
            ..InputConfig::default()
        };
        let rgb = Planar::from_u8(3, 1, 1, &[255, 0, 0]);
        let mut out = vec![0f32; 1];
        process(rgb, &cfg, false, &mut Pcg64Mcg::seed_from_u64(0), &mut out);
        assert!((out[0] - 0.299).abs() < 1e-6);
    }

    #[test]
    fn random_boxes_stay_inside_and_respect_the_area_range() {
        let aug = Augment {
            random_resized_crop: true,
            ..Augment::default()
        };
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        for _ in 0..200 {
            let (l, t, w, h) = random_box(50, 80, &aug, &mut rng);
            assert!(l >= 0.0 && t >= 0.0 && l + w <= 80.0 && t + h <= 50.0);
            assert!(w * h <= 4000.0 + 1e-9);
        }
    }

    #[test]
    fn bad_input_config_is_named() {
        let bad = |c: InputConfig| c.validate().unwrap_err().to_string();
        assert_eq!(
            bad(InputConfig {
                channels: 2,
                ..Default::default()
            }),
            "channels: must be 1 or 3, got 2"
        );
        assert_eq!(
            bad(InputConfig {
                std: vec![0.0],
                ..Default::default()
            }),
            "std: values must be > 0, got 0"
        );
        assert_eq!(
            bad(InputConfig {
                mean: vec![0.1, 0.2],
                ..Default::default()
            }),
            "mean: needs 1 or 1 values, got 2"
        );
    }
}

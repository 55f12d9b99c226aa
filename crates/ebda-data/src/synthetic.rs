//! A synthetic digit-style domain shift, generated in code (for `ebda demo`
//! and tests on a machine without data).
//!
//! Each class 0–9 is a glyph drawn as polylines in a unit box and rasterised
//! into 28×28 with antialiased strokes.
//! - Source style: thin strokes (width ≈ 2 px), small affine jitter
//!   (rotation ±8°, scale 0.9–1.05, shift ±1.5 px), clean black background.
//! - Target style: the same classes, shifted — thick strokes (≈ 3.5 px),
//!   slanted by ≈ 20°, smaller, on a grey, noisy background.

use crate::dataset::{Dataset, Samples};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

type Polyline = &'static [(f32, f32)];

const ZERO: &[Polyline] = &[&[
    (0.5, 0.08),
    (0.72, 0.16),
    (0.82, 0.38),
    (0.82, 0.62),
    (0.72, 0.84),
    (0.5, 0.92),
    (0.28, 0.84),
    (0.18, 0.62),
    (0.18, 0.38),
    (0.28, 0.16),
    (0.5, 0.08),
]];
const ONE: &[Polyline] = &[&[(0.35, 0.25), (0.52, 0.08), (0.52, 0.92)]];
const TWO: &[Polyline] = &[&[
    (0.2, 0.3),
    (0.3, 0.12),
    (0.5, 0.08),
    (0.7, 0.12),
    (0.78, 0.3),
    (0.7, 0.47),
    (0.2, 0.9),
    (0.82, 0.9),
]];
const THREE: &[Polyline] = &[&[
    (0.2, 0.12),
    (0.75, 0.12),
    (0.45, 0.45),
    (0.7, 0.55),
    (0.78, 0.72),
    (0.65, 0.88),
    (0.4, 0.92),
    (0.2, 0.82),
]];
const FOUR: &[Polyline] = &[&[(0.65, 0.92), (0.65, 0.08), (0.15, 0.65), (0.85, 0.65)]];
const FIVE: &[Polyline] = &[&[
    (0.78, 0.1),
    (0.27, 0.1),
    (0.23, 0.45),
    (0.55, 0.4),
    (0.76, 0.55),
    (0.76, 0.76),
    (0.55, 0.92),
    (0.2, 0.86),
]];
const SIX: &[Polyline] = &[&[
    (0.7, 0.1),
    (0.42, 0.28),
    (0.26, 0.58),
    (0.3, 0.84),
    (0.52, 0.92),
    (0.74, 0.78),
    (0.7, 0.56),
    (0.45, 0.5),
    (0.27, 0.64),
]];
const SEVEN: &[Polyline] = &[&[(0.2, 0.1), (0.8, 0.1), (0.42, 0.92)]];
const EIGHT: &[Polyline] = &[
    &[
        (0.5, 0.08),
        (0.7, 0.16),
        (0.7, 0.36),
        (0.5, 0.47),
        (0.3, 0.36),
        (0.3, 0.16),
        (0.5, 0.08),
    ],
    &[
        (0.5, 0.47),
        (0.76, 0.58),
        (0.76, 0.82),
        (0.5, 0.92),
        (0.24, 0.82),
        (0.24, 0.58),
        (0.5, 0.47),
    ],
];
const NINE: &[Polyline] = &[&[
    (0.73, 0.34),
    (0.6, 0.5),
    (0.36, 0.5),
    (0.26, 0.32),
    (0.36, 0.12),
    (0.6, 0.1),
    (0.73, 0.34),
    (0.62, 0.92),
]];

/// The glyph of each digit.
const GLYPHS: [&[Polyline]; 10] = [ZERO, ONE, TWO, THREE, FOUR, FIVE, SIX, SEVEN, EIGHT, NINE];

const SIDE: usize = 28;

/// A drawing style: stroke width and the ranges of the random affine map and noise.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub width: (f32, f32),
    pub rotation_deg: (f32, f32),
    pub scale: (f32, f32),
    pub shift_px: f32,
    pub background: f32,
    pub noise: f32,
}

/// The demo's source style: thin, upright, clean.
pub const SOURCE_STYLE: Style = Style {
    width: (1.7, 2.3),
    rotation_deg: (-8.0, 8.0),
    scale: (0.9, 1.05),
    shift_px: 1.5,
    background: 0.0,
    noise: 0.0,
};

/// The demo's target style: thick, slanted, smaller, grey noisy background.
pub const TARGET_STYLE: Style = Style {
    width: (3.0, 4.0),
    rotation_deg: (12.0, 30.0),
    scale: (0.75, 0.92),
    shift_px: 2.0,
    background: 0.25,
    noise: 0.12,
};

fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (qx * qx + qy * qy).sqrt()
}

/// Renders digit `class` in `style` into 28×28 `u8` pixels.
pub fn render<R: Rng>(class: usize, style: &Style, rng: &mut R) -> Vec<u8> {
    let width = rng.random_range(style.width.0..=style.width.1);
    let angle = rng
        .random_range(style.rotation_deg.0..=style.rotation_deg.1)
        .to_radians();
    let scale = rng.random_range(style.scale.0..=style.scale.1) * 20.0; // glyph box ≈ 20 px
    let (tx, ty) = (
        rng.random_range(-style.shift_px..=style.shift_px),
        rng.random_range(-style.shift_px..=style.shift_px),
    );
    let (sin, cos) = angle.sin_cos();
    let center = SIDE as f32 / 2.0;
    let map = |(x, y): (f32, f32)| {
        let (u, v) = ((x - 0.5) * scale * 0.8, (y - 0.5) * scale);
        (
            center + tx + u * cos - v * sin,
            center + ty + u * sin + v * cos,
        )
    };
    let segments: Vec<((f32, f32), (f32, f32))> = GLYPHS[class]
        .iter()
        .flat_map(|line| line.windows(2).map(|w| (map(w[0]), map(w[1]))))
        .collect();
    let mut out = vec![0u8; SIDE * SIDE];
    for y in 0..SIDE {
        for x in 0..SIDE {
            let p = (x as f32 + 0.5, y as f32 + 0.5);
            let d = segments
                .iter()
                .map(|&(a, b)| segment_distance(p, a, b))
                .fold(f32::INFINITY, f32::min);
            let ink = (width / 2.0 + 0.5 - d).clamp(0.0, 1.0);
            let noise = if style.noise > 0.0 {
                rng.random_range(-style.noise..=style.noise)
            } else {
                0.0
            };
            let v = style.background + (1.0 - style.background) * ink + noise;
            out[y * SIDE + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    out
}

/// `n` samples (classes cycling 0..9) in `style`, seeded.
pub fn dataset(name: &str, n: usize, style: &Style, seed: u64) -> Dataset {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 10;
        pixels.extend(render(class, style, &mut rng));
        labels.push(class as u32);
    }
    Dataset {
        name: name.to_string(),
        samples: Samples::Images {
            pixels,
            dims: [1, SIDE, SIDE],
        },
        labels,
        num_classes: 10,
        class_names: None,
        files: Vec::new(),
        value_range: Some((0.0, 255.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_render_with_ink_and_are_seeded() {
        let a = dataset("s", 20, &SOURCE_STYLE, 1);
        let b = dataset("s", 20, &SOURCE_STYLE, 1);
        let Samples::Images { pixels: pa, .. } = &a.samples else {
            unreachable!()
        };
        let Samples::Images { pixels: pb, .. } = &b.samples else {
            unreachable!()
        };
        assert_eq!(pa, pb);
        for img in pa.chunks(SIDE * SIDE) {
            let ink = img.iter().filter(|&&v| v > 128).count();
            assert!((20..400).contains(&ink), "ink pixels {ink}");
        }
        let t = dataset("t", 10, &TARGET_STYLE, 2);
        let Samples::Images { pixels: pt, .. } = &t.samples else {
            unreachable!()
        };
        let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
        assert!(
            mean(pt) > mean(pa) + 30.0,
            "the target style is brighter (grey background, thick strokes)"
        );
    }
}

//! A PNG grid of samples, one row per class, as the network sees them
//! (preprocessed, then un-normalised for display).

use crate::dataset::{Dataset, Samples};
use crate::loader::assemble;
use crate::preprocess::InputConfig;
use crate::{Error, Result};
use candle_core::Device;
use std::path::Path;

/// Writes up to `per_class` samples of each class (first in dataset order)
/// as a PNG grid. Small images are scaled up (nearest neighbour) to at least
/// 56 pixels so digits are legible.
pub fn write_grid(data: &Dataset, input: &InputConfig, per_class: usize, out: &Path) -> Result<()> {
    if matches!(data.samples, Samples::Vectors { .. }) {
        return Err(Error::Usage(format!(
            "{} holds feature vectors, not images: no grid",
            data.name
        )));
    }
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); data.num_classes];
    for (i, &y) in data.labels.iter().enumerate() {
        if rows[y as usize].len() < per_class {
            rows[y as usize].push(i);
        }
    }
    rows.retain(|r| !r.is_empty());
    let (h, w, c) = (input.height, input.width, input.channels);
    let scale = (56 / h.max(w)).max(1);
    let (cell_h, cell_w, pad) = (h * scale, w * scale, 2);
    let width = per_class * (cell_w + pad) + pad;
    let height = rows.len() * (cell_h + pad) + pad;
    let mut canvas =
        image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([32, 32, 32]));
    for (r, indices) in rows.iter().enumerate() {
        let batch = assemble(data, input, indices, false, 0, &Device::Cpu)?;
        let values: Vec<f32> = batch.inputs.flatten_all()?.to_vec1()?;
        for (k, sample) in values.chunks_exact(c * h * w).enumerate() {
            for y in 0..cell_h {
                for x in 0..cell_w {
                    let mut px = [0u8; 3];
                    for (ch, p) in px.iter_mut().enumerate() {
                        let plane = if c == 1 { 0 } else { ch };
                        let m = if input.mean.len() == 1 {
                            input.mean[0]
                        } else {
                            input.mean[plane]
                        } as f32;
                        let s = if input.std.len() == 1 {
                            input.std[0]
                        } else {
                            input.std[plane]
                        } as f32;
                        let v = sample[plane * h * w + (y / scale) * w + x / scale] * s + m;
                        *p = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                    let (cx, cy) = (pad + k * (cell_w + pad) + x, pad + r * (cell_h + pad) + y);
                    canvas.put_pixel(cx as u32, cy as u32, image::Rgb(px));
                }
            }
        }
    }
    canvas.save(out).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

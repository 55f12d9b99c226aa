//! Image-file datasets: MNIST-M (PNG folders), Office-31 (JPEG folders) and
//! generic image lists.
//!
//! - MNIST-M (Ganin & Lempitsky, ICML 2015): `mnist_m_{split}/NNNNNNNN.png`
//!   and `mnist_m_{split}_labels.txt` with lines `NNNNNNNN.png label`. Small
//!   images, decoded once (in parallel) into `u8` memory.
//! - Office-31 (Saenko et al., ECCV 2010): `<root>/<domain>/images/<class>/*.jpg`
//!   for the domains amazon, dslr and webcam. Class ids come from one fixed,
//!   sorted list of the 31 class names ([`OFFICE31_CLASSES`]), so they agree
//!   across domains. Files are decoded when a batch is assembled.
//! - Image list: a text file of `relative/path label` lines under a root (the
//!   list format of tllib and Dassl for custom datasets).

use crate::dataset::{Dataset, Samples};
use crate::io::not_found_or_io;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The 31 Office-31 classes, sorted; a class's id is its index here
/// (the same list as tllib `tllib/vision/datasets/office31.py`).
pub const OFFICE31_CLASSES: [&str; 31] = [
    "back_pack",
    "bike",
    "bike_helmet",
    "bookcase",
    "bottle",
    "calculator",
    "desk_chair",
    "desk_lamp",
    "desktop_computer",
    "file_cabinet",
    "headphones",
    "keyboard",
    "laptop_computer",
    "letter_tray",
    "mobile_phone",
    "monitor",
    "mouse",
    "mug",
    "paper_notebook",
    "pen",
    "phone",
    "printer",
    "projector",
    "punchers",
    "ring_binder",
    "ruler",
    "scissors",
    "speaker",
    "stapler",
    "tape_dispenser",
    "trash_can",
];

/// The Office-31 domains.
pub const OFFICE31_DOMAINS: [&str; 3] = ["amazon", "dslr", "webcam"];

/// Decodes an image file (PNG or JPEG, by content).
pub fn decode_image(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| not_found_or_io(path, e))?;
    image::load_from_memory(&bytes)
        .map_err(|e| Error::format(path, format!("cannot decode image: {e}")))
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| not_found_or_io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::format(path, format!("not UTF-8 text: {e}")))
}

/// Splits `path label` at the last whitespace (paths may contain spaces).
fn path_and_label<'a>(list: &Path, lineno: usize, line: &'a str) -> Result<(&'a str, &'a str)> {
    line.trim_end()
        .rsplit_once(char::is_whitespace)
        .map(|(p, l)| (p.trim(), l))
        .filter(|(p, _)| !p.is_empty())
        .ok_or_else(|| {
            Error::format(
                list,
                format!("line {}: expected `path label`, got {line:?}", lineno + 1),
            )
        })
}

fn parse_label(
    list: &Path,
    lineno: usize,
    token: &str,
    base: u32,
    limit: Option<usize>,
) -> Result<u32> {
    let at = |why: String| Error::format(list, format!("line {}: {why}", lineno + 1));
    let y: u64 = token
        .parse()
        .map_err(|_| at(format!("label {token:?} is not a non-negative integer")))?;
    crate::dataset::shift_label(y as f64, base, limit)
        .map_err(|why| at(format!("label {token} {why}")))
}

/// MNIST-M split `train` or `test` under `root`.
pub fn mnist_m(root: &Path, split: &str) -> Result<Dataset> {
    if !matches!(split, "train" | "test") {
        return Err(Error::config(
            "split",
            format!("mnist_m has splits train and test, got {split:?}"),
        ));
    }
    let dir = root.join(format!("mnist_m_{split}"));
    let list = root.join(format!("mnist_m_{split}_labels.txt"));
    let text = read_text(&list)?;
    let mut names = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (name, label) = path_and_label(&list, i, line)?;
        names.push(dir.join(name));
        labels.push(parse_label(&list, i, label, 0, Some(10))?);
    }
    if names.is_empty() {
        return Err(Error::format(&list, "no samples (empty label file)"));
    }
    let decoded: Vec<(u32, u32, Vec<u8>)> = names
        .par_iter()
        .map(|p| {
            let img = decode_image(p)?.to_rgb8();
            let (w, h) = img.dimensions();
            Ok((w, h, img.into_raw()))
        })
        .collect::<Result<_>>()?;
    let (w, h) = (decoded[0].0, decoded[0].1);
    let (w, h) = (w as usize, h as usize);
    let mut pixels = vec![0u8; names.len() * 3 * h * w];
    for ((dw, dh, rgb), (out, path)) in decoded
        .iter()
        .zip(pixels.chunks_exact_mut(3 * h * w).zip(&names))
    {
        if (*dw as usize, *dh as usize) != (w, h) {
            return Err(Error::format(
                path,
                format!("image is {dw}×{dh}, the first image of the split is {w}×{h}"),
            ));
        }
        // Interleaved RGB [h, w, 3] -> planar [3, h, w].
        for (p, px) in rgb.chunks_exact(3).enumerate() {
            for k in 0..3 {
                out[k * h * w + p] = px[k];
            }
        }
    }
    Ok(Dataset {
        name: format!("mnist_m/{split}"),
        samples: Samples::Images {
            pixels,
            dims: [3, h, w],
        },
        labels,
        num_classes: 10,
        class_names: None,
        files: vec![list],
        value_range: Some((0.0, 255.0)),
    })
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png")
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let read = std::fs::read_dir(dir).map_err(|e| not_found_or_io(dir, e))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // hidden files (.DS_Store and the like) are not samples
        }
        entries.push((name, entry.path()));
    }
    entries.sort();
    Ok(entries)
}

/// Office-31 domain `amazon`, `dslr` or `webcam` under `root`.
pub fn office31(root: &Path, domain: &str) -> Result<Dataset> {
    if !OFFICE31_DOMAINS.contains(&domain) {
        return Err(Error::config(
            "domain",
            format!("office31 domains are amazon, dslr and webcam, got {domain:?}"),
        ));
    }
    let images = root.join(domain).join("images");
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (class, class_dir) in sorted_entries(&images)? {
        let Some(id) = OFFICE31_CLASSES.iter().position(|c| *c == class) else {
            return Err(Error::format(
                &class_dir,
                format!(
                    "unknown Office-31 class folder {class:?} (expected one of the 31 classes, e.g. back_pack)"
                ),
            ));
        };
        if !class_dir.is_dir() {
            return Err(Error::format(
                &class_dir,
                "expected a class folder, found a file",
            ));
        }
        for (name, file) in sorted_entries(&class_dir)? {
            if !is_image_name(&name) {
                return Err(Error::format(
                    &file,
                    "not an image file (.jpg, .jpeg or .png expected)",
                ));
            }
            paths.push(file);
            labels.push(id as u32);
        }
    }
    if paths.is_empty() {
        return Err(Error::format(&images, "no images found"));
    }
    Ok(Dataset {
        name: format!("office31/{domain}"),
        samples: Samples::Files { paths },
        labels,
        num_classes: OFFICE31_CLASSES.len(),
        class_names: Some(OFFICE31_CLASSES.iter().map(|c| c.to_string()).collect()),
        files: Vec::new(),
        value_range: Some((0.0, 255.0)),
    })
}

/// An image list: `list` (relative to `root` unless absolute) of
/// `relative/path label` lines, labels counted from `base`.
pub fn image_list(
    root: &Path,
    list: &Path,
    base: u32,
    num_classes: Option<usize>,
) -> Result<Dataset> {
    let list_path = if list.is_absolute() {
        list.to_path_buf()
    } else {
        root.join(list)
    };
    let text = read_text(&list_path)?;
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (rel, label) = path_and_label(&list_path, i, line)?;
        let path = root.join(rel);
        if !path.is_file() {
            return Err(Error::Missing {
                path,
                hint: format!("listed on line {} of {}", i + 1, list_path.display()),
            });
        }
        paths.push(path);
        labels.push(parse_label(&list_path, i, label, base, num_classes)?);
    }
    if paths.is_empty() {
        return Err(Error::format(&list_path, "no samples (empty list)"));
    }
    let num_classes =
        num_classes.unwrap_or_else(|| labels.iter().max().map_or(0, |&m| m as usize + 1));
    Ok(Dataset {
        name: format!("image_list/{}", list.display()),
        samples: Samples::Files { paths },
        labels,
        num_classes,
        class_names: None,
        files: vec![list_path],
        value_range: Some((0.0, 255.0)),
    })
}

//! MNIST (idx3/idx1, plain or gzip) and USPS (libsvm text, plain or bzip2).
//!
//! idx format (LeCun et al., <http://yann.lecun.com/exdb/mnist/>): a
//! big-endian header — magic `0x00000803` for images (`u8`, 3 dims) or
//! `0x00000801` for labels (`u8`, 1 dim), then one `u32` per dimension — and
//! the raw bytes. USPS in libsvm form (Chang & Lin's LIBSVM data sets, as
//! read by torchvision's `USPS`): one line per image, `label idx:value …`
//! with labels 1..10 for digits 0..9, indices 1..256 (16×16 row-major) and
//! values in [−1, 1]; an absent index is 0.

use crate::dataset::{Dataset, Samples};
use crate::io::{first_existing, read_maybe_compressed};
use crate::{Error, Result};
use std::path::Path;

const IDX_IMAGES: u32 = 0x0000_0803;
const IDX_LABELS: u32 = 0x0000_0801;
const DIGIT_CLASSES: usize = 10;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn idx_header(path: &Path, bytes: &[u8], magic: u32, what: &str) -> Result<Vec<usize>> {
    if bytes.len() < 4 {
        return Err(Error::format(
            path,
            format!(
                "truncated: {} bytes, too short for an idx header",
                bytes.len()
            ),
        ));
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(Error::format(
            path,
            format!("bad magic number 0x{found:08x}, expected 0x{magic:08x} ({what})"),
        ));
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Error::format(
            path,
            format!(
                "truncated: {} bytes, the idx header needs {header}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| be_u32(bytes, 4 + 4 * i) as usize)
        .collect();
    let want = header + dims.iter().product::<usize>();
    if bytes.len() != want {
        return Err(Error::format(
            path,
            format!(
                "{} file: header says {dims:?} ({want} bytes with the header), found {} bytes",
                if bytes.len() < want {
                    "truncated"
                } else {
                    "oversized"
                },
                bytes.len()
            ),
        ));
    }
    Ok(dims)
}

/// Reads an idx3 image file: pixels `[n, 1, h, w]` and `(n, h, w)`.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let bytes = read_maybe_compressed(path)?;
    let dims = idx_header(path, &bytes, IDX_IMAGES, "idx3 images")?;
    Ok((bytes[16..].to_vec(), [dims[0], dims[1], dims[2]]))
}

/// Reads an idx1 label file, checking every label is `< num_classes`.
pub fn read_idx_labels(path: &Path, num_classes: usize) -> Result<Vec<u32>> {
    let bytes = read_maybe_compressed(path)?;
    idx_header(path, &bytes, IDX_LABELS, "idx1 labels")?;
    let labels = &bytes[8..];
    if let Some(i) = labels.iter().position(|&y| y as usize >= num_classes) {
        return Err(Error::format(
            path,
            format!(
                "label {} of sample {i} out of range 0..{}",
                labels[i],
                num_classes - 1
            ),
        ));
    }
    Ok(labels.iter().map(|&y| u32::from(y)).collect())
}

/// MNIST split `train` or `test` under `root` (`train-*` / `t10k-*`, with or without `.gz`).
pub fn mnist(root: &Path, split: &str) -> Result<Dataset> {
    let prefix = match split {
        "train" => "train",
        "test" => "t10k",
        other => {
            return Err(Error::config(
                "split",
                format!("mnist has splits train and test, got {other:?}"),
            ));
        }
    };
    let images_name = format!("{prefix}-images-idx3-ubyte");
    let labels_name = format!("{prefix}-labels-idx1-ubyte");
    let images_path = first_existing(root, &[&format!("{images_name}.gz"), &images_name])?;
    let labels_path = first_existing(root, &[&format!("{labels_name}.gz"), &labels_name])?;
    let (pixels, [n, h, w]) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path, DIGIT_CLASSES)?;
    if labels.len() != n {
        return Err(Error::format(
            &labels_path,
            format!(
                "{} labels, but {} holds {n} images",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    let (lo, hi) = min_max_u8(&pixels);
    Ok(Dataset {
        name: format!("mnist/{split}"),
        samples: Samples::Images {
            pixels,
            dims: [1, h, w],
        },
        labels,
        num_classes: DIGIT_CLASSES,
        class_names: None,
        files: vec![images_path, labels_path],
        value_range: Some((lo, hi)),
    })
}

fn min_max_u8(values: &[u8]) -> (f32, f32) {
    let lo = values.iter().copied().min().unwrap_or(0);
    let hi = values.iter().copied().max().unwrap_or(0);
    (f32::from(lo), f32::from(hi))
}

/// USPS image side and pixel count.
const USPS_SIDE: usize = 16;
const USPS_PIXELS: usize = USPS_SIDE * USPS_SIDE;

/// Parsed USPS images: pixels `[n, 1, 16, 16]`, labels, and the value range seen.
pub struct UspsImages {
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub range: (f32, f32),
}

/// Parses USPS libsvm text. Pixels in [−1, 1] are stored as
/// `u8 = round((v + 1) · 127.5)`; labels are digits (libsvm label − 1).
pub fn parse_usps_libsvm(path: &Path, text: &[u8]) -> Result<UspsImages> {
    let text = std::str::from_utf8(text)
        .map_err(|e| Error::format(path, format!("not UTF-8 text: {e}")))?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for (lineno, line) in text.lines().enumerate() {
        let at = |reason: String| Error::format(path, format!("line {}: {reason}", lineno + 1));
        let mut tokens = line.split_whitespace();
        let Some(label) = tokens.next() else { continue };
        let y: f64 = label
            .parse()
            .map_err(|_| at(format!("label {label:?} is not a number")))?;
        if y.fract() != 0.0 || !(1.0..=10.0).contains(&y) {
            return Err(at(format!("label {label} out of range 1..10 (digit + 1)")));
        }
        labels.push(y as u32 - 1);
        let mut image = [0f32; USPS_PIXELS];
        for token in tokens {
            let (k, v) = token
                .split_once(':')
                .ok_or_else(|| at(format!("token {token:?} is not index:value")))?;
            let k: usize = k
                .parse()
                .map_err(|_| at(format!("feature index {k:?} is not an integer")))?;
            if !(1..=USPS_PIXELS).contains(&k) {
                return Err(at(format!(
                    "feature index {k} out of range 1..{USPS_PIXELS}"
                )));
            }
            let v: f32 = v
                .parse()
                .map_err(|_| at(format!("value {v:?} of index {k} is not a number")))?;
            if !(-1.0001..=1.0001).contains(&v) {
                return Err(at(format!("value {v} of index {k} outside [-1, 1]")));
            }
            image[k - 1] = v;
        }
        for v in image {
            lo = lo.min(v);
            hi = hi.max(v);
            pixels.push(((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8);
        }
    }
    if labels.is_empty() {
        return Err(Error::format(path, "no samples (empty file)"));
    }
    Ok(UspsImages {
        pixels,
        labels,
        range: (lo, hi),
    })
}

/// USPS split `train` (`usps`) or `test` (`usps.t`) under `root`, with or without `.bz2`.
pub fn usps(root: &Path, split: &str) -> Result<Dataset> {
    let base = match split {
        "train" => "usps",
        "test" => "usps.t",
        other => {
            return Err(Error::config(
                "split",
                format!("usps has splits train and test, got {other:?}"),
            ));
        }
    };
    let path = first_existing(root, &[&format!("{base}.bz2"), base])?;
    let text = read_maybe_compressed(&path)?;
    let UspsImages {
        pixels,
        labels,
        range,
    } = parse_usps_libsvm(&path, &text)?;
    Ok(Dataset {
        name: format!("usps/{split}"),
        samples: Samples::Images {
            pixels,
            dims: [1, USPS_SIDE, USPS_SIDE],
        },
        labels,
        num_classes: DIGIT_CLASSES,
        class_names: None,
        files: vec![path],
        value_range: Some(range),
    })
}

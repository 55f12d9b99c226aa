//! Writers of small files in each real on-disk format, for fixture tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// idx file bytes: magic, big-endian dims, data.
pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn bzip2(bytes: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes MNIST-style idx files (`{prefix}-images-idx3-ubyte`, labels) under `dir`.
pub fn write_mnist(
    dir: &Path,
    prefix: &str,
    images: &[u8],
    labels: &[u8],
    h: u32,
    w: u32,
    gz: bool,
) {
    let n = labels.len() as u32;
    let img = idx_bytes(0x0803, &[n, h, w], images);
    let lab = idx_bytes(0x0801, &[n], labels);
    let (img, lab, ext) = if gz {
        (gzip(&img), gzip(&lab), ".gz")
    } else {
        (img, lab, "")
    };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), lab).unwrap();
}

/// libsvm USPS text: one line per image, pixels `u8` written as `k/127.5 − 1`.
pub fn usps_text(images: &[[u8; 256]], digits: &[u32]) -> String {
    let mut s = String::new();
    for (img, d) in images.iter().zip(digits) {
        s.push_str(&format!("{}", d + 1));
        for (k, &p) in img.iter().enumerate() {
            if p != 128 || k % 3 == 0 {
                // Leave some mid-grey pixels out: absent indices are 0.0 (≈ 127.5).
                s.push_str(&format!(" {}:{:.6}", k + 1, f64::from(p) / 127.5 - 1.0));
            }
        }
        s.push('\n');
    }
    s
}

/// A MATLAB level-5 numeric variable.
pub enum MatVar<'a> {
    U8(&'a [usize], &'a [u8]),
    F64(&'a [usize], &'a [f64]),
    F32(&'a [usize], &'a [f32]),
}

fn pad8(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(8) {
        v.push(0);
    }
}

fn element(ty: u32, data: &[u8]) -> Vec<u8> {
    let mut out = ty.to_le_bytes().to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    pad8(&mut out);
    out
}

fn matrix(name: &str, var: &MatVar) -> Vec<u8> {
    // (mxClass, miType, dims, bytes): mxUINT8 = 9 / miUINT8 = 2, mxDOUBLE = 6 / miDOUBLE = 9,
    // mxSINGLE = 7 / miSINGLE = 7 (MATLAB "MAT-File Format", level 5).
    let (class, ty, dims, bytes): (u32, u32, &[usize], Vec<u8>) = match var {
        MatVar::U8(d, v) => (9, 2, d, v.to_vec()),
        MatVar::F64(d, v) => (6, 9, d, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        MatVar::F32(d, v) => (7, 7, d, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let mut body = Vec::new();
    let mut flags = class.to_le_bytes().to_vec();
    flags.extend(0u32.to_le_bytes());
    body.extend(element(6, &flags)); // miUINT32 array flags
    let dims: Vec<u8> = dims
        .iter()
        .flat_map(|&d| (d as i32).to_le_bytes())
        .collect();
    body.extend(element(5, &dims)); // miINT32 dimensions
    body.extend(element(1, name.as_bytes())); // miINT8 name
    body.extend(element(ty, &bytes));
    element(14, &body) // miMATRIX
}

/// A level-5 MAT file holding `vars`, each optionally zlib-compressed (miCOMPRESSED).
pub fn mat_v5(vars: &[(&str, MatVar)], compressed: bool) -> Vec<u8> {
    let mut header = b"MATLAB 5.0 MAT-file, Platform: ebda-test, Created on: fixture".to_vec();
    header.resize(116, b' ');
    header.extend([0u8; 8]);
    header.extend(0x0100u16.to_le_bytes());
    header.extend(b"IM");
    for (name, var) in vars {
        let m = matrix(name, var);
        if compressed {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&m).unwrap();
            let z = enc.finish().unwrap();
            header.extend(15u32.to_le_bytes());
            header.extend((z.len() as u32).to_le_bytes());
            header.extend(z);
        } else {
            header.extend(m);
        }
    }
    header
}

//! Reading files whole, with transparent gzip / bzip2 decompression, and hashing.

use crate::{Error, Result};
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads `path` and decompresses it when its first bytes are a gzip
/// (`1f 8b`) or bzip2 (`BZh`) signature, whatever its extension.
pub fn read_maybe_compressed(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| not_found_or_io(path, e))?;
    let mut out = Vec::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else if raw.starts_with(b"BZh") {
        bzip2::read::MultiBzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt or truncated bzip2 stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Maps "not found" to [`Error::Missing`], anything else to [`Error::Io`].
pub(crate) fn not_found_or_io(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Missing {
            path: path.to_path_buf(),
            hint: "see `ebda data fetch --help` or data/sources.json for where to get it".into(),
        }
    } else {
        Error::io(path, e)
    }
}

/// The first of `candidates` (under `root`) that exists, else a [`Error::Missing`]
/// naming the first candidate and the alternatives tried.
pub(crate) fn first_existing(root: &Path, candidates: &[&str]) -> Result<PathBuf> {
    for name in candidates {
        let p = root.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Missing {
        path: root.join(candidates[0]),
        hint: format!(
            "also looked for {}; `ebda data fetch` downloads the original files",
            candidates[1..].join(", ")
        ),
    })
}

/// Hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| not_found_or_io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

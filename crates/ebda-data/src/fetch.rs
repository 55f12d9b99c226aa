//! Dataset sources (`data/sources.json`), checksum checks and resumable downloads.
//!
//! Each dataset lists its files with the URLs of the original distribution,
//! tried in order, and the checksum published for each file (md5 for the
//! files torchvision downloads — `torchvision/datasets/{mnist,usps,svhn}.py`
//! — or sha256). A download goes to `<file>.part`, resumes from there with an
//! HTTP `Range` request, is verified, and only then renamed into place; a
//! file whose checksum does not match is deleted, never kept.

use crate::{Error, Result};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One downloadable file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// File name under the dataset's directory.
    pub name: String,
    /// URLs to try in order (the original distribution first where it is alive).
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The leading hex digits of the sha256, where only those are published
    /// (torchvision's model files carry 8 of them in their names and
    /// torchvision checks just those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_prefix: Option<String>,
    /// Size in bytes, where published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// One dataset of `sources.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub description: String,
    /// Where the URLs and checksums come from.
    pub citation: String,
    /// Sub-directory of the data directory the files land in.
    pub dir: String,
    #[serde(default)]
    pub files: Vec<SourceFile>,
    /// For datasets without a stable public URL: how to get the files by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
}

/// The whole `sources.json`: dataset name → source.
pub type Sources = BTreeMap<String, Source>;

/// Reads a `sources.json`.
pub fn read_sources(path: &Path) -> Result<Sources> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::io::not_found_or_io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("invalid sources file: {e}")))
}

/// Outcome of checking one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus {
    Ok,
    Missing,
    /// The file is there but its checksum is not the published one.
    Mismatch {
        algorithm: &'static str,
        expected: String,
        found: String,
    },
    /// No checksum is published for the file.
    Unverified,
}

impl SourceFile {
    /// Computes the file's checksum with the published algorithm and compares.
    pub fn verify(&self, path: &Path) -> Result<FileStatus> {
        if !path.is_file() {
            return Ok(FileStatus::Missing);
        }
        let (algorithm, expected, found) = if let Some(want) = &self.sha256 {
            ("sha256", want, hash_file::<Sha256>(path)?)
        } else if let Some(want) = &self.md5 {
            ("md5", want, hash_file::<Md5>(path)?)
        } else if let Some(want) = &self.sha256_prefix {
            let mut found = hash_file::<Sha256>(path)?;
            found.truncate(want.len());
            ("sha256 prefix", want, found)
        } else {
            return Ok(FileStatus::Unverified);
        };
        Ok(if found.eq_ignore_ascii_case(expected) {
            FileStatus::Ok
        } else {
            FileStatus::Mismatch {
                algorithm,
                expected: expected.clone(),
                found,
            }
        })
    }
}

fn hash_file<D: Digest>(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Checks every file of `source` under `data_dir/<dir>`.
pub fn check(data_dir: &Path, source: &Source) -> Result<Vec<(PathBuf, FileStatus)>> {
    let dir = data_dir.join(&source.dir);
    source
        .files
        .iter()
        .map(|f| {
            let path = dir.join(&f.name);
            f.verify(&path).map(|s| (path, s))
        })
        .collect()
}

/// What [`fetch`] did with one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Already present with the published checksum.
    Present(PathBuf),
    /// Downloaded (and verified) from the URL.
    Downloaded { path: PathBuf, url: String },
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Downloads every file of `source` that is missing or wrong into
/// `data_dir/<dir>`, resuming partial downloads; `progress` draws a bar.
pub fn fetch(data_dir: &Path, name: &str, source: &Source, progress: bool) -> Result<Vec<Fetched>> {
    if let Some(how) = &source.manual {
        return Err(Error::Usage(format!(
            "{name} has no stable download URL; get it by hand: {how} (place the files under {})",
            data_dir.join(&source.dir).display()
        )));
    }
    let dir = data_dir.join(&source.dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let agent = agent();
    let mut done = Vec::new();
    for file in &source.files {
        let path = dir.join(&file.name);
        match file.verify(&path)? {
            FileStatus::Ok => {
                done.push(Fetched::Present(path));
                continue;
            }
            FileStatus::Mismatch { .. } => {
                tracing::warn!(
                    "{} does not match its published checksum; downloading it again",
                    path.display()
                );
            }
            FileStatus::Missing | FileStatus::Unverified => {}
        }
        let mut errors = Vec::new();
        let mut fetched = None;
        for url in &file.urls {
            match download_one(&agent, url, file, &path, progress) {
                Ok(()) => {
                    fetched = Some(url.clone());
                    break;
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    errors.push(e.to_string());
                }
            }
        }
        match fetched {
            Some(url) => done.push(Fetched::Downloaded { path, url }),
            None => {
                return Err(Error::Fetch {
                    url: file.urls.join(", "),
                    reason: format!(
                        "no URL gave the file ({}); download it by hand and place it at {}",
                        errors.join("; "),
                        path.display()
                    ),
                });
            }
        }
    }
    Ok(done)
}

/// Downloads one URL to `path` via `path.part` (resumed if present).
fn download_one(
    agent: &ureq::Agent,
    url: &str,
    file: &SourceFile,
    path: &Path,
    progress: bool,
) -> Result<()> {
    let fail = |reason: String| Error::Fetch {
        url: url.to_string(),
        reason,
    };
    let part = path.with_file_name(format!("{}.part", file.name));
    let have = part.metadata().map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request
        .call()
        .map_err(|e| fail(format!("request failed: {e}")))?;
    let status = response.status().as_u16();
    let append = match status {
        206 => true,
        200 => false,
        416 if have > 0 => {
            // The partial file is already complete: verify it below.
            true
        }
        404 => return Err(fail("404 not found".into())),
        s => return Err(fail(format!("HTTP status {s}"))),
    };
    let remaining = if status == 416 {
        Some(0)
    } else {
        response.body().content_length()
    };
    let start = if append { have } else { 0 };
    let total = remaining.map(|r| r + start).or(file.size);
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;
    let bar = if progress {
        indicatif::ProgressBar::new(total.unwrap_or(0))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(file.name.clone());
    bar.set_position(start);
    if status != 416 {
        let mut reader = response.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut written = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    bar.abandon();
                    return Err(fail(format!(
                        "download interrupted after {written} bytes ({e}); run the same command again to resume from {}",
                        part.display()
                    )));
                }
            };
            out.write_all(&buf[..n]).map_err(|e| Error::io(&part, e))?;
            written += n as u64;
            bar.set_position(written);
        }
        if let Some(t) = total
            && written < t
        {
            bar.abandon();
            return Err(fail(format!(
                "download interrupted after {written} of {t} bytes; run the same command again to resume from {}",
                part.display()
            )));
        }
    }
    out.sync_all().map_err(|e| Error::io(&part, e))?;
    drop(out);
    bar.finish_and_clear();
    match file.verify(&part)? {
        FileStatus::Ok | FileStatus::Unverified => {
            std::fs::rename(&part, path).map_err(|e| Error::io(path, e))?;
            Ok(())
        }
        FileStatus::Mismatch {
            algorithm,
            expected,
            found,
        } => {
            std::fs::remove_file(&part).map_err(|e| Error::io(&part, e))?;
            Err(fail(format!(
                "{algorithm} checksum mismatch: expected {expected}, got {found}; the download was deleted"
            )))
        }
        FileStatus::Missing => Err(fail(format!(
            "{} vanished during the download",
            part.display()
        ))),
    }
}

//! Image-classification datasets from the Hugging Face hub, through
//! `candle_datasets::hub`, written into the on-disk layout ebda's readers use.
//!
//! The hub serves every public dataset as parquet files (the
//! `refs/convert/parquet` revision). [`fetch`] lists them, has
//! [`candle_datasets::hub::from_hub`] download them into the hub cache
//! (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; a
//! second fetch reads the cache), and writes one image file per row plus an
//! image list per split:
//!
//! ```text
//! OUT/hub.json                 what was fetched: repo, commit, files, counts
//! OUT/train.txt, OUT/test.txt  "train/00000.png 5" — one image and label a line
//! OUT/train/00000.png …        the rows' image bytes, as stored (PNG, JPEG)
//! ```
//!
//! so `{"format": "image_list", "root": "OUT", "list": "train.txt"}` reads a
//! split. A row's image is the `bytes` field of the hub's image struct (or a
//! plain binary column); its label an integer column (`label` unless told).
//! Every image is decoded once while fetching, so a corrupt row is an error
//! naming the parquet file and the row, not a failure in the middle of
//! training.
//!
//! The endpoint is `HF_ENDPOINT` or [`HubOptions::endpoint`] (tests serve a
//! hub-like API on loopback). The crate is built only with the `hub` feature
//! of the `ebda` binary: candle-datasets brings hf-hub, parquet (with arrow)
//! and tokenizers, several minutes of clean build on two cores.

use candle_datasets::hub::FileReader;
use parquet::file::reader::SerializedFileReader;
use parquet::record::{Field, Row};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The revision under which the hub serves its parquet conversion.
pub const PARQUET_REVISION: &str = "refs/convert/parquet";

/// Errors of a hub fetch; each names the dataset, file, row or column at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hub dataset {repo}: {source}")]
    Hub {
        repo: String,
        #[source]
        source: hf_hub::HFError,
    },
    #[error("hub dataset {repo}: {source}")]
    Download {
        repo: String,
        #[source]
        source: candle_datasets::hub::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The dataset's content is not what an image-classification set holds.
    #[error("{file}: {reason}")]
    Content { file: String, reason: String },
    #[error("{0}")]
    Usage(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where to fetch from and which columns to read.
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// Hub base URL; `None`: `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Hub cache; `None`: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// The image column; `None`: the first column holding image bytes.
    pub image_column: Option<String>,
    /// The label column; `None`: `label`.
    pub label_column: Option<String>,
}

/// One parquet file of the dataset as fetched.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ParquetFile {
    /// Its name in the repository (`config/split/0000.parquet`).
    pub name: String,
    pub split: String,
    pub rows: usize,
}

/// One split as written.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Split {
    pub name: String,
    /// The image list (relative to the output directory).
    pub list: String,
    pub count: usize,
    /// Images per label, index = label.
    pub class_counts: Vec<usize>,
}

/// What [`fetch`] wrote (also saved as `hub.json`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Fetched {
    pub repo: String,
    pub revision: String,
    /// The commit the parquet revision pointed to, when the hub said.
    pub commit: Option<String>,
    pub files: Vec<ParquetFile>,
    pub splits: Vec<Split>,
}

/// The split a parquet file belongs to: `config/SPLIT/0000.parquet`, or
/// `config/name-SPLIT[-00000-of-00002].parquet` (the older layout).
pub fn split_of(file: &str) -> Option<String> {
    let parts: Vec<&str> = file.split('/').collect();
    if parts.len() >= 3 {
        return Some(parts[parts.len() - 2].to_string());
    }
    let stem = parts.last()?.strip_suffix(".parquet")?;
    let mut words: Vec<&str> = stem.split('-').collect();
    // Drop a shard suffix "-00000-of-00002".
    if words.len() >= 4 && words[words.len() - 2] == "of" {
        words.truncate(words.len() - 3);
    }
    (words.len() >= 2).then(|| words[words.len() - 1].to_string())
}

fn client(opts: &HubOptions) -> std::result::Result<hf_hub::HFClientSync, hf_hub::HFError> {
    let mut b = hf_hub::HFClient::builder();
    if let Some(e) = &opts.endpoint {
        b = b.endpoint(e.clone());
    }
    if let Some(c) = &opts.cache_dir {
        b = b.cache_dir(c.clone());
    }
    b.build_sync()
}

/// Fetches `repo` (`owner/name`) into `out` (see the crate docs). `out` must
/// not hold a previous fetch (`hub.json`); it is written through a temporary
/// sibling directory and renamed into place, so an interrupted fetch leaves
/// nothing half-written behind.
pub fn fetch(repo: &str, out: &Path, opts: &HubOptions) -> Result<Fetched> {
    if !repo.contains('/') || repo.starts_with('/') || repo.ends_with('/') {
        return Err(Error::Usage(format!(
            "hub dataset {repo:?}: expected OWNER/NAME (e.g. ylecun/mnist)"
        )));
    }
    if out.join("hub.json").exists() {
        return Err(Error::Usage(format!(
            "{} already holds a hub fetch (hub.json); remove it to fetch again",
            out.display()
        )));
    }
    let hub = |source| Error::Hub {
        repo: repo.to_string(),
        source,
    };
    let api = client(opts).map_err(hub)?;
    let (owner, name) = hf_hub::split_id(repo);
    let info = api
        .dataset(owner, name)
        .info()
        .revision(PARQUET_REVISION)
        .send()
        .map_err(hub)?;
    let names: Vec<String> = info
        .siblings
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    if names.is_empty() {
        return Err(Error::Content {
            file: format!("{repo}@{PARQUET_REVISION}"),
            reason: "no .parquet files in the hub's parquet conversion".into(),
        });
    }
    // candle-datasets downloads (or finds in the cache) the same files, in
    // the order the hub lists them.
    let readers = candle_datasets::hub::from_hub(&api, repo.to_string()).map_err(|source| {
        Error::Download {
            repo: repo.to_string(),
            source,
        }
    })?;
    if readers.len() != names.len() {
        return Err(Error::Content {
            file: format!("{repo}@{PARQUET_REVISION}"),
            reason: format!(
                "the hub listed {} parquet files, candle-datasets opened {}",
                names.len(),
                readers.len()
            ),
        });
    }

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        std::fs::create_dir_all(p).map_err(io(p))?;
    }
    let tmp = PathBuf::from(format!("{}.partial", out.display()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;

    let fetched = match write_all(repo, &names, readers, &tmp, info.sha, opts) {
        Ok(f) => f,
        Err(e) => {
            // Leave nothing half-written behind.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if out.exists() {
        // An empty directory made by the user: replace it.
        std::fs::remove_dir(out).map_err(io(out))?;
    }
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(fetched)
}

/// Writes every parquet file's rows, the image lists and `hub.json` into `tmp`.
fn write_all(
    repo: &str,
    names: &[String],
    readers: Vec<SerializedFileReader<File>>,
    tmp: &Path,
    commit: Option<String>,
    opts: &HubOptions,
) -> Result<Fetched> {
    let mut files = Vec::new();
    let mut splits: BTreeMap<String, (Vec<String>, Vec<usize>)> = BTreeMap::new();
    for (name, reader) in names.iter().zip(readers) {
        let split = split_of(name).ok_or_else(|| Error::Content {
            file: name.clone(),
            reason: "cannot tell its split from the name (expected config/SPLIT/NNNN.parquet)"
                .into(),
        })?;
        let entry = splits.entry(split.clone()).or_default();
        let rows = write_rows(name, reader, tmp, &split, entry, opts)?;
        files.push(ParquetFile {
            name: name.clone(),
            split,
            rows,
        });
    }
    let mut written = Vec::new();
    for (split, (lines, class_counts)) in splits {
        let list = format!("{split}.txt");
        let path = tmp.join(&list);
        std::fs::write(&path, lines.join("\n") + "\n").map_err(io(&path))?;
        written.push(Split {
            name: split,
            list,
            count: lines.len(),
            class_counts,
        });
    }
    let fetched = Fetched {
        repo: repo.to_string(),
        revision: PARQUET_REVISION.to_string(),
        commit,
        files,
        splits: written,
    };
    let manifest = tmp.join("hub.json");
    let json = serde_json::to_string_pretty(&fetched).expect("plain data serialises");
    std::fs::write(&manifest, json + "\n").map_err(io(&manifest))?;
    Ok(fetched)
}

/// Writes the rows of one parquet file; returns their number.
fn write_rows(
    file: &str,
    reader: SerializedFileReader<File>,
    out: &Path,
    split: &str,
    (lines, class_counts): &mut (Vec<String>, Vec<usize>),
    opts: &HubOptions,
) -> Result<usize> {
    let bad = |reason: String| Error::Content {
        file: file.to_string(),
        reason,
    };
    let label_column = opts.label_column.as_deref().unwrap_or("label");
    let dir = out.join(split);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let total = usize::try_from(reader.metadata().file_metadata().num_rows())
        .map_err(|_| bad("negative row count in its metadata".into()))?;
    let mut rows = 0;
    for (i, row) in reader
        .get_row_iter(None)
        .map_err(|e| bad(e.to_string()))?
        .enumerate()
    {
        let row = row.map_err(|e| bad(format!("row {i}: {e}")))?;
        let bytes = image_bytes(&row, opts.image_column.as_deref())
            .map_err(|r| bad(format!("row {i}: {r}")))?;
        let label = label(&row, label_column).map_err(|r| bad(format!("row {i}: {r}")))?;
        let format = image::guess_format(bytes)
            .map_err(|e| bad(format!("row {i}: image bytes of unknown format ({e})")))?;
        image::load_from_memory_with_format(bytes, format)
            .map_err(|e| bad(format!("row {i}: image does not decode: {e}")))?;
        let ext = format.extensions_str().first().copied().unwrap_or("img");
        let rel = format!("{split}/{:05}.{ext}", lines.len());
        let path = out.join(&rel);
        std::fs::write(&path, bytes).map_err(io(&path))?;
        lines.push(format!("{rel} {label}"));
        let l = label as usize;
        if class_counts.len() <= l {
            class_counts.resize(l + 1, 0);
        }
        class_counts[l] += 1;
        rows += 1;
    }
    if rows != total {
        return Err(bad(format!("metadata says {total} rows, {rows} were read")));
    }
    Ok(rows)
}

fn columns(row: &Row) -> String {
    row.get_column_iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The image bytes of a row: `column.bytes` of an image struct, or a binary column.
fn image_bytes<'r>(row: &'r Row, column: Option<&str>) -> std::result::Result<&'r [u8], String> {
    fn bytes_of(field: &Field) -> Option<&[u8]> {
        match field {
            Field::Bytes(b) => Some(b.data()),
            Field::Group(g) => g.get_column_iter().find_map(|(n, f)| match f {
                Field::Bytes(b) if n == "bytes" => Some(b.data()),
                _ => None,
            }),
            _ => None,
        }
    }
    match column {
        Some(c) => {
            let (_, field) = row
                .get_column_iter()
                .find(|(n, _)| n.as_str() == c)
                .ok_or_else(|| format!("no column {c:?} (columns: {})", columns(row)))?;
            bytes_of(field).ok_or_else(|| {
                format!("column {c:?} holds no image bytes (a binary, or a struct with `bytes`)")
            })
        }
        None => row
            .get_column_iter()
            .find_map(|(_, f)| bytes_of(f))
            .ok_or_else(|| format!("no column holds image bytes (columns: {})", columns(row))),
    }
}

fn label(row: &Row, column: &str) -> std::result::Result<u32, String> {
    let (_, field) = row
        .get_column_iter()
        .find(|(n, _)| n.as_str() == column)
        .ok_or_else(|| format!("no label column {column:?} (columns: {})", columns(row)))?;
    let v: i128 = match field {
        Field::Byte(v) => (*v).into(),
        Field::Short(v) => (*v).into(),
        Field::Int(v) => (*v).into(),
        Field::Long(v) => (*v).into(),
        Field::UByte(v) => (*v).into(),
        Field::UShort(v) => (*v).into(),
        Field::UInt(v) => (*v).into(),
        Field::ULong(v) => (*v).into(),
        other => {
            return Err(format!(
                "label column {column:?} is not an integer: {other}"
            ));
        }
    };
    u32::try_from(v).map_err(|_| format!("label {v} in {column:?} is not in 0..2³²"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_from_both_hub_layouts() {
        assert_eq!(
            split_of("mnist/train/0000.parquet").as_deref(),
            Some("train")
        );
        assert_eq!(
            split_of("default/test/0003.parquet").as_deref(),
            Some("test")
        );
        assert_eq!(
            split_of("plain_text/cifar10-train.parquet").as_deref(),
            Some("train")
        );
        assert_eq!(
            split_of("mnist/mnist-test-00000-of-00002.parquet").as_deref(),
            Some("test")
        );
        assert_eq!(split_of("data.parquet"), None);
    }
}

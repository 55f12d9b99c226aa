//! Errors of the data crate: every one names the file (or key, or URL) and the cause.

use std::path::PathBuf;

/// Everything that can go wrong while reading, sampling or fetching data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that a dataset needs is not there.
    #[error("{}: file not found ({hint})", path.display())]
    Missing { path: PathBuf, hint: String },
    /// A file's content is not what its format requires.
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// A data-spec or input-config value is out of range.
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
    /// A download failed.
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    /// A requested batch or index is not valid for the dataset.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

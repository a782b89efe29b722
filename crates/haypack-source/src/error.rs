//! The one error type of the record sources.

use std::path::PathBuf;

/// Why a source could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the source failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file, or member, being read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The sources' result type.
pub type Result<T> = std::result::Result<T, Error>;

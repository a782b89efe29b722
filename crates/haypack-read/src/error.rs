//! The one error type of the reader.

use std::path::PathBuf;

/// What went wrong reading an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no archive at the location.
    #[error("no haypack archive at {archive}: it has no manifest.json")]
    NoArchive {
        /// The location.
        archive: String,
    },
    /// The manifest could not be used: not ours, from a newer version, or corrupt.
    #[error("{archive}/manifest.json: {source}")]
    Manifest {
        /// The archive.
        archive: String,
        /// Why.
        source: haypack_format::Error,
    },
    /// No record has this key.
    #[error("no record {key:?} in {archive}")]
    NotFound {
        /// The key.
        key: String,
        /// The archive.
        archive: String,
    },
    /// Stored bytes failed a check. Nothing from them was returned.
    #[error("{object} at offset {offset}{}: {detail}", key.as_ref().map(|k| format!(" (record {k:?})")).unwrap_or_default())]
    Corrupt {
        /// The pack or index object.
        object: String,
        /// Byte offset of the structure in it.
        offset: u64,
        /// The record's key, when a record was being read.
        key: Option<String>,
        /// What failed.
        detail: String,
    },
    /// An object was replaced after this reader first read it: a newer generation (or someone)
    /// rewrote the archive under it. Nothing from the new bytes was returned.
    #[error("{object} changed since this reader opened generation {generation}{}; open the archive again", key.as_ref().map(|k| format!(" (reading record {k:?})")).unwrap_or_default())]
    Changed {
        /// The pack or index object.
        object: String,
        /// The record being read, if any.
        key: Option<String>,
        /// The generation the reader is pinned to.
        generation: u64,
    },
    /// A key that would land outside the extraction directory.
    #[error("refusing to extract {key:?}: {reason}; nothing was extracted")]
    UnsafeKey {
        /// The key.
        key: String,
        /// Why it is unsafe.
        reason: &'static str,
    },
    /// Two keys of the archive need one path to be a file and a directory at once.
    #[error(
        "refusing to extract {under:?}: {file:?} is a record too, so it cannot also be a directory; nothing was extracted (extract one of them into another directory, with a prefix)"
    )]
    KeyClash {
        /// The key that would be a file.
        file: String,
        /// A key below it.
        under: String,
    },
    /// Something in the target directory stands in the way: a file or a symbolic link where a
    /// directory is needed (never written through), or a directory where a file goes.
    #[error("refusing to write {path}: {reason}; {}", match .extracted { 0 => "nothing was extracted".to_owned(), n => format!("{n} file(s) were extracted before this") })]
    UnsafeTarget {
        /// The path in the way.
        path: PathBuf,
        /// What is there.
        reason: &'static str,
        /// Files extracted before this one.
        extracted: u64,
    },
    /// A local file could not be written during extraction.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Writing a record's content to its destination failed.
    #[error("writing the record's content: {0}")]
    Output(#[source] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] haypack_store::Error),
}

/// The reader's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// A file or directory under a source directory could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file name that is not UTF-8 cannot become a key.
    #[error("{path} has a name that is not UTF-8, so it cannot become a key")]
    NonUtf8Name {
        /// The path, shown lossily.
        path: PathBuf,
    },
    /// A path too long to be a key.
    #[error("{path} is too long to become a key ({len} bytes, at most {max})")]
    KeyTooLong {
        /// The path.
        path: PathBuf,
        /// Its key length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is none of the formats haypack reads.
    #[error("{path} is not a directory, tar (plain, .gz, .zst, .xz, .bz2), zip or WARC: {why}")]
    UnknownFormat {
        /// The input.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// `--format` named one format and the bytes are another.
    #[error("{path} was named as {asked} but {found}")]
    FormatMismatch {
        /// The input.
        path: PathBuf,
        /// The format asked for.
        asked: &'static str,
        /// What the input is.
        found: String,
    },
    /// A zip needs to seek (its directory is at the end), which standard input cannot.
    #[error(
        "a zip cannot be read from standard input (its directory is at its end); save it to a file and pack the file"
    )]
    ZipFromStdin,
    /// An archive member whose name cannot become a key.
    #[error(
        "{archive}: member {member:?} at byte {offset} {why}; such a name could escape the archive's tree, so nothing was packed"
    )]
    BadMemberName {
        /// The archive.
        archive: PathBuf,
        /// The member's name, lossily.
        member: String,
        /// Where its header starts, in the (decompressed) stream.
        offset: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An archive member name that is not UTF-8.
    #[error("{archive}: member {member:?} at byte {offset} has a name that is not UTF-8, so it cannot become a key")]
    NonUtf8Member {
        /// The archive.
        archive: PathBuf,
        /// The member's name, lossily.
        member: String,
        /// Where its header starts.
        offset: u64,
    },
    /// A stream that ends inside an entry, or before the archive's end marker.
    #[error(
        "{archive} is truncated: {what} at byte {offset} of the {layer} stream{cause}; the input is incomplete, fetch it again"
    )]
    Truncated {
        /// The archive.
        archive: PathBuf,
        /// What was being read ("member \"a/b\"", "the header after member \"a\"").
        what: String,
        /// Where, in the (decompressed) stream.
        offset: u64,
        /// Which stream: "tar", "WARC".
        layer: &'static str,
        /// The decoder's own words, if it was a decoder that found the end (", gzip: ...").
        cause: String,
    },
    /// A structure in the archive that is not what its format says.
    #[error("{archive}: {what} at byte {offset} is corrupt: {why}")]
    Corrupt {
        /// The archive.
        archive: PathBuf,
        /// What was being read.
        what: String,
        /// Where, in the (decompressed) stream.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// The zip library refused the archive or a member.
    #[error("{archive}: {what}: {source}")]
    Zip {
        /// The archive.
        archive: PathBuf,
        /// What was being read.
        what: String,
        /// Why.
        source: zip::result::ZipError,
    },
    /// An encrypted zip member.
    #[error(
        "{archive}: member {member:?} at byte {offset} is encrypted; haypack packs no encrypted members, decrypt the zip first"
    )]
    ZipEncrypted {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// Where its local header starts.
        offset: u64,
    },
    /// A zip member compressed with a method other than stored or deflate.
    #[error(
        "{archive}: member {member:?} at byte {offset} uses compression method {method}; haypack reads stored and deflate members, recompress the zip with those"
    )]
    ZipMethod {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// Where its local header starts.
        offset: u64,
        /// The method, as the zip library names it.
        method: String,
    },
    /// A zip member that inflates past the size its header declares (a zip bomb, or a corrupt
    /// header): reading stops one byte past the declared size.
    #[error(
        "{archive}: member {member:?} at byte {offset} inflates past its declared size of {declared} bytes; the zip is corrupt or hostile, nothing more was read"
    )]
    ZipOverflow {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// Where its local header starts.
        offset: u64,
        /// The size its header claims.
        declared: u64,
    },
    /// A WARC `response` or `resource` record without `WARC-Target-URI`, which would be its key.
    #[error(
        "{archive}: WARC {kind} record {id} at byte {offset} has no WARC-Target-URI, so it has no key; the WARC is malformed"
    )]
    WarcNoTargetUri {
        /// The archive.
        archive: PathBuf,
        /// The record type.
        kind: String,
        /// Its WARC-Record-ID, if it has one.
        id: String,
        /// Where its header starts, in the decompressed stream.
        offset: u64,
    },
}

impl Error {
    /// This error as an `io::Error`, for a content reader to return (the writer sees the
    /// message whole).
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// The sources' result type.
pub type Result<T> = std::result::Result<T, Error>;

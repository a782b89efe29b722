//! The one error type of the format crate.

/// What went wrong while encoding or decoding haypack bytes.
///
/// The format crate sees bytes, not files: callers add the pack, offset and key (see
/// `haypack-read`), so each variant carries only what the bytes themselves tell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a haypack structure at all (wrong magic).
    #[error("not a haypack {what}: {detail}")]
    NotHaypack {
        /// The structure that was expected ("pack", "record", "manifest").
        what: &'static str,
        /// What was found instead.
        detail: String,
    },
    /// A haypack structure written by a newer format version than this build reads.
    #[error("{what} has format version {found}, but this haypack reads versions up to {supported}; upgrade haypack")]
    NewerVersion {
        /// The structure carrying the version.
        what: &'static str,
        /// The version found in the bytes.
        found: u64,
        /// The newest version this build understands.
        supported: u64,
    },
    /// The bytes end before the structure does.
    #[error("{what} is truncated: needs {needed} bytes, has {available}")]
    Truncated {
        /// The structure being decoded.
        what: &'static str,
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes that were there.
        available: u64,
    },
    /// A checksum does not match the bytes it covers.
    #[error("{what} checksum mismatch: stored {expected:#010x}, computed {found:#010x}")]
    Checksum {
        /// The structure whose checksum failed.
        what: &'static str,
        /// The checksum stored in the format.
        expected: u32,
        /// The checksum of the bytes actually present.
        found: u32,
    },
    /// A structure that would take more memory once decoded than any haypack writer makes it
    /// take (front-coded keys let a few bytes stand for kilobytes): corrupt or hostile, refused
    /// before it is built.
    #[error(
        "{what} would take more than {limit} bytes once decoded ({detail}): it is corrupt or was not written by haypack"
    )]
    TooLarge {
        /// The structure being decoded.
        what: &'static str,
        /// The most it may take, in bytes.
        limit: u64,
        /// How far it got.
        detail: String,
    },
    /// The bytes are haypack's but inconsistent (a field out of range, lengths that disagree).
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// The structure being decoded.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A length from a header is more than the bytes around it can hold or decode to: corrupt or
    /// hostile, refused before anything is allocated by it.
    #[error("implausible {what}: {detail}")]
    Implausible {
        /// The structure whose length it is.
        what: &'static str,
        /// The length, and the most it could be.
        detail: String,
    },
    /// A value that the format cannot represent (a key too long, say).
    #[error("cannot encode {what}: {detail}")]
    Unencodable {
        /// The structure being encoded.
        what: &'static str,
        /// Why it cannot be encoded.
        detail: String,
    },
    /// A counter of the archive (its generation, its pack ids) is at the largest value it can
    /// hold: the next one would wrap around to a number already used.
    #[error(
        "the archive's {what} is at its largest possible value ({value}); nothing more can be committed to it (copy its records into a new archive)"
    )]
    Exhausted {
        /// The counter.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// An I/O error from the `Read` or `Write` the caller handed in.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The format crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Corrupt { what, detail: detail.into() }
}

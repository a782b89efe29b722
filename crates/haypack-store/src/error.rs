//! The one error type of the store crate.

/// What went wrong talking to a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("{store}: {name} does not exist")]
    NotFound {
        /// The store, as the user named it.
        store: String,
        /// The object name.
        name: String,
    },
    /// A conditional write lost: the object exists, or changed since it was read.
    #[error("{store}: {name} {detail}; another writer got there first, so nothing was written")]
    Conflict {
        /// The store.
        store: String,
        /// The object name.
        name: String,
        /// What the condition found.
        detail: String,
    },
    /// A range reaching past the end of the object: the object is shorter than its reader thinks.
    #[error("{store}: {name} is {size} bytes, too short for bytes {start}..{end}")]
    OutOfRange {
        /// The store.
        store: String,
        /// The object name.
        name: String,
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// The object's actual size.
        size: u64,
    },
    /// A name that is not a plain relative object name.
    #[error("{name:?} is not a valid object name: {detail}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// An operation this store does not offer was asked of it: a bug in the caller.
    #[error("this store cannot {what}")]
    Unsupported {
        /// The operation.
        what: &'static str,
    },
    /// A remote store refused or failed a request (after its retries).
    #[error("{store}: {op} {name}: {detail}")]
    Remote {
        /// The store.
        store: String,
        /// What was being done ("reading", "writing", "listing", …).
        op: &'static str,
        /// The object name, if any.
        name: String,
        /// What the server or the connection said, and what to do about it.
        detail: String,
    },
    /// A remote store answered, but not what was asked: refused before its body is kept, so a
    /// server that ignores a range (or a proxy in between that rewrites answers) cannot make a
    /// reader buffer gigabytes it did not ask for.
    #[error("{store}: {op} {name}: {problem}")]
    BadAnswer {
        /// The store.
        store: String,
        /// What was being done ("reading", "starting the upload of", …).
        op: &'static str,
        /// The object name.
        name: String,
        /// What was wrong with the answer.
        problem: AnswerProblem,
    },
    /// An object that cannot be written to this store as asked (S3: more than 10,000 parts).
    #[error("{store}: {name}: {detail}")]
    TooLarge {
        /// The store.
        store: String,
        /// The object name.
        name: String,
        /// What the limit is and what to do.
        detail: String,
    },
    /// A store location that cannot be used.
    #[error("{location}: {detail}")]
    InvalidLocation {
        /// The location as given.
        location: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A local object's name is taken by something that is not a regular file (a FIFO, a
    /// device, a directory, or a link to one): refused before it is read, since reading it
    /// could block or never end.
    #[error("{store}: {name} is a {kind}, not a regular file; remove it, or point haypack at another directory")]
    NotAFile {
        /// The store.
        store: String,
        /// The object name.
        name: String,
        /// What it is.
        kind: &'static str,
    },
    /// An I/O error at a path of the local store.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the store was doing ("reading", "creating", …).
        op: &'static str,
        /// The local path.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What was wrong with a remote store's answer ([`Error::BadAnswer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerProblem {
    /// A range was asked and the answer has no Content-Range: the server sent the whole object
    /// (status 200) instead of the range (206).
    #[error("asked for bytes {start}..{end}, the server sent the whole object instead (no Content-Range)")]
    RangeIgnored {
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
    },
    /// The answer's Content-Range is not the range asked for (nor the part of it the object has).
    #[error("asked for bytes {start}..{end}, the server answered with Content-Range {answered:?}")]
    WrongRange {
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// The Content-Range header received.
        answered: String,
    },
    /// The body is longer than asked for, by its Content-Length or by the bytes that came.
    #[error("the body runs past the {expected} bytes asked for")]
    BodyTooLong {
        /// Bytes asked for.
        expected: u64,
    },
    /// The body ended before the bytes it announced had come.
    #[error("the body ended after {got} of the {expected} bytes announced{cause}")]
    BodyTooShort {
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        got: u64,
        /// Why it ended, if the connection said (starts with ": ").
        cause: String,
    },
    /// The answer did not say how long its body is (no Content-Length).
    #[error("the answer has no Content-Length")]
    NoLength,
    /// CreateMultipartUpload answered without an upload id.
    #[error("the server started a multipart upload without giving its UploadId")]
    NoUploadId,
}

/// The store crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

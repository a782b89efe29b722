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

/// The store crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

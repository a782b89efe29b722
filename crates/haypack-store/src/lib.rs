//! Where haypack archives live.
//!
//! An archive is a handful of named objects (a manifest, packs, an index). A [`Store`] keeps
//! them: the [`LocalStore`] in a directory, and any S3-compatible bucket through the S3 store.
//! Everything above this crate speaks only this trait, and the `conformance` suite (feature `testing`) holds
//! every store to the same behaviour.
//!
//! ```
//! use haypack_store::{LocalStore, PutMode, Store};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> haypack_store::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = LocalStore::new(dir.path());
//! store.put("manifest.json", b"{}".to_vec().into(), PutMode::Create).await?;
//! assert_eq!(&store.get_range("manifest.json", 0..1).await?[..], b"{");
//! // A second create loses: commits cannot silently overwrite each other.
//! assert!(store.put("manifest.json", b"{}".to_vec().into(), PutMode::Create).await.is_err());
//! # Ok(())
//! # }
//! ```

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod counting;
mod error;
#[cfg(feature = "testing")]
mod gate;
mod local;

use std::ops::Range;

use bytes::Bytes;

pub use crate::counting::{Counting, Counts};
pub use crate::error::{AnswerProblem, Error, Result};
#[cfg(feature = "testing")]
pub use crate::gate::{Gate, Gated, Op};
pub use crate::local::{LocalStore, create_temp_in};

/// How a `put` treats an object that already exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it.
    Overwrite,
    /// Fail with [`Error::Conflict`] if it exists.
    Create,
    /// Replace it only if its version is still this one, else fail with [`Error::Conflict`].
    Update(String),
}

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's name, relative to the store's root.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// An opaque version that changes whenever the object is replaced.
    pub version: String,
    /// When it was last written, where the store says (listings and heads do).
    pub modified: Option<std::time::SystemTime>,
}

/// How a streaming write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The object was written.
    Written(ObjectMeta),
    /// A resumable write found the object already there with exactly these bytes, and kept it
    /// without sending them again.
    Kept(ObjectMeta),
}

impl Finished {
    /// The object, however it got there.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Finished::Written(m) | Finished::Kept(m) => m,
        }
    }
}

/// A streaming write of one object, which appears under its name only once finished: a reader
/// never sees half an object, and a dropped writer leaves nothing behind.
pub trait ObjectWriter: std::io::Write + Send {
    /// Makes the object visible under its name (replacing any older one).
    fn finish(self: Box<Self>) -> Result<Finished>;

    /// Whether the next `len` bytes can be appended by a copy inside the store, so they never
    /// pass through this process; if so, how many of them the caller must write itself first
    /// (a store may need that many to round off what it has buffered). `None`: the store will
    /// not copy that much here, and the caller writes it all.
    fn copy_lead(&self, len: u64) -> Option<u64> {
        let _ = len;
        None
    }

    /// Appends `range` of the object `source`, which must still be at `version`, by a copy
    /// inside the store. Call it only for a length [`ObjectWriter::copy_lead`] accepted, after
    /// writing the lead it asked for.
    fn copy_range(&mut self, source: &str, range: Range<u64>, version: &str) -> Result<()> {
        let _ = (source, range, version);
        Err(Error::Unsupported { what: "copy ranges between objects" })
    }
}

/// A place that keeps named objects: the only thing haypack needs from storage.
///
/// Names are relative, `/`-separated and plain (no `.`, `..` or empty components).
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The store as the user named it (a path, an `s3://` URL), for messages.
    fn describe(&self) -> String;

    /// How many bytes a sequential reader should ask for at once: enough that the cost of a
    /// request is small next to its transfer (a round trip on S3), and no more (every chunk
    /// is a buffer held in memory).
    fn read_chunk(&self) -> u64 {
        8 << 20
    }

    /// Reads a whole object.
    async fn get(&self, name: &str) -> Result<Bytes>;

    /// Reads `range` of an object; the range must lie within it.
    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes>;

    /// Reads `range` of an object and tells which version of it was read. With `version`, the
    /// read must be of that version: an object replaced since fails with [`Error::Conflict`]
    /// rather than returning bytes of another version. Readers pin each object this way.
    async fn get_range_pinned(&self, name: &str, range: Range<u64>, version: Option<&str>) -> Result<(Bytes, String)>;

    /// An object's size and version.
    async fn head(&self, name: &str) -> Result<ObjectMeta>;

    /// Writes a whole object at once, atomically.
    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta>;

    /// Starts a streaming write of an object, for packs too large to hold in memory. The writer
    /// does blocking I/O: use it from a blocking thread.
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>>;

    /// Like [`Store::create`], for resuming a deterministic run that was interrupted: where an
    /// object with exactly the bytes written is already there, it is kept ([`Finished::Kept`])
    /// and not sent again; one with other bytes fails with [`Error::Conflict`]. Stores where
    /// writing is cheap simply write.
    fn create_resumable(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.create(name)
    }

    /// Every object whose name starts with `prefix`, sorted by name.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Aborts unfinished uploads to any of `names`, left by an interrupted writer, so nothing
    /// partial is kept (or billed). Returns how many it aborted. Stores whose writes cannot be
    /// left half done have nothing to do.
    async fn abort_uploads(&self, names: &[String]) -> Result<usize> {
        let _ = names;
        Ok(0)
    }
}

/// Checks that `name` is a plain relative object name.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |detail| Err(Error::InvalidName { name: name.to_owned(), detail });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.starts_with('/') {
        return bad("it is absolute");
    }
    if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("it has an empty, `.` or `..` component");
    }
    if name.contains(['\\', '\0']) {
        return bad("it contains a backslash or NUL");
    }
    Ok(())
}

/// Whether a put in `mode` may replace an object whose current version is `current` (`None`:
/// absent); the one rule every store applies, whatever makes it atomic there.
pub fn check_put(store: &dyn Store, name: &str, mode: &PutMode, current: Option<&str>) -> Result<()> {
    let conflict = |detail: String| Err(Error::Conflict { store: store.describe(), name: name.to_owned(), detail });
    match (mode, current) {
        (PutMode::Create, Some(_)) => conflict("already exists".into()),
        (PutMode::Update(v), Some(c)) if v != c => conflict(format!("changed (version {c}, expected {v})")),
        (PutMode::Update(_), None) => conflict("was deleted".into()),
        _ => Ok(()),
    }
}

/// The error for a read whose object is no longer the version the reader pinned.
pub fn changed(store: &dyn Store, name: &str, expected: &str, found: &str) -> Error {
    Error::Conflict {
        store: store.describe(),
        name: name.to_owned(),
        detail: format!("changed since it was first read (version {found}, pinned {expected})"),
    }
}

/// Checks a range against an object's size.
pub(crate) fn check_range(store: &dyn Store, name: &str, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(Error::OutOfRange {
            store: store.describe(),
            name: name.to_owned(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(())
}

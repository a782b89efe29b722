//! The one error type of the packer.

use std::path::PathBuf;

/// What stopped a pack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory under the source could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The destination already holds an archive.
    #[error("{dest} already holds a haypack archive (generation {generation})")]
    ArchiveExists {
        /// The destination.
        dest: String,
        /// The generation found there.
        generation: u64,
    },
    /// The destination holds something that is not a haypack archive.
    #[error(
        "{dest} is not empty ({objects} objects, such as {example}) and holds no haypack archive; refusing to write into it"
    )]
    NotEmpty {
        /// The destination.
        dest: String,
        /// How many objects are there.
        objects: usize,
        /// One of them.
        example: String,
    },
    /// The destination holds no archive but the packs and index runs of segments that were
    /// written and not yet committed: another writer's work, not leftovers to write over.
    #[error(
        "{dest} holds no haypack archive but {objects} objects of segments not yet committed (such as {example}); refusing to pack over them"
    )]
    UncommittedSegments {
        /// The destination.
        dest: String,
        /// How many of its objects belong to segments.
        objects: usize,
        /// One of them.
        example: String,
    },
    /// Nothing to pack.
    #[error("{src} holds no files to pack{}", if *.skipped > 0 { format!(" ({} skipped)", .skipped) } else { String::new() })]
    EmptySource {
        /// The source.
        src: PathBuf,
        /// Entries skipped.
        skipped: usize,
    },
    /// The destination is inside the source, so the packer would pack its own output.
    #[error("the destination {dest} is inside the source {src}; choose a destination outside it")]
    DestInsideSource {
        /// The source.
        src: PathBuf,
        /// The destination.
        dest: PathBuf,
    },
    /// A temporary file for a large record failed.
    #[error("temporary file for {path}: {source}")]
    Temp {
        /// The file being packed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A dictionary could not be trained.
    #[error("cannot train a dictionary on {src}: {detail}")]
    Dictionary {
        /// The source tree.
        src: PathBuf,
        /// Why.
        detail: String,
    },
    /// Other writers kept committing first.
    #[error("{archive}: {attempts} commits in a row lost to other writers; try again later")]
    Contended {
        /// The archive.
        archive: String,
        /// Commits tried.
        attempts: u32,
    },
    /// Keys given to delete that the archive does not hold.
    #[error("{archive} holds no record {}{}; nothing was deleted", .keys.iter().take(3).map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", "), if .keys.len() > 3 { format!(" and {} more", .keys.len() - 3) } else { String::new() })]
    NoSuchKeys {
        /// The archive.
        archive: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// An object this run wrote was retired by `gc`, or gone or replaced, before its commit.
    #[error(
        "{archive}: {name}, written by this run, was retired or deleted (or changed) before this run could commit it; did a gc with a grace period shorter than this run collect it? Nothing was committed; run it again (gc removes what this run left)"
    )]
    Vanished {
        /// The archive.
        archive: String,
        /// The object.
        name: String,
    },
    /// Two records with the same key in one stream of records.
    #[error(
        "the key {key:?} was written twice; nothing was committed (a writer told to keep the last record of a key takes this)"
    )]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A key the format cannot hold.
    #[error("{key:?} cannot be a key: {why}")]
    BadKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A record's content could not be read from its source.
    #[error("reading the content of {key:?}: {source}; nothing was committed")]
    Content {
        /// The record's key.
        key: String,
        /// Why.
        source: std::io::Error,
    },
    /// The record source failed. (Boxed: its errors are large, this enum's others small.)
    #[error(transparent)]
    Source(Box<haypack_source::Error>),
    /// A segment written for another archive.
    #[error("segment {token} was written for {written_for}, not {archive}; nothing was committed")]
    ForeignSegment {
        /// The segment's token.
        token: String,
        /// The archive it names.
        written_for: String,
        /// The archive it was to be committed to.
        archive: String,
    },
    /// A segment whose objects are not what it describes.
    #[error("segment {token} cannot be committed: {detail}; nothing was committed")]
    SegmentIncomplete {
        /// The segment's token.
        token: String,
        /// What is wrong.
        detail: String,
    },
    /// A check that only a bug in haypack can fail; nothing was committed.
    #[error("internal error, nothing was committed: {0}; please report it")]
    Bug(String),
    /// Reading the archive failed.
    #[error(transparent)]
    Read(#[from] haypack_read::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] haypack_store::Error),
    /// Encoding failed, or an existing manifest could not be read.
    #[error(transparent)]
    Format(#[from] haypack_format::Error),
}

impl From<haypack_source::Error> for Error {
    fn from(e: haypack_source::Error) -> Self {
        Error::Source(Box::new(e))
    }
}

/// The packer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

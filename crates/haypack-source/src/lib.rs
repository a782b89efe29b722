//! Where records come from. Every input haypack packs — a directory, a tar stream, a zip file,
//! a WARC — is a [`Source`]: a sequence of [`Record`]s read one at a time, in the source's own
//! order, with flat memory whatever the number of entries. A record's content is handed over
//! as bytes, as a file to open, or as a reader borrowed from the source (a tar member is read
//! straight from the stream), so nothing is extracted to disk first.
//!
//! [`open`] chooses the source from the input's bytes (magic numbers, not file names);
//! [`open_stream`] does the same for a stream that cannot seek, such as standard input.
//!
//! ```
//! use std::io::Read;
//! use haypack_source::{Content, Item, open};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let tar_path = dir.path().join("photos.tar.gz");
//! # let mut b = tar::Builder::new(flate2::write::GzEncoder::new(std::fs::File::create(&tar_path)?, Default::default()));
//! # let mut h = tar::Header::new_ustar();
//! # h.set_size(5);
//! # h.set_mode(0o644);
//! # b.append_data(&mut h, "./2024/cat.jpg", &b"meow!"[..])?;
//! # b.into_inner()?.finish()?;
//! let mut source = open(&tar_path, None, &Default::default())?;
//! while let Some(item) = source.next_item()? {
//!     match item {
//!         // A tar member is read straight from the stream, before the next item.
//!         Item::Record(record) => {
//!             if let Content::Reader { mut reader, len } = record.content {
//!                 let mut content = Vec::new();
//!                 reader.read_to_end(&mut content)?;
//!                 assert_eq!((record.key.as_str(), len, &content[..]), ("2024/cat.jpg", Some(5), &b"meow!"[..]));
//!             }
//!         }
//!         Item::Skipped(skipped) => println!("skipped {}: {}", skipped.path.display(), skipped.reason),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::io::Read;
use std::path::PathBuf;

use haypack_format::Timestamp;

mod detect;
mod dir;
mod error;
mod names;
mod tarfile;
mod warc;
mod zipfile;

pub use detect::{open, open_stream};
pub use dir::DirSource;
pub use error::{Error, Result};

/// How a source treats what it cannot record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// Skip (and report) files that cannot be read and names that are not UTF-8, instead of
    /// failing.
    pub skip_unreadable: bool,
    /// In a directory, record what symbolic links point to instead of skipping them.
    pub follow_symlinks: bool,
}

/// The input formats, by their `--format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A directory tree.
    Dir,
    /// A tar stream, plain or compressed with gzip, zstd, xz or bzip2.
    Tar,
    /// A zip file (stored and deflate members).
    Zip,
    /// A WARC file, plain or gzip-compressed.
    Warc,
}

impl Format {
    /// Every format, in the order `--format` lists them.
    pub const ALL: [Format; 4] = [Format::Dir, Format::Tar, Format::Zip, Format::Warc];

    /// Its `--format` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dir => "dir",
            Format::Tar => "tar",
            Format::Zip => "zip",
            Format::Warc => "warc",
        }
    }

    /// The format a `--format` name names.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A sequential source of records.
pub trait Source {
    /// The next record or skipped entry, `None` at the end. The record may borrow the source
    /// (its content reader reads the stream), so it must be consumed before the next call.
    fn next_item(&mut self) -> Result<Option<Item<'_>>>;
}

/// What a source yields.
pub enum Item<'a> {
    /// A record to write.
    Record(Record<'a>),
    /// An entry passed over (a link, a device, an unreadable file with skipping on), and why.
    Skipped(Skipped),
}

/// One record from a source.
pub struct Record<'a> {
    /// Its key: from a directory, tar or zip, a relative, `/`-separated UTF-8 path with no
    /// empty, `.` or `..` component; from a WARC, the target URI as written (which has `//`).
    pub key: String,
    /// Modification time, if the source has one.
    pub mtime: Option<Timestamp>,
    /// Unix permission bits, if the source has them.
    pub mode: Option<u32>,
    /// Media type, if the source says (a WARC's HTTP `Content-Type`); otherwise the writer
    /// guesses from the key.
    pub content_type: Option<String>,
    /// The content.
    pub content: Content<'a>,
}

/// A record's content.
pub enum Content<'a> {
    /// Already in memory.
    Bytes(Vec<u8>),
    /// A regular file, opened by the writer (which may read many at once): `len` is its size
    /// when the source saw it, and a file that changed size since is an error.
    File {
        /// Where it is.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// A stream to read to its end, of known length or not.
    Reader {
        /// The content.
        reader: Box<dyn Read + 'a>,
        /// Its length, if the source knows it (a tar or zip member's size).
        len: Option<u64>,
    },
}

/// A source entry passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its path in the source (a file path, or a member name).
    pub path: PathBuf,
    /// Why it was passed over.
    pub reason: String,
}

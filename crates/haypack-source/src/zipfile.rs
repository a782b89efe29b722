//! A zip file as a source: stored and deflate members, zip64, in central-directory order.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use haypack_format::Timestamp;
use zip::CompressionMethod;
use zip::extra_fields::ExtraField;
use zip::read::ZipFile;

use crate::names::{Name, civil_time, member_key, name_problem};
use crate::{Content, Error, Item, Record, Result, Skipped, Source, SourceOptions};

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;

/// The members of a zip file.
pub(crate) struct ZipSource {
    archive: zip::ZipArchive<BufReader<File>>,
    name: PathBuf,
    next: usize,
    skip_unreadable: bool,
}

/// What a member's central-directory entry says, before it is opened.
enum Step {
    Dir,
    Skip(Skipped),
    Record { key: String, mode: Option<u32>, len: u64, offset: u64 },
}

impl ZipSource {
    pub(crate) fn open(path: &Path, opts: &SourceOptions) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|source| Error::Zip {
            archive: path.to_owned(),
            what: "its central directory".into(),
            source,
        })?;
        Ok(ZipSource { archive, name: path.to_owned(), next: 0, skip_unreadable: opts.skip_unreadable })
    }

    fn step(&self, index: usize) -> Result<Step> {
        let entry = self.archive.by_index_data(index).map_err(|source| Error::Zip {
            archive: self.name.clone(),
            what: format!("member number {index}"),
            source,
        })?;
        let raw = entry.name_raw();
        let offset = entry.header_start();
        let member = || String::from_utf8_lossy(raw).into_owned();
        let key = match member_key(raw) {
            Ok(Name::Key(key)) => key,
            Ok(Name::Dir) => return Ok(Step::Dir),
            Err(problem) => {
                return Ok(Step::Skip(name_problem(problem, &self.name, raw, offset, self.skip_unreadable)?));
            }
        };
        let mode = entry.unix_mode();
        let reason = match mode.map(|m| m & S_IFMT) {
            None | Some(0) | Some(S_IFREG) => None,
            Some(S_IFDIR) => return Ok(Step::Dir),
            Some(S_IFLNK) => Some("symbolic link, not followed"),
            Some(_) => Some("not a regular file (device, socket or FIFO)"),
        };
        if let Some(reason) = reason {
            return Ok(Step::Skip(Skipped { path: self.name.join(&key), reason: reason.into() }));
        }
        if entry.encrypted() {
            return Err(Error::ZipEncrypted { archive: self.name.clone(), member: member(), offset });
        }
        match entry.compression() {
            CompressionMethod::Stored | CompressionMethod::Deflated => {}
            other => {
                let method = format!("{other:?}");
                return Err(Error::ZipMethod { archive: self.name.clone(), member: member(), offset, method });
            }
        }
        Ok(Step::Record { key, mode: mode.map(|m| m & 0o7777), len: entry.size(), offset })
    }
}

impl Source for ZipSource {
    fn next_item(&mut self) -> Result<Option<Item<'_>>> {
        while self.next < self.archive.len() {
            let index = self.next;
            self.next += 1;
            let (key, mode, len, offset) = match self.step(index)? {
                Step::Dir => continue,
                Step::Skip(skipped) => return Ok(Some(Item::Skipped(skipped))),
                Step::Record { key, mode, len, offset } => (key, mode, len, offset),
            };
            let archive = self.name.clone();
            let file = self.archive.by_index(index).map_err(|source| Error::Zip {
                archive: archive.clone(),
                what: format!("member {key:?} at byte {offset}"),
                source,
            })?;
            let mtime = Some(mtime(&file));
            let reader = Box::new(Capped { file, left: len, declared: len, archive, member: key.clone(), offset });
            let content = Content::Reader { reader, len: Some(len) };
            return Ok(Some(Item::Record(Record { key, mtime, mode, content_type: None, content })));
        }
        Ok(None)
    }
}

/// The member's modification time: the extended timestamp field's (UTC seconds) if it has
/// one, else the DOS time, which has no zone and is taken as UTC.
fn mtime<R: Read>(file: &ZipFile<'_, R>) -> Timestamp {
    for field in file.extra_data_fields() {
        if let ExtraField::ExtendedTimestamp(ts) = field
            && let Some(secs) = ts.mod_time()
        {
            return Timestamp { secs: i64::from(secs), nanos: 0 };
        }
    }
    match file.last_modified() {
        Some(t) => civil_time(
            i64::from(t.year()),
            u32::from(t.month()),
            u32::from(t.day()),
            u32::from(t.hour()),
            u32::from(t.minute()),
            u32::from(t.second()),
            0,
        ),
        None => Timestamp::default(),
    }
}

/// A member's content, cut off one byte past its declared size: a member that inflates
/// further is refused after reading at most that much, whatever its compressed data holds.
struct Capped<'a, R: Read> {
    file: ZipFile<'a, R>,
    left: u64,
    declared: u64,
    archive: PathBuf,
    member: String,
    offset: u64,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // The zip library refuses the byte past the declared size itself; either way it
            // is this error.
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) | Err(_) => Err(self.overflow()),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want]).map_err(|e| self.corrupt(e))?;
        if n == 0 {
            return Err(Error::Truncated {
                archive: self.archive.clone(),
                what: format!("member {:?} (at byte {})", self.member, self.offset),
                offset: self.declared - self.left,
                layer: "member's content",
                cause: format!(", {} bytes short of its declared size", self.left),
            }
            .into_io());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl<R: Read> Capped<'_, R> {
    fn corrupt(&self, e: io::Error) -> io::Error {
        Error::Corrupt {
            archive: self.archive.clone(),
            what: format!("the content of member {:?} (at byte {})", self.member, self.offset),
            offset: self.declared - self.left,
            why: e.to_string(),
        }
        .into_io()
    }

    fn overflow(&self) -> io::Error {
        Error::ZipOverflow {
            archive: self.archive.clone(),
            member: self.member.clone(),
            offset: self.offset,
            declared: self.declared,
        }
        .into_io()
    }
}

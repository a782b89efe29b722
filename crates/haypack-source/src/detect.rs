//! Choosing a source from the input's first bytes, without consuming them: standard input
//! cannot seek back, so the bytes looked at are kept and read again.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::{Error, Format, Result, Source, SourceOptions, dir, tarfile, warc, zipfile};

/// Bytes looked at to choose: a tar header is 512 bytes, and its `ustar` magic sits at 257.
const PEEK: usize = 512;

/// A reader whose first bytes have been read ahead and are served again first.
pub(crate) struct Peeked<R> {
    head: Vec<u8>,
    at: usize,
    inner: R,
}

impl<R: Read> Peeked<R> {
    /// Reads up to `n` bytes ahead (fewer only at the end of the stream: a pipe may hand them
    /// over a few at a time).
    pub(crate) fn new(mut inner: R, n: usize) -> io::Result<Self> {
        let mut head = Vec::with_capacity(n);
        (&mut inner).take(n as u64).read_to_end(&mut head)?;
        Ok(Peeked { head, at: 0, inner })
    }

    /// The bytes read ahead.
    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }
}

impl<R: Read> Read for Peeked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// The compressions a tar or WARC stream may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Compression {
    fn of(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if head.starts_with(b"BZh") {
            Some(Compression::Bzip2)
        } else {
            None
        }
    }

    /// A decoder that reads every member or frame: WARC.gz is one gzip member per record, and a
    /// concatenation of compressed streams is one stream to every stock tool.
    fn decoder<'a>(self, input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        })
    }
}

/// Whether `head` starts a tar stream: the `ustar` magic (POSIX and GNU), or else an old-style
/// header whose checksum adds up.
pub(crate) fn is_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    tar::Header::from_byte_slice(&head[..512]).cksum().is_ok_and(|sum| sum == tarfile::checksum(&head[..512]))
}

fn is_warc(head: &[u8]) -> bool {
    head.starts_with(b"WARC/1.")
}

fn is_zip(head: &[u8]) -> bool {
    // A local file header, or the end record of an empty zip.
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

/// Opens `path` (`-` for standard input) as a source: a directory, a tar (plain, gzip, zstd, xz
/// or bzip2), a zip or a WARC (plain or gzip), chosen from the bytes unless `format` says.
pub fn open<'a>(path: &Path, format: Option<Format>, opts: &SourceOptions) -> Result<Box<dyn Source + 'a>> {
    let stdin = path == Path::new("-");
    let io_err = |source| Error::Io { path: path.to_owned(), source };
    if !stdin && std::fs::metadata(path).map_err(io_err)?.is_dir() {
        return match format {
            None | Some(Format::Dir) => Ok(Box::new(dir::DirSource::new(path, opts))),
            Some(asked) => Err(Error::FormatMismatch {
                path: path.to_owned(),
                asked: asked.name(),
                found: "it is a directory".into(),
            }),
        };
    }
    let name: PathBuf = if stdin { PathBuf::from("<stdin>") } else { path.to_owned() };
    let raw: Box<dyn Read> =
        if stdin { Box::new(io::stdin().lock()) } else { Box::new(File::open(path).map_err(io_err)?) };
    let raw = Peeked::new(raw, PEEK).map_err(io_err)?;
    let mismatch = |asked: Format, found: &str| Error::FormatMismatch {
        path: name.clone(),
        asked: asked.name(),
        found: found.to_owned(),
    };
    if is_zip(raw.head()) || format == Some(Format::Zip) {
        match format {
            None | Some(Format::Zip) if stdin => return Err(Error::ZipFromStdin),
            None | Some(Format::Zip) => return Ok(Box::new(zipfile::ZipSource::open(path, opts)?)),
            Some(Format::Dir) => return Err(mismatch(Format::Dir, "it is not a directory")),
            Some(asked) => return Err(mismatch(asked, "it is a zip")),
        }
    }
    let compression = Compression::of(raw.head());
    let stream: Box<dyn Read + 'a> = match compression {
        Some(c) => c.decoder(raw).map_err(io_err)?,
        None => Box::new(raw),
    };
    let stream = Peeked::new(stream, PEEK).map_err(|e| Error::Corrupt {
        archive: name.clone(),
        what: "the start of the stream".into(),
        offset: 0,
        why: e.to_string(),
    })?;
    let found = if is_warc(stream.head()) {
        Format::Warc
    } else if is_tar(stream.head()) {
        Format::Tar
    } else {
        let why = match (compression, stream.head().is_empty()) {
            (_, true) => "it is empty".to_owned(),
            (Some(c), false) => format!("it is {c:?}-compressed but holds neither a tar nor a WARC"),
            (None, false) => "its first bytes are no known magic number".to_owned(),
        };
        return match format {
            None => Err(Error::UnknownFormat { path: name, why }),
            Some(asked) => Err(mismatch(asked, &why)),
        };
    };
    match format {
        Some(asked) if asked != found => Err(mismatch(asked, &format!("it is a {}", found.name()))),
        _ if found == Format::Warc => Ok(Box::new(warc::WarcSource::new(stream, name))),
        _ => Ok(Box::new(tarfile::TarSource::new(stream, name, opts))),
    }
}

//! Choosing a source from the input's first bytes, without consuming them: standard input
//! cannot seek back, so the bytes looked at are kept and read again.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

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
    if path == Path::new("-") {
        return open_stream(io::stdin().lock(), Path::new("<stdin>"), format, opts);
    }
    let io_err = |source| Error::Io { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    match format {
        _ if !meta.is_dir() => {}
        None | Some(Format::Dir) => return Ok(Box::new(dir::DirSource::new(path, opts))),
        Some(asked) => {
            let found = "it is a directory".into();
            return Err(Error::FormatMismatch { path: path.to_owned(), asked: asked.name(), found });
        }
    }
    let mut file = File::open(path).map_err(io_err)?;
    let mut magic = Vec::with_capacity(4);
    (&mut file).take(4).read_to_end(&mut magic).map_err(io_err)?;
    if is_zip(&magic) || format == Some(Format::Zip) {
        return match format {
            None | Some(Format::Zip) => Ok(Box::new(zipfile::ZipSource::open(path, opts)?)),
            Some(asked) => {
                Err(Error::FormatMismatch { path: path.to_owned(), asked: asked.name(), found: "it is a zip".into() })
            }
        };
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    open_stream(file, path, format, opts)
}

/// Opens a stream that cannot seek (standard input, a download) as a tar (plain, gzip, zstd,
/// xz or bzip2) or WARC (plain or gzip) source, chosen from its first bytes unless `format`
/// says; `name` names it in errors. A zip needs to seek, so it is refused here.
pub fn open_stream<'a>(
    input: impl Read + 'a,
    name: &Path,
    format: Option<Format>,
    opts: &SourceOptions,
) -> Result<Box<dyn Source + 'a>> {
    let name = name.to_owned();
    let mismatch = |asked: Format, found: &str| Error::FormatMismatch {
        path: name.clone(),
        asked: asked.name(),
        found: found.to_owned(),
    };
    match format {
        Some(Format::Zip) => return Err(Error::ZipFromStdin),
        Some(Format::Dir) => return Err(mismatch(Format::Dir, "it is not a directory")),
        _ => {}
    }
    let raw = Peeked::new(input, PEEK).map_err(|source| Error::Io { path: name.clone(), source })?;
    if is_zip(raw.head()) {
        return Err(Error::ZipFromStdin);
    }
    let compression = Compression::of(raw.head());
    let stream: Box<dyn Read + 'a> = match compression {
        Some(c) => c.decoder(raw).map_err(|source| Error::Io { path: name.clone(), source })?,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out one byte per read, as a slow pipe may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.is_empty()) {
                (Some((b, rest)), false) => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// A tar of one member, `key`, holding `content`.
    fn tar_of(key: &str, content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o640);
        b.append_data(&mut h, key, content).unwrap();
        b.into_inner().unwrap()
    }

    fn one_record(src: &mut dyn Source) -> (String, Vec<u8>) {
        match src.next_item().unwrap() {
            Some(crate::Item::Record(r)) => {
                let crate::Content::Reader { mut reader, .. } = r.content else { panic!("not a reader") };
                let mut v = Vec::new();
                reader.read_to_end(&mut v).unwrap();
                (r.key, v)
            }
            _ => panic!("no record"),
        }
    }

    #[test]
    fn a_trickling_stream_is_detected_and_read_from_its_first_byte() {
        let tar = tar_of("a/b.txt", b"hello");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        for bytes in [&tar, &gz] {
            let mut src = open_stream(Trickle(bytes), Path::new("<test>"), None, &SourceOptions::default()).unwrap();
            assert_eq!(one_record(&mut *src), ("a/b.txt".into(), b"hello".to_vec()));
            assert!(src.next_item().unwrap().is_none());
        }
    }

    #[test]
    fn a_zip_on_a_stream_is_refused() {
        let err = open_stream(&b"PK\x03\x04rest"[..], Path::new("<stdin>"), None, &SourceOptions::default()).err();
        assert!(matches!(err, Some(Error::ZipFromStdin)));
    }

    #[test]
    fn magic_numbers_choose_the_decoder() {
        assert_eq!(Compression::of(&[0x1f, 0x8b, 8]), Some(Compression::Gzip));
        assert_eq!(Compression::of(&[0x28, 0xb5, 0x2f, 0xfd]), Some(Compression::Zstd));
        assert_eq!(Compression::of(b"\xfd7zXZ\0"), Some(Compression::Xz));
        assert_eq!(Compression::of(b"BZh9"), Some(Compression::Bzip2));
        assert_eq!(Compression::of(b"WARC/1.1"), None);
        assert!(is_tar(&tar_of("x", b"")));
        assert!(!is_tar(&[0u8; 512]));
    }
}

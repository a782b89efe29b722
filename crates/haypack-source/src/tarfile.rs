//! A tar stream (ustar, GNU long names, PAX) as a source, read straight from the stream.
//!
//! The `tar` crate parses the headers and PAX records, but the stream loop is ours: its
//! `Entries` borrows the `Archive` it iterates, and a source that owns both would refer to
//! itself. The loop is short, and owning it lets every error name the member and its offset.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use haypack_format::Timestamp;

use crate::names::{Name, member_key, name_problem};
use crate::{Content, Error, Item, Record, Result, Skipped, Source, SourceOptions};

const BLOCK: u64 = 512;
/// The largest GNU long name or PAX header read: keys are at most 4 KiB, so this only stops a
/// corrupt size field from allocating gigabytes.
const MAX_EXTENSION: u64 = 1 << 20;

/// The sum a tar header's checksum field holds: every byte, with the field itself as spaces.
/// (Some old tars summed signed bytes; both sums are accepted where checked.)
pub(crate) fn checksum(block: &[u8]) -> u32 {
    block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) }).sum()
}

fn signed_checksum(block: &[u8]) -> i64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { i64::from(b' ') } else { i64::from(b as i8) })
        .sum()
}

/// The members of a tar stream.
pub(crate) struct TarSource<'a> {
    input: Box<dyn Read + 'a>,
    name: PathBuf,
    skip_unreadable: bool,
    /// Bytes of the stream consumed.
    pos: u64,
    /// Data bytes of the current member not read yet, and the padding after them.
    left: u64,
    pad: u64,
    /// The current (or last) member's name, for errors.
    member: String,
    done: bool,
}

/// What one member's headers say, before its data is read.
enum Step {
    End,
    Dir,
    Skip(Skipped),
    Record { key: String, mtime: Option<Timestamp>, mode: Option<u32>, len: u64 },
}

/// Extension headers that apply to the next member.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl<'a> TarSource<'a> {
    pub(crate) fn new(input: impl Read + 'a, name: PathBuf, opts: &SourceOptions) -> Self {
        TarSource {
            input: Box::new(input),
            name,
            skip_unreadable: opts.skip_unreadable,
            pos: 0,
            left: 0,
            pad: 0,
            member: String::new(),
            done: false,
        }
    }

    /// A read error at the current position, `what` naming what was being read.
    fn stream_error(&self, e: io::Error, what: String) -> Error {
        stream_error(&self.name, e, what, self.pos)
    }

    /// Reads as much of `buf` as the stream has: fewer bytes only at its end.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.input.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    /// Passes over the rest of the current member's data and its padding.
    fn skip_rest(&mut self) -> Result<()> {
        let n = self.left + self.pad;
        let copied = io::copy(&mut (&mut self.input).take(n), &mut io::sink());
        let what = || format!("member {:?}", self.member);
        match copied {
            Ok(k) => {
                self.pos += k;
                if k < n {
                    return Err(self.stream_error(io::ErrorKind::UnexpectedEof.into(), what()));
                }
            }
            Err(e) => return Err(self.stream_error(e, what())),
        }
        self.left = 0;
        self.pad = 0;
        Ok(())
    }

    /// Reads past the end-of-archive marker to the end of the stream: a compressed stream's
    /// checksum (gzip's CRC, xz's check) is checked only at its end, and a stream cut there is
    /// truncated all the same. What follows the marker (zero padding to the tar record size)
    /// is not looked at.
    fn drain(&mut self) -> Result<()> {
        match io::copy(&mut self.input, &mut io::sink()) {
            Ok(n) => {
                self.pos += n;
                Ok(())
            }
            Err(e) => Err(self.stream_error(e, "the end of the stream".into())),
        }
    }

    /// The data of an extension header (a GNU long name, a PAX record set), whole.
    fn read_extension(&mut self, size: u64, at: u64) -> Result<Vec<u8>> {
        if size > MAX_EXTENSION {
            return Err(Error::Corrupt {
                archive: self.name.clone(),
                what: "an extended header".into(),
                offset: at,
                why: format!("it claims {size} bytes, more than the {MAX_EXTENSION} haypack reads"),
            });
        }
        let mut data = vec![0; size as usize];
        let n = self.fill(&mut data).map_err(|e| self.stream_error(e, "an extended header".into()))?;
        if n < data.len() {
            return Err(self.stream_error(io::ErrorKind::UnexpectedEof.into(), "an extended header".into()));
        }
        self.left = 0;
        self.pad = padding(size);
        self.skip_rest()?;
        Ok(data)
    }

    /// The next header block, or `None` at the end-of-archive marker.
    fn header(&mut self) -> Result<Option<(tar::Header, u64)>> {
        let at = self.pos;
        let what = if self.member.is_empty() {
            "the first header".to_owned()
        } else {
            format!("the header after member {:?}", self.member)
        };
        let mut block = [0u8; BLOCK as usize];
        let n = self.fill(&mut block).map_err(|e| self.stream_error(e, what.clone()))?;
        if n < block.len() {
            // Every tar tool ends a stream with zero blocks; a stream that stops without them
            // was cut, even if it stopped between two members.
            return Err(self.stream_error(io::ErrorKind::UnexpectedEof.into(), what));
        }
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let header = tar::Header::from_byte_slice(&block).clone();
        let stored = header.cksum().ok();
        if stored != Some(checksum(&block)) && stored.map(i64::from) != Some(signed_checksum(&block)) {
            return Err(Error::Corrupt {
                archive: self.name.clone(),
                what,
                offset: at,
                why: "its checksum does not match (not a tar stream here, or a corrupt one)".into(),
            });
        }
        Ok(Some((header, at)))
    }

    fn corrupt(&self, at: u64, e: io::Error) -> Error {
        Error::Corrupt {
            archive: self.name.clone(),
            what: format!("the header of member {:?}", self.member),
            offset: at,
            why: e.to_string(),
        }
    }

    /// The next member that is not an extension header or a directory.
    fn next_member(&mut self) -> Result<Option<Item<'_>>> {
        loop {
            match self.step()? {
                Step::End => return Ok(None),
                Step::Dir => self.skip_rest()?,
                Step::Skip(skipped) => return Ok(Some(Item::Skipped(skipped))),
                Step::Record { key, mtime, mode, len } => {
                    let reader = Box::new(MemberReader { src: self });
                    let content = Content::Reader { reader, len: Some(len) };
                    return Ok(Some(Item::Record(Record { key, mtime, mode, content_type: None, content })));
                }
            }
        }
    }

    /// Reads one member's headers (extensions included), leaving its data unread.
    fn step(&mut self) -> Result<Step> {
        let mut pending = Pending::default();
        // A member's offset is where its first header starts, extension headers included.
        let mut first = None;
        loop {
            let Some((header, at)) = self.header()? else {
                self.done = true;
                self.drain()?;
                return Ok(Step::End);
            };
            let at = *first.get_or_insert(at);
            let size = header.entry_size().map_err(|e| self.corrupt(at, e))?;
            match header.as_old().linkflag[0] {
                b'L' => pending.long_name = Some(trim_nul(self.read_extension(size, at)?)),
                b'x' => pending.pax = Some(self.read_extension(size, at)?),
                b'K' | b'g' => drop(self.read_extension(size, at)?),
                flag => return self.member(&header, flag, size, at, pending),
            }
        }
    }

    fn member(&mut self, header: &tar::Header, flag: u8, size: u64, at: u64, pending: Pending) -> Result<Step> {
        let pax = |key: &str| {
            let records = tar::PaxExtensions::new(pending.pax.as_deref().unwrap_or_default());
            records.flatten().find(|r| r.key() == Ok(key)).map(|r| r.value_bytes().to_vec())
        };
        let raw = pax("path").or(pending.long_name.clone()).unwrap_or_else(|| header.path_bytes().into_owned());
        self.member = String::from_utf8_lossy(&raw).into_owned();
        let size = match pax("size") {
            Some(v) => parse_u64(&v).ok_or_else(|| self.corrupt(at, io::Error::other("PAX size is not a number")))?,
            None => size,
        };
        if flag == b'S' {
            self.skip_sparse_extensions(header)?;
        }
        self.left = size;
        self.pad = padding(size);
        let reason = match flag {
            b'0' | b'\0' | b'7' => None,
            b'5' => return Ok(Step::Dir),
            b'1' => Some("hard link (the file it links to is recorded under its own name)".to_owned()),
            b'2' => Some("symbolic link, not followed".to_owned()),
            b'3' | b'4' => Some("device".to_owned()),
            b'6' => Some("FIFO".to_owned()),
            b'S' => Some("GNU sparse file, not supported: unpack it and pack the directory".to_owned()),
            other => Some(format!("tar entry of type {:?}, not a regular file", other as char)),
        };
        let key = match member_key(&raw) {
            Ok(Name::Key(key)) => key,
            Ok(Name::Dir) => return Ok(Step::Dir),
            Err(problem) => return Ok(Step::Skip(name_problem(problem, &self.name, &raw, at, self.skip_unreadable)?)),
        };
        if let Some(reason) = reason {
            return Ok(Step::Skip(Skipped { path: self.name.join(&key), reason }));
        }
        let mtime = match pax("mtime") {
            Some(v) => {
                parse_pax_time(&v).ok_or_else(|| self.corrupt(at, io::Error::other("PAX mtime is not a time")))?
            }
            None => Timestamp { secs: header.mtime().map_err(|e| self.corrupt(at, e))? as i64, nanos: 0 },
        };
        let mode = header.mode().map_err(|e| self.corrupt(at, e))? & 0o7777;
        Ok(Step::Record { key, mtime: Some(mtime), mode: Some(mode), len: size })
    }

    /// An old GNU sparse member's map continues in extension blocks after its header.
    fn skip_sparse_extensions(&mut self, header: &tar::Header) -> Result<()> {
        let mut extended = header.as_gnu().is_some_and(|g| g.isextended[0] != 0);
        while extended {
            let mut block = [0u8; BLOCK as usize];
            let n = self.fill(&mut block).map_err(|e| self.stream_error(e, format!("member {:?}", self.member)))?;
            if n < block.len() {
                return Err(self.stream_error(io::ErrorKind::UnexpectedEof.into(), format!("member {:?}", self.member)));
            }
            extended = block[504] != 0;
        }
        Ok(())
    }
}

impl Source for TarSource<'_> {
    fn next_item(&mut self) -> Result<Option<Item<'_>>> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        self.next_member()
    }
}

/// A member's data, read straight from the stream.
struct MemberReader<'s, 'a> {
    src: &'s mut TarSource<'a>,
}

impl Read for MemberReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let src = &mut *self.src;
        if src.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(src.left).unwrap_or(usize::MAX));
        let n = match src.input.read(&mut buf[..want]) {
            Ok(0) => io::Error::from(io::ErrorKind::UnexpectedEof),
            Ok(n) => {
                src.pos += n as u64;
                src.left -= n as u64;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => e,
        };
        Err(src.stream_error(n, format!("member {:?}", src.member)).into_io())
    }
}

/// The error for a failed read of a (possibly decompressed) stream: its end is a truncation,
/// anything else the decoder's complaint.
pub(crate) fn stream_error(archive: &Path, e: io::Error, what: String, offset: u64) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        let cause = match e.get_ref() {
            Some(inner) => format!(" ({inner})"),
            None => String::new(),
        };
        Error::Truncated { archive: archive.to_owned(), what, offset, layer: "tar", cause }
    } else {
        Error::Corrupt { archive: archive.to_owned(), what, offset, why: e.to_string() }
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A PAX time: decimal seconds, possibly negative, with an optional fraction.
fn parse_pax_time(v: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = whole.parse().ok()?;
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? * 10u32.pow(8 - i as u32);
    }
    Some(match (neg, nanos) {
        (false, _) => Timestamp { secs, nanos },
        (true, 0) => Timestamp { secs: -secs, nanos: 0 },
        (true, n) => Timestamp { secs: -secs - 1, nanos: 1_000_000_000 - n },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_fraction() {
        assert_eq!(parse_pax_time(b"1700000000.5"), Some(Timestamp { secs: 1_700_000_000, nanos: 500_000_000 }));
        assert_eq!(parse_pax_time(b"1700000000"), Some(Timestamp { secs: 1_700_000_000, nanos: 0 }));
        assert_eq!(parse_pax_time(b"-1.25"), Some(Timestamp { secs: -2, nanos: 750_000_000 }));
        assert_eq!(parse_pax_time(b"soon"), None);
    }
}

//! A WARC file (plain, or gzip: one member per record or one stream) as a source: one record
//! per `response` and `resource` WARC record, keyed by its target URI.
//!
//! The headers are parsed here (a version line, header lines, a blank line, then exactly
//! `Content-Length` bytes of block and two CRLFs), each header block at most [`MAX_HEADER`]
//! bytes, so a corrupt file cannot make a line grow without end.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use haypack_format::MAX_KEY_LEN;

use crate::names::parse_iso8601;
use crate::{Content, Error, Item, Record, Result, Skipped, Source};

/// The largest WARC or HTTP header block read.
const MAX_HEADER: usize = 64 << 10;

/// The records of a WARC stream.
pub(crate) struct WarcSource<'a> {
    input: BufReader<Box<dyn Read + 'a>>,
    name: PathBuf,
    /// Bytes of the (decompressed) stream consumed.
    pos: u64,
    /// Bytes of the current record's block not consumed yet.
    left: u64,
    /// Whether a record's block is open (its closing CRLF CRLF still to read).
    open: bool,
    /// The current record's target URI, or type and offset, for errors.
    current: String,
}

/// Header lines, names as written (matched without case).
struct Headers(Vec<(String, String)>);

impl Headers {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What one WARC record's headers say.
enum Step {
    End,
    Ignore,
    Skip(Skipped),
    Record { key: String, mtime: Option<haypack_format::Timestamp>, content_type: Option<String>, chunked: bool },
}

impl<'a> WarcSource<'a> {
    pub(crate) fn new(input: impl Read + 'a, name: PathBuf) -> Self {
        let input: Box<dyn Read + 'a> = Box::new(input);
        WarcSource {
            input: BufReader::with_capacity(64 << 10, input),
            name,
            pos: 0,
            left: 0,
            open: false,
            current: String::new(),
        }
    }

    fn error(&self, e: io::Error, what: &str) -> Error {
        let mut err = crate::tarfile::stream_error(&self.name, e, what.to_owned(), self.pos);
        if let Error::Truncated { layer, .. } = &mut err {
            *layer = "WARC";
        }
        err
    }

    fn corrupt(&self, what: &str, why: impl Into<String>) -> Error {
        Error::Corrupt { archive: self.name.clone(), what: what.to_owned(), offset: self.pos, why: why.into() }
    }

    /// One line, CRLF or LF ended, at most `max` bytes; inside a block, never past its end.
    /// An empty vector is the end of the stream (or block).
    fn line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let buf = self.input.fill_buf()?;
            let mut avail = buf.len();
            if self.open {
                avail = avail.min(usize::try_from(self.left).unwrap_or(usize::MAX));
            }
            if avail == 0 {
                return Ok(line);
            }
            let (take, done) = match buf[..avail].iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail, false),
            };
            if line.len() + take > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a header line longer than {max} bytes"),
                ));
            }
            line.extend_from_slice(&buf[..take]);
            self.input.consume(take);
            self.pos += take as u64;
            if self.open {
                self.left -= take as u64;
            }
            if done {
                return Ok(line);
            }
        }
    }

    /// Header lines up to the blank line, at most [`MAX_HEADER`] bytes in all.
    fn headers(&mut self, what: &str) -> Result<Headers> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut total = 0;
        loop {
            let line = self.line(MAX_HEADER - total).map_err(|e| self.error(e, what))?;
            total += line.len();
            if line.is_empty() {
                return Err(self.error(io::ErrorKind::UnexpectedEof.into(), what));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                return Ok(Headers(headers));
            }
            if text.starts_with([' ', '\t']) {
                // A folded line continues the previous header's value.
                if let Some((_, v)) = headers.last_mut() {
                    v.push(' ');
                    v.push_str(text.trim());
                }
                continue;
            }
            let (n, v) =
                text.split_once(':').ok_or_else(|| self.corrupt(what, format!("header line {text:?} has no colon")))?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }

    /// Consumes the rest of the open block and the two CRLFs after it.
    fn close_block(&mut self) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        let what = format!("the end of record {}", self.current);
        let n = self.left;
        let skipped = io::copy(&mut (&mut self.input).take(n), &mut io::sink()).map_err(|e| self.error(e, &what))?;
        self.pos += skipped;
        self.left = 0;
        self.open = false;
        if skipped < n {
            return Err(self.error(io::ErrorKind::UnexpectedEof.into(), &what));
        }
        let mut end = [0u8; 4];
        self.input.read_exact(&mut end).map_err(|e| self.error(e, &what))?;
        self.pos += 4;
        if &end != b"\r\n\r\n" {
            return Err(self.corrupt(&what, "the block is not followed by CRLF CRLF (is Content-Length right?)"));
        }
        Ok(())
    }

    /// Reads one WARC record's headers (and, for an HTTP response, the HTTP headers), leaving
    /// the content unread.
    fn step(&mut self) -> Result<Step> {
        self.close_block()?;
        let at = self.pos;
        let version = loop {
            let line = self.line(MAX_HEADER).map_err(|e| self.error(e, "a WARC version line"))?;
            if line.is_empty() {
                return Ok(Step::End);
            }
            // Some writers leave extra blank lines between records.
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                break line;
            }
        };
        let what = format!("the WARC record at byte {at}");
        if !version.starts_with(b"WARC/") {
            return Err(self.corrupt(
                &what,
                format!("it starts with {:?}, not a WARC version", String::from_utf8_lossy(&version)),
            ));
        }
        let warc = self.headers(&what)?;
        let len = warc.get("Content-Length").and_then(|v| v.parse::<u64>().ok());
        self.left = len.ok_or_else(|| self.corrupt(&what, "it has no valid Content-Length"))?;
        self.open = true;
        let kind = warc.get("WARC-Type").unwrap_or_default().to_ascii_lowercase();
        if !matches!(kind.as_str(), "response" | "resource" | "revisit") {
            return Ok(Step::Ignore);
        }
        // WARC 1.0's grammar wrapped the URI in angle brackets, and some writers still do.
        let uri = warc.get("WARC-Target-URI").map(|u| u.trim_start_matches('<').trim_end_matches('>'));
        let Some(key) = uri.filter(|u| !u.is_empty()).map(str::to_owned) else {
            let id = warc.get("WARC-Record-ID").unwrap_or("(no WARC-Record-ID)").to_owned();
            return Err(Error::WarcNoTargetUri { archive: self.name.clone(), kind, id, offset: at });
        };
        if key.len() > MAX_KEY_LEN {
            let start: String = key.chars().take(64).chain("...".chars()).collect();
            return Err(Error::KeyTooLong { path: self.name.join(start), len: key.len(), max: MAX_KEY_LEN });
        }
        self.current = format!("{key:?} (at byte {at})");
        if kind == "revisit" {
            let reason = "WARC revisit record: its content is another record's".into();
            return Ok(Step::Skip(Skipped { path: self.name.join(&key), reason }));
        }
        let mtime = warc.get("WARC-Date").and_then(parse_iso8601);
        let block_type = warc.get("Content-Type").map(str::to_owned);
        let is_http = block_type.as_deref().is_some_and(|t| t.to_ascii_lowercase().starts_with("application/http"));
        if kind == "resource" || !is_http {
            return Ok(Step::Record { key, mtime, content_type: block_type, chunked: false });
        }
        let what = format!("the HTTP headers of record {}", self.current);
        let status = self.line(MAX_HEADER).map_err(|e| self.error(e, &what))?;
        if !status.starts_with(b"HTTP/") {
            return Err(self
                .corrupt(&what, "the block of an application/http response does not start with an HTTP status line"));
        }
        let http = self.headers(&what)?;
        let chunked = http.get("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        Ok(Step::Record { key, mtime, content_type: http.get("Content-Type").map(str::to_owned), chunked })
    }
}

impl Source for WarcSource<'_> {
    fn next_item(&mut self) -> Result<Option<Item<'_>>> {
        loop {
            match self.step()? {
                Step::End => return Ok(None),
                Step::Ignore => continue,
                Step::Skip(skipped) => return Ok(Some(Item::Skipped(skipped))),
                Step::Record { key, mtime, content_type, chunked } => {
                    let content = if chunked {
                        Content::Reader { reader: Box::new(Dechunk { src: self, chunk: 0, done: false }), len: None }
                    } else {
                        let len = Some(self.left);
                        Content::Reader { reader: Box::new(Block { src: self }), len }
                    };
                    return Ok(Some(Item::Record(Record { key, mtime, mode: None, content_type, content })));
                }
            }
        }
    }
}

impl WarcSource<'_> {
    /// Reads block bytes; the block ending early is a truncated stream.
    fn read_block(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let got = match self.input.read(&mut buf[..want]) {
            Ok(0) => io::Error::from(io::ErrorKind::UnexpectedEof),
            Ok(n) => {
                self.pos += n as u64;
                self.left -= n as u64;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => e,
        };
        let what = format!("record {}", self.current);
        Err(self.error(got, &what).into_io())
    }
}

/// A record's block (or what is left of it after the HTTP headers), as it is.
struct Block<'s, 'a> {
    src: &'s mut WarcSource<'a>,
}

impl Read for Block<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.read_block(buf)
    }
}

/// An HTTP body sent with `Transfer-Encoding: chunked`, de-chunked: size lines (hex, maybe
/// with extensions), data, CRLF, up to the zero-size chunk; trailers are left to be skipped.
struct Dechunk<'s, 'a> {
    src: &'s mut WarcSource<'a>,
    /// Bytes left in the current chunk.
    chunk: u64,
    done: bool,
}

impl Dechunk<'_, '_> {
    fn bad(&self, why: String) -> io::Error {
        let what = format!("the chunked body of record {}", self.src.current);
        self.src.corrupt(&what, why).into_io()
    }
}

impl Read for Dechunk<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk == 0 && !self.done {
            let mut line = self.src.line(4096)?;
            if line == b"\r\n" || line == b"\n" {
                // The CRLF that ends the previous chunk's data.
                line = self.src.line(4096)?;
            }
            if line.is_empty() {
                return Err(self.bad("the body ends before its last (zero-size) chunk".into()));
            }
            let text = String::from_utf8_lossy(&line);
            let size = text.split(';').next().unwrap_or_default().trim();
            self.chunk = u64::from_str_radix(size, 16)
                .map_err(|_| self.bad(format!("chunk size line {text:?} is not hexadecimal")))?;
            self.done = self.chunk == 0;
        }
        if self.done {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.chunk).unwrap_or(usize::MAX));
        let n = self.src.read_block(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(self.bad("the block ends inside a chunk".into()));
        }
        self.chunk -= n as u64;
        Ok(n)
    }
}

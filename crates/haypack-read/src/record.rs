//! One record, for callers that must answer before they have its content (an HTTP gateway
//! sends headers first): its header from one range read, then its content whole, in pieces, or
//! still compressed as stored (a gzip member, a zstd frame), for a client that takes that.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use haypack_format::{Budget, Codec, Container, Dictionary, Entry, RecordFrame, RecordHeader, decode_content};
use tokio::sync::Semaphore;

use crate::chunked::{Chunked, checked_pieces, pieces};
use crate::{Archive, Error, Result, check_header};

/// The first read for a header-only look at a record: a header with a short key fits in a few
/// dozen bytes, the longest (a 4 KiB key, a long content type) in a few KiB.
const HEADER_READ: u64 = 8 << 10;
/// The most a header can take: the gzip container caps it at one 64 KiB extra field.
const HEADER_MAX: u64 = 80 << 10;
/// The largest zstd content sent on as a zstd stream (see [`Record::content_encoding`]).
const ZSTD_HTTP_WINDOW: u64 = 8 << 20;

/// How much of a record [`Archive::record`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Only its header (checksum, codec, lengths): a small read at the record's start.
    Header,
    /// The whole record if it stores at most [`Budget::WHOLE`] bytes; a larger one is read like
    /// [`Want::Header`] and its content streams later, so that an answer that needs none of it (a 304) reads
    /// little and the first byte of one that does goes out early.
    Content,
}

/// A record whose header was read and checked against the index. Holds the archive it came
/// from, so it outlives the caller's borrow (and pins the generation it was read in).
#[derive(Debug)]
pub struct Record {
    archive: Arc<Archive>,
    entry: Entry,
    frame: RecordFrame,
    /// The record's bytes from its start: all of them, or the first read's.
    bytes: Bytes,
}

impl Archive {
    /// Looks `key` up and reads its record with one range read (once the index page is cached):
    /// the header only, or as much content as [`Want`] says.
    pub async fn record(self: &Arc<Self>, key: &str, want: Want) -> Result<Record> {
        let entry = self.stat(key).await?;
        let first = match want {
            Want::Content if entry.len <= Budget::WHOLE => entry.len,
            Want::Header | Want::Content => entry.len.min(HEADER_READ),
        };
        let mut bytes = self.record_range(&entry, 0..first).await?;
        let frame = match RecordFrame::parse(&bytes) {
            Ok(f) => f,
            // A header longer than the first read: read up to the longest a header can be.
            Err(haypack_format::Error::Truncated { .. }) if first < entry.len.min(HEADER_MAX) => {
                bytes = self.record_range(&entry, 0..entry.len.min(HEADER_MAX)).await?;
                RecordFrame::parse(&bytes).map_err(|e| self.record_corrupt(&entry, e.to_string()))?
            }
            Err(e) => return Err(self.record_corrupt(&entry, e.to_string())),
        };
        check_header(&frame, &entry).map_err(|d| self.record_corrupt(&entry, d))?;
        if frame.header.dict_id != 0 {
            self.dictionaries().await?;
        }
        Ok(Record { archive: self.clone(), entry, frame, bytes })
    }

    /// Reads `range` of the record `entry`, relative to its start.
    pub(crate) async fn record_range(&self, entry: &Entry, range: std::ops::Range<u64>) -> Result<Bytes> {
        let pack = self.pack_of(entry)?;
        if entry.offset.checked_add(entry.len).is_none_or(|end| end > pack.size) {
            return Err(self.record_corrupt(entry, format!("record runs past the pack's end ({} bytes)", pack.size)));
        }
        let (start, end) = (entry.offset + range.start, entry.offset + range.end.min(entry.len));
        self.read_range(&pack.name, start..end, Some(&entry.key)).await.map_err(|e| match e {
            Error::Store(haypack_store::Error::OutOfRange { size, .. }) => {
                self.record_corrupt(entry, format!("pack is truncated at {size} of {} bytes", pack.size))
            }
            e => e,
        })
    }

    pub(crate) fn record_corrupt(&self, entry: &Entry, detail: String) -> Error {
        Error::Corrupt {
            object: self.pack_of(entry).map_or_else(|_| format!("pack {}", entry.pack), |p| p.name.clone()),
            offset: entry.offset,
            key: Some(entry.key.clone()),
            detail,
        }
    }
}

impl Record {
    /// The index entry that led to the record.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The record's own header: its CRC-32C, codec and lengths.
    pub fn header(&self) -> &RecordHeader {
        &self.frame.header
    }

    /// The container the record is framed for.
    pub fn container(&self) -> Container {
        self.frame.container
    }

    /// The archive the record was read from.
    pub fn archive(&self) -> &Arc<Archive> {
        &self.archive
    }

    /// The HTTP content coding (`gzip` or `zstd`) in which the record's stored bytes are a
    /// standard compressed stream of its content, if they are one and the record is small enough
    /// to be read whole: then [`Record::encoded`] gives those bytes.
    pub fn content_encoding(&self) -> Option<&'static str> {
        let h = &self.frame.header;
        match (self.frame.container, h.codec) {
            _ if self.entry.len > Budget::WHOLE => None,
            (Container::Gzip, Codec::Gzip) => Some("gzip"),
            // RFC 9659 asks decoders for an 8 MiB window only; a frame's window is at most its
            // content size.
            // A frame compressed against the archive's dictionary means nothing to a client without it.
            (Container::Zstd, Codec::Zstd) if h.raw_len <= ZSTD_HTTP_WINDOW && h.dict_id == 0 => Some("zstd"),
            _ => None,
        }
    }

    /// Whether the whole record is already in memory, so the content needs no further read.
    pub fn is_whole(&self) -> bool {
        self.bytes.len() as u64 == self.entry.len
    }

    /// The content, verified, in memory: whole if [`Budget::whole`] allows, otherwise decoded a
    /// step at a time (reading the rest of the record first if only part of it was read), so that
    /// memory follows what the content turns out to be, never what its header claims.
    pub async fn content(&self) -> Result<Vec<u8>> {
        if self.is_whole() && Budget::whole(self.entry.len, self.frame.header.raw_len) {
            return decode_content(&self.frame, &self.bytes, self.dictionary()).map_err(|e| self.fail(e));
        }
        let mut out = Vec::new();
        let mut stream =
            std::pin::pin!(pieces(&*self.archive, self.entry.clone(), self.frame.clone(), self.bytes.clone(), None));
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// The record's content still encoded, for a caller that sends it on compressed: for
    /// `gzip`, the record itself, a complete gzip member (RFC 1952; the header travels in its
    /// FEXTRA field, which decoders skip); for `zstd`, the record's content frame (RFC 8878).
    /// `None` unless [`Record::content_encoding`] names a coding and the record was read whole.
    ///
    /// The content is decoded and verified first, a step at a time (within [`Budget`], however
    /// much it decodes to), which takes CPU time in proportion to the decoded length: call it
    /// from a blocking thread.
    pub fn encoded(&self) -> Result<Option<Bytes>> {
        let (Some(coding), true) = (self.content_encoding(), self.is_whole()) else { return Ok(None) };
        if Budget::whole(self.entry.len, self.frame.header.raw_len) {
            decode_content(&self.frame, &self.bytes, self.dictionary()).map_err(|e| self.fail(e))?;
        } else {
            let mut chunked = Chunked::new(self.frame.clone(), self.dictionary()).map_err(|e| self.fail(e))?;
            chunked.check(&self.bytes[self.frame.prefix_len as usize..]).map_err(|e| self.fail(e))?;
            chunked.finish().map_err(|e| self.fail(e))?;
        }
        if coding == "zstd" {
            let start = self.frame.prefix_len as usize;
            return Ok(Some(self.bytes.slice(start..start + self.frame.header.stored_len as usize)));
        }
        Ok(Some(self.bytes.clone()))
    }

    /// What [`Record::encoded`] gives, without checking it all first: in pieces of the stored
    /// bytes, each let go once the record up to its end was decoded and checked (a step at a
    /// time, on the blocking pool, nothing of it kept), the last only once the whole record
    /// was; a failed check ends the stream with an error item before its end, and the caller
    /// must then discard what it got. For a record that decodes past [`Budget::WHOLE`], whose
    /// check alone takes seconds. `None` where [`Record::encoded`] would be.
    pub fn into_encoded_stream(self) -> Result<Option<impl Stream<Item = Result<Bytes>> + Send + 'static>> {
        let (Some(coding), true) = (self.content_encoding(), self.is_whole()) else { return Ok(None) };
        let chunked = Chunked::new(self.frame.clone(), self.dictionary()).map_err(|e| self.fail(e))?;
        let content = self.frame.prefix_len as usize;
        let body = match coding {
            "zstd" => content..content + self.frame.header.stored_len as usize,
            _ => 0..self.bytes.len(),
        };
        Ok(Some(checked_pieces(self.archive, self.entry, chunked, self.bytes, content, body)))
    }

    /// The content in pieces of at most [`Budget::STEP`] bytes, decoded on the blocking pool,
    /// for records too large to hold whole; the rest of the record is read a chunk at a time as
    /// the pieces are taken, each read holding a permit of `reads` if given (so a consumer that
    /// stops taking holds no permit). Unlike [`Record::content`], pieces come out before the
    /// whole record is checked: the stream ends with an error item if the check fails, and the
    /// caller must then discard what it got (an HTTP server aborts the response, so the client
    /// sees a truncated body, never a complete wrong one).
    pub fn into_stream(self, reads: Option<Arc<Semaphore>>) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        pieces(self.archive, self.entry, self.frame, self.bytes, reads)
    }

    /// The archive's dictionary this record was compressed against, if any.
    fn dictionary(&self) -> Option<&Dictionary> {
        match self.frame.header.dict_id {
            0 => None,
            id => self.archive.loaded_dictionary(id),
        }
    }

    fn fail(&self, e: haypack_format::Error) -> Error {
        match e {
            haypack_format::Error::Io(e) => Error::Output(e),
            e => self.archive.record_corrupt(&self.entry, e.to_string()),
        }
    }
}

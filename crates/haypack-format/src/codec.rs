//! Encoding a record's content, and decoding it with every check a reader owes its caller.

use std::cell::RefCell;
use std::io::Write;

use crate::dict::Dictionary;
use crate::error::{Error, Result};
use crate::frame::{Container, StoredWriter};
use crate::header::{Codec, RecordHeader, Timestamp};

/// The default zstd level: zstd's own default, a good speed/size balance.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// The default gzip level.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// How packs compress: the container and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// The container, which decides the compressing codec.
    pub container: Container,
    /// The codec's level (zstd 1–22, gzip 0–9). Level 0 (gzip) still frames as gzip.
    pub level: i32,
    /// When false, every record is stored without trying to compress it.
    pub compress: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Compression { container: Container::Zstd, level: DEFAULT_ZSTD_LEVEL, compress: true }
    }
}

impl Compression {
    /// Whether compressed output of `stored` bytes for `raw` input bytes is worth decoding: it
    /// must save at least 3% (below that, storing costs less to read and nearly nothing to keep).
    pub fn pays(stored: u64, raw: u64) -> bool {
        stored.saturating_mul(100) < raw.saturating_mul(97)
    }
}

/// What a record's header says apart from its content: the caller's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// The key.
    pub key: String,
    /// Modification time.
    pub mtime: Timestamp,
    /// Unix permission bits.
    pub mode: u32,
    /// Media type, if known.
    pub content_type: Option<String>,
}

/// Raw-side facts about content, gathered while encoding it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentSummary {
    /// Raw bytes in.
    pub raw_len: u64,
    /// Encoded bytes out.
    pub stored_len: u64,
    /// CRC-32C of the raw bytes.
    pub crc32c: u32,
    /// CRC-32 (IEEE) of the raw bytes, for the gzip trailer.
    pub crc32_ieee: u32,
}

/// Hashes and counts bytes on their way to `inner`.
#[derive(Debug)]
pub struct Tally<W> {
    inner: W,
    len: u64,
    crc32c: u32,
    ieee: Option<flate2::Crc>,
}

impl<W: Write> Tally<W> {
    fn new(inner: W, ieee: bool) -> Self {
        Tally { inner, len: 0, crc32c: 0, ieee: ieee.then(flate2::Crc::new) }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..n]);
        if let Some(c) = &mut self.ieee {
            c.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes on their way to `inner`.
#[derive(Debug)]
struct Count<W> {
    inner: W,
    len: u64,
}

impl<W: Write> Write for Count<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Enc<W: Write> {
    Stored(StoredWriter<Count<W>>),
    Zstd(zstd::stream::write::Encoder<'static, Count<W>>),
    Deflate(flate2::write::DeflateEncoder<Count<W>>),
}

/// Streams raw content in and encoded content out, for records too large to hold in memory.
pub struct ContentEncoder<W: Write> {
    codec: Codec,
    raw: Tally<Enc<W>>,
}

impl<W: Write> std::fmt::Debug for ContentEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentEncoder").field("codec", &self.codec).field("raw_len", &self.raw.len).finish()
    }
}

impl<W: Write> ContentEncoder<W> {
    /// Starts encoding content with `codec` (which `container` must allow) into `out`.
    /// `raw_len`, if known, is recorded in the zstd frame so decoders can size their buffers.
    pub fn new(container: Container, codec: Codec, level: i32, raw_len: Option<u64>, out: W) -> Result<Self> {
        let out = Count { inner: out, len: 0 };
        let enc = match codec {
            _ if !container.allows(codec) => {
                return Err(Error::Unencodable {
                    what: "record",
                    detail: format!("codec {} in a {} pack", codec.name(), container.name()),
                });
            }
            Codec::Stored => Enc::Stored(StoredWriter::new(container, out)),
            Codec::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                e.include_checksum(false)?;
                e.include_dictid(false)?;
                e.include_contentsize(raw_len.is_some())?;
                e.set_pledged_src_size(raw_len)?;
                Enc::Zstd(e)
            }
            Codec::Gzip => Enc::Deflate(flate2::write::DeflateEncoder::new(
                out,
                flate2::Compression::new(level.clamp(0, 9) as u32),
            )),
        };
        Ok(ContentEncoder { codec, raw: Tally::new(enc, container == Container::Gzip) })
    }

    /// Ends the content and returns the sink with what was written.
    pub fn finish(self) -> Result<(W, ContentSummary)> {
        let Tally { inner, len, crc32c, ieee } = self.raw;
        let out = match inner {
            Enc::Stored(w) => w.finish()?,
            Enc::Zstd(w) => w.finish()?,
            Enc::Deflate(w) => w.finish()?,
        };
        let summary =
            ContentSummary { raw_len: len, stored_len: out.len, crc32c, crc32_ieee: ieee.map_or(0, |c| c.sum()) };
        Ok((out.inner, summary))
    }

    /// The codec being written.
    pub fn codec(&self) -> Codec {
        self.codec
    }
}

impl<W: Write> Write for Enc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Enc::Stored(w) => w.write(buf),
            Enc::Zstd(w) => w.write(buf),
            Enc::Deflate(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Enc::Stored(w) => w.flush(),
            Enc::Zstd(w) => w.flush(),
            Enc::Deflate(w) => w.flush(),
        }
    }
}

impl<W: Write> Write for ContentEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.raw.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.raw.flush()
    }
}

/// What a thread's compressor was set up for: the level, and the dictionary (id and CRC).
type CompressorKey = (i32, Option<(u32, u32)>);

thread_local! {
    static ZSTD: RefCell<Option<(CompressorKey, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

fn zstd_compress(level: i32, dict: Option<&Dictionary>, raw: &[u8]) -> Result<Vec<u8>> {
    use zstd::zstd_safe::CParameter;
    let key = (level, dict.map(|d| (d.id(), d.crc32c())));
    ZSTD.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|(k, _)| *k != key) {
            let mut c = match dict {
                Some(d) => zstd::bulk::Compressor::with_dictionary(level, d.bytes())?,
                None => zstd::bulk::Compressor::new(level)?,
            };
            c.set_parameter(CParameter::ChecksumFlag(false))?;
            c.set_parameter(CParameter::DictIdFlag(false))?;
            c.set_parameter(CParameter::ContentSizeFlag(true))?;
            *slot = Some((key, c));
        }
        let (_, c) = slot.as_mut().expect("initialised above");
        Ok(c.compress(raw)?)
    })
}

/// Encodes one whole record held in memory: header and content, framed for the container.
/// Content that does not compress by at least 3% is stored.
pub fn encode_record(compression: Compression, meta: RecordMeta, raw: &[u8]) -> Result<(RecordHeader, Vec<u8>)> {
    encode_record_with(compression, None, meta, raw)
}

/// Like [`encode_record`], compressing against `dict` in a zstd pack (gzip has no
/// dictionaries: there it is ignored). Content that does not compress by at least 3% is stored
/// without it.
pub fn encode_record_with(
    compression: Compression,
    dict: Option<&Dictionary>,
    meta: RecordMeta,
    raw: &[u8],
) -> Result<(RecordHeader, Vec<u8>)> {
    let container = compression.container;
    let raw_len = raw.len() as u64;
    let crc32c = crc32c::crc32c(raw);
    let dict = dict.filter(|_| container == Container::Zstd);
    let compressed = match (compression.compress, container) {
        (false, _) => None,
        (true, Container::Zstd) => Some(zstd_compress(compression.level, dict, raw)?),
        (true, Container::Gzip) => {
            let level = flate2::Compression::new(compression.level.clamp(0, 9) as u32);
            let mut e = flate2::write::DeflateEncoder::new(Vec::with_capacity(raw.len() / 2), level);
            e.write_all(raw)?;
            Some(e.finish()?)
        }
    };
    let (codec, content, dict_id) = match compressed {
        Some(c) if Compression::pays(c.len() as u64, raw_len) => (container.codec(), c, dict.map_or(0, |d| d.id())),
        _ => {
            let mut w = StoredWriter::new(container, Vec::with_capacity(raw.len() + 16));
            w.write_all(raw)?;
            (Codec::Stored, w.finish()?, 0)
        }
    };
    let header = RecordHeader {
        key: meta.key,
        codec,
        raw_len,
        stored_len: content.len() as u64,
        crc32c,
        mtime: meta.mtime,
        mode: meta.mode,
        content_type: meta.content_type,
        dict_id,
    };
    let mut out = container.record_prefix(&header)?;
    out.reserve(content.len() + 8);
    out.extend_from_slice(&content);
    if container == Container::Gzip {
        let mut crc = flate2::Crc::new();
        crc.update(raw);
        out.extend(container.record_suffix(crc.sum(), raw_len));
    }
    Ok((header, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_record;

    fn meta() -> RecordMeta {
        RecordMeta {
            key: "a/b.txt".into(),
            mtime: Timestamp { secs: 1_600_000_000, nanos: 5 },
            mode: 0o644,
            content_type: Some("text/plain".into()),
        }
    }

    pub(crate) fn noise(n: usize) -> Vec<u8> {
        haypack_testkit::noise(n, 0)
    }

    fn compressions() -> Vec<Compression> {
        vec![
            Compression::default(),
            Compression { container: Container::Gzip, level: 6, compress: true },
            Compression { container: Container::Zstd, level: 1, compress: false },
            Compression { container: Container::Gzip, level: 6, compress: false },
        ]
    }

    #[test]
    fn records_round_trip_in_every_container() {
        let text = b"hello haypack ".repeat(1000);
        let noise = noise(5000);
        for c in compressions() {
            for raw in [&b""[..], b"x", &text, &noise] {
                let (h, bytes) = encode_record(c, meta(), raw).unwrap();
                let (h2, out) = decode_record(&bytes).unwrap();
                assert_eq!(h, h2);
                assert_eq!(out, raw);
            }
        }
    }

    #[test]
    fn incompressible_content_is_stored_and_text_is_not() {
        let noise = noise(5000);
        let (h, _) = encode_record(Compression::default(), meta(), &noise).unwrap();
        assert_eq!(h.codec, Codec::Stored);
        let (h, _) = encode_record(Compression::default(), meta(), &b"abc".repeat(100)).unwrap();
        assert_eq!(h.codec, Codec::Zstd);
    }

    #[test]
    fn streamed_and_in_memory_encodings_decode_alike() {
        let raw = b"0123456789".repeat(50_000);
        for c in compressions() {
            let codec = if c.compress { c.container.codec() } else { Codec::Stored };
            let mut e = ContentEncoder::new(c.container, codec, c.level, Some(raw.len() as u64), Vec::new()).unwrap();
            e.write_all(&raw).unwrap();
            let (content, s) = e.finish().unwrap();
            assert_eq!(s.stored_len, content.len() as u64);
            let header = RecordHeader {
                key: "k".into(),
                codec,
                raw_len: s.raw_len,
                stored_len: s.stored_len,
                crc32c: s.crc32c,
                mtime: Timestamp::default(),
                mode: 0o600,
                content_type: None,
                dict_id: 0,
            };
            let mut record = c.container.record_prefix(&header).unwrap();
            record.extend(content);
            record.extend(c.container.record_suffix(s.crc32_ieee, s.raw_len));
            assert_eq!(decode_record(&record).unwrap().1, raw);
        }
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let raw = b"the quick brown fox jumps over the lazy dog ".repeat(20);
        for c in compressions() {
            let (_, bytes) = encode_record(c, meta(), &raw).unwrap();
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x10;
                match decode_record(&bad) {
                    Err(_) => {}
                    // A flip in a field the content does not depend on (mtime, mode, type, an
                    // unused frame bit) still decodes, to the right bytes; the reader catches
                    // header fields by comparing the header with the index.
                    Ok((_, out)) => assert_eq!(out, raw, "{c:?} byte {i}"),
                }
            }
        }
    }

    #[test]
    fn truncation_is_reported() {
        let (_, bytes) = encode_record(Compression::default(), meta(), &b"abc".repeat(100)).unwrap();
        let err = decode_record(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
    }
}

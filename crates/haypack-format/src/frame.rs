//! Containers: how records and metadata are framed so that a pack is a standard zstd stream or a
//! standard multi-member gzip file.
//!
//! In a zstd pack, metadata (record headers, the pack index, the footer) lives in zstd skippable
//! frames, which every zstd decoder steps over, and each record's content is one ordinary zstd
//! frame. In a gzip pack, each record is one gzip member carrying its header in the gzip extra
//! field; metadata rides in the extra field of empty members.

use crate::bytes::Reader;
use crate::error::{Error, Result, corrupt};
use crate::header::{Codec, RecordHeader};

/// zstd skippable frame magic of a record header (the low nibble is ours to choose).
pub const ZSTD_RECORD_MAGIC: u32 = 0x184D_2A5B;
/// zstd skippable frame magic of the pack index.
pub const ZSTD_INDEX_MAGIC: u32 = 0x184D_2A5C;
/// zstd skippable frame magic of the pack footer.
pub const ZSTD_FOOTER_MAGIC: u32 = 0x184D_2A5D;
/// The magic number of an ordinary zstd frame.
pub const ZSTD_FRAME_MAGIC: u32 = 0xFD2F_B528;

/// gzip extra-field subfield ids (SI1, SI2) of a record header, the pack index and the footer.
pub const GZIP_RECORD_ID: [u8; 2] = *b"HR";
/// See [`GZIP_RECORD_ID`].
pub const GZIP_INDEX_ID: [u8; 2] = *b"HI";
/// See [`GZIP_RECORD_ID`].
pub const GZIP_FOOTER_ID: [u8; 2] = *b"HF";

/// Fixed gzip member header: ID1 ID2, CM = deflate, FLG = FEXTRA, MTIME = 0, XFL = 0, OS = 255.
const GZIP_HEAD: [u8; 10] = [0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff];
/// The deflate encoding of nothing: one final fixed-Huffman block holding only end-of-block.
const DEFLATE_EMPTY: [u8; 2] = [0x03, 0x00];
/// Largest payload of one gzip extra subfield (XLEN is a u16 and includes the 4-byte subheader).
pub const GZIP_MAX_SUBFIELD: usize = 65_535 - 4;

/// Largest raw block of a zstd frame (`Block_Maximum_Size` for a 128 KiB window).
const ZSTD_RAW_BLOCK: u64 = 128 * 1024;
/// Largest deflate stored block.
const DEFLATE_STORED_BLOCK: u64 = 65_535;

/// The kind of metadata frame, for [`Container::meta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    /// The pack's trailing index.
    Index,
    /// The pack's fixed-size footer.
    Footer,
}

/// The standard file format a pack is, and so how its records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// A zstd stream: `zstd -dc pack` prints every record's content.
    Zstd,
    /// A multi-member gzip file: `gzip -dc pack` prints every record's content.
    Gzip,
}

impl Container {
    /// The byte that stands for the container in a pack footer.
    pub fn to_byte(self) -> u8 {
        match self {
            Container::Zstd => 1,
            Container::Gzip => 2,
        }
    }

    /// The container a footer byte stands for.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Container::Zstd),
            2 => Ok(Container::Gzip),
            _ => Err(corrupt("pack footer", format!("unknown container {b}"))),
        }
    }

    /// The container's name, also the pack file's extension.
    pub fn name(self) -> &'static str {
        match self {
            Container::Zstd => "zst",
            Container::Gzip => "gz",
        }
    }

    /// The codec that compresses in this container.
    pub fn codec(self) -> Codec {
        match self {
            Container::Zstd => Codec::Zstd,
            Container::Gzip => Codec::Gzip,
        }
    }

    /// Whether `codec` may appear in this container.
    pub fn allows(self, codec: Codec) -> bool {
        codec == Codec::Stored || codec == self.codec()
    }

    /// The bytes in front of a record's encoded content: its header, framed.
    pub fn record_prefix(self, header: &RecordHeader) -> Result<Vec<u8>> {
        if !self.allows(header.codec) {
            return Err(Error::Unencodable {
                what: "record",
                detail: format!("codec {} in a {} pack", header.codec.name(), self.name()),
            });
        }
        let payload = header.encode()?;
        Ok(match self {
            Container::Zstd => skippable(ZSTD_RECORD_MAGIC, &payload),
            Container::Gzip => gzip_head(GZIP_RECORD_ID, &payload),
        })
    }

    /// The bytes after a record's encoded content: the gzip trailer (CRC-32 and size of the raw
    /// content), or nothing for zstd.
    pub fn record_suffix(self, crc32_ieee: u32, raw_len: u64) -> Vec<u8> {
        match self {
            Container::Zstd => Vec::new(),
            Container::Gzip => gzip_trailer(crc32_ieee, raw_len),
        }
    }

    /// Frames a metadata payload so that decompressors skip it.
    pub fn meta(self, kind: Meta, payload: &[u8]) -> Vec<u8> {
        match self {
            Container::Zstd => skippable(
                match kind {
                    Meta::Index => ZSTD_INDEX_MAGIC,
                    Meta::Footer => ZSTD_FOOTER_MAGIC,
                },
                payload,
            ),
            Container::Gzip => {
                let id = match kind {
                    Meta::Index => GZIP_INDEX_ID,
                    Meta::Footer => GZIP_FOOTER_ID,
                };
                let mut out = Vec::with_capacity(payload.len() + 32);
                // A payload larger than one extra field spans several empty members; an empty
                // payload is still one member so the frame is never absent.
                let mut chunks = payload.chunks(GZIP_MAX_SUBFIELD).peekable();
                if chunks.peek().is_none() {
                    out.extend(empty_member(id, &[]));
                }
                for chunk in chunks {
                    out.extend(empty_member(id, chunk));
                }
                out
            }
        }
    }

    /// Recovers a metadata payload from the bytes [`Container::meta`] wrote.
    pub fn unmeta(self, kind: Meta, framed: &[u8]) -> Result<Vec<u8>> {
        let what = match kind {
            Meta::Index => "pack index",
            Meta::Footer => "pack footer",
        };
        let mut r = Reader::new(framed, what);
        match self {
            Container::Zstd => {
                let magic = match kind {
                    Meta::Index => ZSTD_INDEX_MAGIC,
                    Meta::Footer => ZSTD_FOOTER_MAGIC,
                };
                let found = r.u32()?;
                if found != magic {
                    return Err(corrupt(what, format!("frame magic {found:#010x}, expected {magic:#010x}")));
                }
                let len = r.u32()?;
                let payload = r.take(u64::from(len))?.to_vec();
                r.finish()?;
                Ok(payload)
            }
            Container::Gzip => {
                let id = match kind {
                    Meta::Index => GZIP_INDEX_ID,
                    Meta::Footer => GZIP_FOOTER_ID,
                };
                let mut payload = Vec::with_capacity(framed.len());
                while !r.remaining().is_empty() {
                    payload.extend_from_slice(read_gzip_head(&mut r, id, what)?);
                    if r.take(2)? != DEFLATE_EMPTY || r.take(8)? != [0; 8] {
                        return Err(corrupt(what, "metadata member is not empty"));
                    }
                }
                Ok(payload)
            }
        }
    }

    /// The length of a record's content when stored without compression.
    pub fn stored_len(self, raw_len: u64) -> u64 {
        match self {
            Container::Zstd => (6 + 3 * raw_len.div_ceil(ZSTD_RAW_BLOCK).max(1)).saturating_add(raw_len),
            Container::Gzip => (5 * raw_len.div_ceil(DEFLATE_STORED_BLOCK).max(1)).saturating_add(raw_len),
        }
    }
}

/// A record's framing as found at the start of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFrame {
    /// The container the record is framed for, told by its first bytes.
    pub container: Container,
    /// The decoded header.
    pub header: RecordHeader,
    /// Bytes from the record's start to its encoded content.
    pub prefix_len: u64,
    /// Bytes after the content (the gzip trailer).
    pub suffix_len: u64,
}

impl RecordFrame {
    /// The record's total length: prefix, content and suffix.
    pub fn record_len(&self) -> u64 {
        self.prefix_len + self.header.stored_len + self.suffix_len
    }

    /// Parses the framing at the start of `bytes`, which must hold at least the whole prefix
    /// (header); the content need not be there.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "record");
        let (container, payload) = match bytes.get(..4) {
            Some(m) if m == ZSTD_RECORD_MAGIC.to_le_bytes() => {
                r.u32()?;
                let len = r.u32()?;
                (Container::Zstd, r.take(u64::from(len))?)
            }
            Some([0x1f, 0x8b, ..]) => (Container::Gzip, read_gzip_head(&mut r, GZIP_RECORD_ID, "record")?),
            _ => {
                return Err(Error::NotHaypack {
                    what: "record",
                    detail: format!("starts with {:02x?}", &bytes[..bytes.len().min(4)]),
                });
            }
        };
        let header = RecordHeader::decode(payload)?;
        if !container.allows(header.codec) {
            return Err(corrupt("record", format!("codec {} in a {} record", header.codec.name(), container.name())));
        }
        let suffix_len = match container {
            Container::Zstd => 0,
            Container::Gzip => 8,
        };
        let prefix_len = r.position() as u64;
        // `record_len` adds the three lengths; a stored length near 2^64 must not wrap it.
        if header.stored_len.checked_add(prefix_len + suffix_len).is_none() {
            return Err(corrupt("record", format!("stored length {} ends past any pack", header.stored_len)));
        }
        Ok(RecordFrame { container, header, prefix_len, suffix_len })
    }
}

fn skippable(magic: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn gzip_head(id: [u8; 2], payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= GZIP_MAX_SUBFIELD);
    let mut out = Vec::with_capacity(16 + payload.len());
    out.extend_from_slice(&GZIP_HEAD);
    out.extend_from_slice(&((payload.len() + 4) as u16).to_le_bytes());
    out.extend_from_slice(&id);
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn gzip_trailer(crc32_ieee: u32, raw_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.extend_from_slice(&crc32_ieee.to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes()); // ISIZE is the length mod 2^32
    out
}

fn empty_member(id: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut out = gzip_head(id, payload);
    out.extend_from_slice(&DEFLATE_EMPTY);
    out.extend_from_slice(&gzip_trailer(0, 0));
    out
}

/// Reads a gzip member header written by [`gzip_head`] and returns its one subfield's payload.
fn read_gzip_head<'a>(r: &mut Reader<'a>, id: [u8; 2], what: &'static str) -> Result<&'a [u8]> {
    let head: [u8; 10] = r.array()?;
    if head[..4] != GZIP_HEAD[..4] {
        return Err(Error::NotHaypack {
            what,
            detail: format!("gzip member header {:02x?} is not haypack's", &head[..4]),
        });
    }
    let xlen = r.u16()?;
    let found: [u8; 2] = r.array()?;
    let len = r.u16()?;
    if found != id || xlen != len.wrapping_add(4) {
        return Err(corrupt(what, format!("gzip extra field {found:02x?} is not the expected {id:02x?}")));
    }
    r.take(u64::from(len))
}

/// Writes content without compressing it, framed so the container's decoder reads it: zstd raw
/// blocks or deflate stored blocks. Its output length is [`Container::stored_len`].
#[derive(Debug)]
pub struct StoredWriter<W: std::io::Write> {
    inner: W,
    container: Container,
    pending: Vec<u8>,
    started: bool,
}

impl<W: std::io::Write> StoredWriter<W> {
    /// Starts stored content for `container`, written to `inner`.
    pub fn new(container: Container, inner: W) -> Self {
        StoredWriter { inner, container, pending: Vec::new(), started: false }
    }

    fn block_size(&self) -> usize {
        match self.container {
            Container::Zstd => ZSTD_RAW_BLOCK as usize,
            Container::Gzip => DEFLATE_STORED_BLOCK as usize,
        }
    }

    fn emit(&mut self, last: bool) -> std::io::Result<()> {
        if !self.started {
            self.started = true;
            if self.container == Container::Zstd {
                // Frame header: magic, descriptor 0 (no content size, no checksum, no
                // dictionary, not single-segment), window descriptor 0x38 = a 128 KiB window.
                self.inner.write_all(&ZSTD_FRAME_MAGIC.to_le_bytes())?;
                self.inner.write_all(&[0x00, 0x38])?;
            }
        }
        let n = self.pending.len();
        match self.container {
            Container::Zstd => {
                // Block header: Last_Block bit, Block_Type 0 (raw), Block_Size.
                let h = (n as u32) << 3 | u32::from(last);
                self.inner.write_all(&h.to_le_bytes()[..3])?;
            }
            Container::Gzip => {
                self.inner.write_all(&[u8::from(last)])?; // BFINAL, BTYPE = 00, padding
                self.inner.write_all(&(n as u16).to_le_bytes())?;
                self.inner.write_all(&(!(n as u16)).to_le_bytes())?;
            }
        }
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the final block and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.emit(true)?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for StoredWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let block = self.block_size();
        if self.pending.len() == block {
            self.emit(false)?;
        }
        let n = buf.len().min(block - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn stored(container: Container, data: &[u8]) -> Vec<u8> {
        let mut w = StoredWriter::new(container, Vec::new());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn stored_content_is_readable_by_stock_decoders() {
        for n in [0, 1, 65_535, 65_536, 131_072, 131_073, 300_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let z = stored(Container::Zstd, &data);
            assert_eq!(z.len() as u64, Container::Zstd.stored_len(n as u64), "zstd {n}");
            assert_eq!(zstd::decode_all(&z[..]).unwrap(), data);
            let d = stored(Container::Gzip, &data);
            assert_eq!(d.len() as u64, Container::Gzip.stored_len(n as u64), "gzip {n}");
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(&d[..]).read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn meta_frames_round_trip_and_are_skipped_by_gzip() {
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        for c in [Container::Zstd, Container::Gzip] {
            for payload in [&b""[..], b"footer", &big] {
                let framed = c.meta(Meta::Index, payload);
                assert_eq!(c.unmeta(Meta::Index, &framed).unwrap(), payload);
                assert!(c.unmeta(Meta::Footer, &framed).is_err());
            }
        }
        let framed = Container::Gzip.meta(Meta::Index, &big);
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&framed[..]).read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn record_lengths_that_wrap_are_corrupt() {
        // Found by the `record` fuzz target: `record_len` overflowed.
        for c in [Container::Zstd, Container::Gzip] {
            let header = RecordHeader {
                key: "k".into(),
                codec: Codec::Stored,
                raw_len: 0,
                stored_len: u64::MAX,
                crc32c: 0,
                mtime: crate::header::Timestamp::default(),
                mode: 0,
                content_type: None,
                dict_id: 0,
            };
            let bytes = c.record_prefix(&header).unwrap();
            assert!(matches!(RecordFrame::parse(&bytes), Err(Error::Corrupt { .. })), "{c:?}");
            assert!(matches!(crate::decode_record(&bytes), Err(Error::Corrupt { .. })), "{c:?}");
        }
    }

    #[test]
    fn foreign_bytes_are_not_haypack() {
        assert!(matches!(RecordFrame::parse(b"PK\x03\x04 zip"), Err(Error::NotHaypack { .. })));
        assert!(matches!(RecordFrame::parse(b"\x1f\x8b\x08\x00abcdefgh"), Err(Error::NotHaypack { .. })));
    }
}

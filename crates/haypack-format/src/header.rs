//! The record header: what a pack says about each record, in front of its content.

use crate::bytes::{Reader, put_bytes, put_varint, put_zigzag};
use crate::error::{Error, Result, corrupt};

/// The longest key haypack stores, in bytes. It keeps a record header inside one gzip extra
/// field (64 KiB) and well inside any S3 key limit once prefixed.
pub const MAX_KEY_LEN: usize = 4096;

/// How a record's content is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Not compressed: wrapped in the pack's container without compression (zstd raw blocks or
    /// deflate stored blocks), because compressing did not pay.
    Stored,
    /// A zstd frame.
    Zstd,
    /// A deflate stream inside a gzip member.
    Gzip,
}

impl Codec {
    /// The byte that stands for this codec in a record header.
    pub fn to_byte(self) -> u8 {
        match self {
            Codec::Stored => 0,
            Codec::Zstd => 1,
            Codec::Gzip => 2,
        }
    }

    /// The codec a record header byte stands for.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            0 => Ok(Codec::Stored),
            1 => Ok(Codec::Zstd),
            2 => Ok(Codec::Gzip),
            _ => Err(corrupt("record header", format!("unknown codec {b}"))),
        }
    }

    /// The codec's name as the CLI and manifest spell it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Stored => "stored",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }
}

/// A modification time: seconds since the Unix epoch (negative before it) and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds past `secs`, below 1,000,000,000.
    pub nanos: u32,
}

impl Timestamp {
    /// The time as a `SystemTime`, if it is representable.
    pub fn to_system_time(self) -> Option<std::time::SystemTime> {
        let base = std::time::UNIX_EPOCH;
        let nanos = std::time::Duration::from_nanos(u64::from(self.nanos));
        if self.secs >= 0 {
            base.checked_add(std::time::Duration::from_secs(self.secs as u64))?.checked_add(nanos)
        } else {
            base.checked_sub(std::time::Duration::from_secs(self.secs.unsigned_abs()))?.checked_add(nanos)
        }
    }

    /// The timestamp of a `SystemTime` (clamped to what `i64` seconds can hold).
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp { secs: d.as_secs().min(i64::MAX as u64) as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let secs = -(d.as_secs().min(i64::MAX as u64) as i64);
                match d.subsec_nanos() {
                    0 => Timestamp { secs, nanos: 0 },
                    n => Timestamp { secs: secs - 1, nanos: 1_000_000_000 - n },
                }
            }
        }
    }

    pub(crate) fn encode(self, out: &mut Vec<u8>, prev_secs: i64) {
        put_zigzag(out, self.secs.wrapping_sub(prev_secs));
        put_varint(out, u64::from(self.nanos));
    }

    pub(crate) fn decode(r: &mut Reader<'_>, prev_secs: i64) -> Result<Self> {
        let secs = prev_secs.wrapping_add(r.zigzag()?);
        let nanos = r.varint_u32()?;
        if nanos >= 1_000_000_000 {
            return Err(corrupt("timestamp", format!("{nanos} nanoseconds is not below one second")));
        }
        Ok(Timestamp { secs, nanos })
    }
}

/// Content types common enough to be stored as one byte. The table is part of format v1: codes
/// may be appended in a later version, never changed. Any other type is stored as a string.
const CONTENT_TYPES: &[&str] = &[
    "application/octet-stream",
    "text/plain",
    "text/html",
    "text/css",
    "text/csv",
    "text/markdown",
    "text/xml",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-tar",
    "application/wasm",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/svg+xml",
    "image/x-icon",
    "audio/mpeg",
    "audio/ogg",
    "video/mp4",
    "video/webm",
    "font/woff2",
    "text/javascript",
    "application/x-sh",
    "text/x-c",
];

const CONTENT_TYPE_STRING: u8 = 0xff;

pub(crate) fn put_content_type(out: &mut Vec<u8>, ct: Option<&str>) {
    match ct {
        None => out.push(0),
        Some(s) => match CONTENT_TYPES.iter().position(|t| *t == s) {
            Some(i) => out.push(i as u8 + 1),
            None => {
                out.push(CONTENT_TYPE_STRING);
                put_bytes(out, s.as_bytes());
            }
        },
    }
}

pub(crate) fn read_content_type(r: &mut Reader<'_>) -> Result<Option<String>> {
    Ok(content_type_ref(r)?.map(str::to_owned))
}

/// A content type as [`put_content_type`] wrote it, borrowed from the input or the table.
pub(crate) fn content_type_ref<'a>(r: &mut Reader<'a>) -> Result<Option<&'a str>> {
    match r.u8()? {
        0 => Ok(None),
        CONTENT_TYPE_STRING => Ok(Some(r.str()?)),
        code => match CONTENT_TYPES.get(usize::from(code) - 1) {
            Some(t) => Ok(Some(t)),
            None => Err(corrupt("content type", format!("unknown content type code {code}"))),
        },
    }
}

/// Checks that `key` can name a record: non-empty UTF-8 of at most [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::Unencodable {
            what: "key",
            detail: format!("a key must be 1 to {MAX_KEY_LEN} bytes, this one is {}", key.len()),
        });
    }
    Ok(())
}

/// Everything a pack stores about one record besides its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// The record's key: the file's path relative to the packed tree, `/`-separated.
    pub key: String,
    /// How the content is encoded.
    pub codec: Codec,
    /// Length of the content as the user sees it.
    pub raw_len: u64,
    /// Length of the encoded content that follows the header (for gzip: the deflate stream).
    pub stored_len: u64,
    /// CRC-32C (Castagnoli) of the raw content.
    pub crc32c: u32,
    /// The file's modification time.
    pub mtime: Timestamp,
    /// The file's Unix permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// The record's media type, if known.
    pub content_type: Option<String>,
    /// The zstd dictionary the content was compressed with; 0 for none. Reserved in v1: always 0.
    pub dict_id: u32,
}

impl RecordHeader {
    /// Encodes the header's fields (the payload that the container then frames).
    pub fn encode(&self) -> Result<Vec<u8>> {
        check_key(&self.key)?;
        let mut out = Vec::with_capacity(24 + self.key.len());
        out.push(0); // flags: none defined in v1
        out.push(self.codec.to_byte());
        put_bytes(&mut out, self.key.as_bytes());
        put_varint(&mut out, self.raw_len);
        put_varint(&mut out, self.stored_len);
        out.extend_from_slice(&self.crc32c.to_le_bytes());
        self.mtime.encode(&mut out, 0);
        put_varint(&mut out, u64::from(self.mode));
        put_content_type(&mut out, self.content_type.as_deref());
        put_varint(&mut out, u64::from(self.dict_id));
        Ok(out)
    }

    /// Decodes a header payload; every byte must belong to it.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "record header");
        let flags = r.u8()?;
        if flags != 0 {
            return Err(corrupt("record header", format!("unknown flags {flags:#04x}")));
        }
        let codec = Codec::from_byte(r.u8()?)?;
        let key = r.str()?.to_owned();
        check_key(&key).map_err(|e| corrupt("record header", e.to_string()))?;
        let header = RecordHeader {
            key,
            codec,
            raw_len: r.varint()?,
            stored_len: r.varint()?,
            crc32c: r.u32()?,
            mtime: Timestamp::decode(&mut r, 0)?,
            mode: r.varint_u32()?,
            content_type: read_content_type(&mut r)?,
            dict_id: r.varint_u32()?,
        };
        r.finish()?;
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> RecordHeader {
        RecordHeader {
            key: "photos/2024/cat.jpg".into(),
            codec: Codec::Zstd,
            raw_len: 12345,
            stored_len: 6789,
            crc32c: 0xdead_beef,
            mtime: Timestamp { secs: 1_700_000_000, nanos: 123 },
            mode: 0o644,
            content_type: Some("image/jpeg".into()),
            dict_id: 0,
        }
    }

    #[test]
    fn header_round_trips_and_is_small() {
        let h = sample();
        let bytes = h.encode().unwrap();
        assert_eq!(RecordHeader::decode(&bytes).unwrap(), h);
        // flags, codec, key, lengths, crc, mtime, mode, type code, dict id
        assert_eq!(bytes.len(), 2 + 1 + h.key.len() + 2 + 2 + 4 + 5 + 1 + 2 + 1 + 1);
    }

    #[test]
    fn unknown_content_type_is_a_string() {
        let mut h = sample();
        h.content_type = Some("application/x-haypack-test".into());
        let bytes = h.encode().unwrap();
        assert_eq!(RecordHeader::decode(&bytes).unwrap(), h);
        h.content_type = None;
        assert_eq!(RecordHeader::decode(&h.encode().unwrap()).unwrap(), h);
    }

    #[test]
    fn bad_headers_are_named_errors() {
        let mut bytes = sample().encode().unwrap();
        bytes[1] = 9;
        assert!(matches!(RecordHeader::decode(&bytes), Err(Error::Corrupt { .. })));
        let bytes = sample().encode().unwrap();
        assert!(matches!(RecordHeader::decode(&bytes[..10]), Err(Error::Truncated { .. })));
        let mut h = sample();
        h.key = String::new();
        assert!(matches!(h.encode(), Err(Error::Unencodable { .. })));
    }

    #[test]
    fn timestamps_convert_both_ways() {
        for t in [
            Timestamp { secs: 0, nanos: 0 },
            Timestamp { secs: 1_700_000_000, nanos: 999_999_999 },
            Timestamp { secs: -5, nanos: 250 },
        ] {
            let st = t.to_system_time().unwrap();
            assert_eq!(Timestamp::from_system_time(st), t);
        }
    }
}

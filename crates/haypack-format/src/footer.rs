//! The fixed-size footer that ends every pack and leads to its trailing index.

use crate::bytes::Reader;
use crate::error::{Error, Result, corrupt};
use crate::frame::{Container, Meta};

/// The footer's magic: 0x89, "HPK", CR LF, SUB, LF — binary-looking, and mangled recognisably by
/// line-ending conversion, like PNG's signature.
pub const FOOTER_MAGIC: [u8; 8] = [0x89, b'H', b'P', b'K', 0x0d, 0x0a, 0x1a, 0x0a];
/// The pack format version this build writes.
pub const PACK_VERSION: u16 = 1;
/// Length of the footer's payload.
pub const FOOTER_LEN: usize = 44;
/// Bytes to read from a pack's end to be sure to hold its footer, in either container.
pub const FOOTER_TAIL: usize = 70;
/// Fewer bytes than any record takes: 8 of framing, a header of at least 15 (a one-byte key, every
/// number one byte, the CRC four) and the content's own framing. Records tile a pack up to its
/// index, so a footer counting more records than this allows is corrupt.
const MIN_RECORD_LEN: u64 = 24;
/// The most a pack index's columns take per record besides key and content type, decompressed:
/// a pack id, an offset, three lengths, a time and a mode, each a varint of at most 10 bytes.
const MAX_COLUMNS_PER_RECORD: u64 = 80;

/// What a pack's footer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The pack's container.
    pub container: Container,
    /// Number of records in the pack.
    pub records: u64,
    /// Offset of the framed pack index from the pack's start.
    pub index_offset: u64,
    /// Length of the framed pack index.
    pub index_len: u64,
    /// CRC-32C of the pack index payload (after unframing).
    pub index_crc32c: u32,
}

impl Footer {
    /// The footer, framed for its container: the last bytes of a pack.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(FOOTER_LEN);
        p.extend_from_slice(&FOOTER_MAGIC);
        p.extend_from_slice(&PACK_VERSION.to_le_bytes());
        p.push(self.container.to_byte());
        p.push(0);
        p.extend_from_slice(&self.index_crc32c.to_le_bytes());
        p.extend_from_slice(&self.index_offset.to_le_bytes());
        p.extend_from_slice(&self.index_len.to_le_bytes());
        p.extend_from_slice(&self.records.to_le_bytes());
        p.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
        debug_assert_eq!(p.len(), FOOTER_LEN);
        self.container.meta(Meta::Footer, &p)
    }

    /// Finds and decodes the footer at the end of `tail`, the last bytes of a pack of
    /// `pack_len` bytes (at least [`FOOTER_TAIL`] of them, or the whole pack if shorter).
    pub fn decode(tail: &[u8], pack_len: u64) -> Result<Self> {
        // Where the payload sits in each container's footer frame, counted from the end.
        let zstd = (tail.len().checked_sub(FOOTER_LEN), 8);
        let gzip = (tail.len().checked_sub(FOOTER_LEN + 10), 16);
        let candidates = [(Container::Zstd, zstd), (Container::Gzip, gzip)];
        let found = candidates.iter().find_map(|&(c, (start, head))| {
            let start = start?;
            let payload = &tail[start..start + FOOTER_LEN];
            (payload[..8] == FOOTER_MAGIC).then_some((c, start.checked_sub(head)?, payload))
        });
        let Some((container, frame_start, payload)) = found else {
            if tail.len() < FOOTER_LEN {
                return Err(Error::NotHaypack {
                    what: "pack",
                    detail: format!("{pack_len} bytes is too short to hold a footer"),
                });
            }
            return Err(Error::NotHaypack {
                what: "pack",
                detail: "no haypack footer at its end (is it truncated, or not a pack?)".into(),
            });
        };
        let frame = &tail[frame_start..];
        // The frame must hold exactly the payload found above: gzip members of other sizes can
        // also add up to a footer frame's length and put the magic in the same place.
        if container.unmeta(Meta::Footer, frame)? != payload {
            return Err(corrupt("pack footer", "footer frame does not hold exactly one footer"));
        }
        let mut r = Reader::new(payload, "pack footer");
        r.take(8)?;
        let version = r.u16()?;
        if version > PACK_VERSION {
            return Err(Error::NewerVersion { what: "pack", found: version.into(), supported: PACK_VERSION.into() });
        }
        let stated = Container::from_byte(r.u8()?)?;
        let _reserved = r.u8()?;
        let footer = Footer {
            container: stated,
            index_crc32c: r.u32()?,
            index_offset: r.u64()?,
            index_len: r.u64()?,
            records: r.u64()?,
        };
        let crc = r.u32()?;
        let computed = crc32c::crc32c(&payload[..FOOTER_LEN - 4]);
        if crc != computed {
            return Err(Error::Checksum { what: "pack footer", expected: crc, found: computed });
        }
        if stated != container {
            return Err(corrupt("pack footer", "container byte disagrees with the footer's framing"));
        }
        let Some(footer_start) = pack_len.checked_sub((tail.len() - frame_start) as u64) else {
            return Err(corrupt("pack footer", format!("{} bytes of tail, but the pack has {pack_len}", tail.len())));
        };
        if footer.index_offset.checked_add(footer.index_len) != Some(footer_start) {
            return Err(corrupt(
                "pack footer",
                format!(
                    "index at {}+{} does not end where the footer starts ({footer_start})",
                    footer.index_offset, footer.index_len
                ),
            ));
        }
        if footer.records.checked_mul(MIN_RECORD_LEN).is_none_or(|least| least > footer.index_offset) {
            return Err(corrupt(
                "pack footer",
                format!("{} records cannot fit in the {} bytes before the index", footer.records, footer.index_offset),
            ));
        }
        Ok(footer)
    }

    /// The most the pack's own index may take while [`crate::decode_block`] decodes it. Each
    /// record holds its key and content type in its header, so those add up to at most the
    /// bytes before the index; each entry adds its `Entry` and at most
    /// `MAX_COLUMNS_PER_RECORD` decompressed bytes. A footer that decoded bounds the records
    /// by those bytes too, so the limit is a small multiple of what the pack really holds,
    /// however its index is forged.
    pub fn index_limit(&self) -> usize {
        let per_record = size_of::<crate::Entry>() as u64 + MAX_COLUMNS_PER_RECORD;
        let limit = self.index_offset.saturating_mul(2).saturating_add(self.records.saturating_mul(per_record));
        usize::try_from(limit).unwrap_or(usize::MAX)
    }

    /// The length of the framed footer in this footer's container.
    pub fn framed_len(&self) -> u64 {
        match self.container {
            Container::Zstd => 8 + FOOTER_LEN as u64,
            Container::Gzip => 26 + FOOTER_LEN as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer(container: Container) -> Footer {
        Footer { container, records: 7, index_offset: 1000, index_len: 234, index_crc32c: 0xabcd }
    }

    #[test]
    fn footers_round_trip_at_the_end_of_a_pack() {
        for c in [Container::Zstd, Container::Gzip] {
            let f = footer(c);
            let bytes = f.encode();
            assert_eq!(bytes.len() as u64, f.framed_len());
            assert!(bytes.len() <= FOOTER_TAIL);
            let mut pack = vec![7u8; 1234];
            pack.extend(&bytes);
            let tail = &pack[pack.len() - FOOTER_TAIL..];
            assert_eq!(Footer::decode(tail, pack.len() as u64).unwrap(), f);
        }
    }

    #[test]
    fn bad_footers_get_named_errors() {
        let mut pack = vec![0u8; 1234];
        pack.extend(footer(Container::Zstd).encode());
        let len = pack.len() as u64;
        let tail = |p: &[u8]| p[p.len() - FOOTER_TAIL..].to_vec();

        let mut flipped = pack.clone();
        let n = flipped.len();
        flipped[n - 10] ^= 1;
        assert!(matches!(Footer::decode(&tail(&flipped), len), Err(Error::Checksum { .. })));

        let mut newer = pack.clone();
        newer[n - FOOTER_LEN + 8] = 2;
        assert!(matches!(Footer::decode(&tail(&newer), len), Err(Error::NewerVersion { found: 2, .. })));

        assert!(matches!(Footer::decode(&[0u8; 70], 70), Err(Error::NotHaypack { .. })));
        assert!(matches!(Footer::decode(b"tiny", 4), Err(Error::NotHaypack { .. })));
        let truncated = &pack[..pack.len() - 1];
        assert!(matches!(Footer::decode(&tail(truncated), len - 1), Err(Error::NotHaypack { .. })));
    }

    #[test]
    fn numbers_a_footer_cannot_hold_are_corrupt() {
        // More records than the bytes before the index can hold: an index decoded by that count
        // would be sized by a number, not by bytes.
        let f = Footer { records: 1000 / MIN_RECORD_LEN + 1, ..footer(Container::Zstd) };
        let mut pack = vec![0u8; 1234];
        pack.extend(f.encode());
        let tail = &pack[pack.len() - FOOTER_TAIL..];
        assert!(matches!(Footer::decode(tail, pack.len() as u64), Err(Error::Corrupt { .. })));
        let f = Footer { records: u64::MAX, ..footer(Container::Gzip) };
        assert!(matches!(Footer::decode(&f.encode(), 1234 + f.framed_len()), Err(Error::Corrupt { .. })));
        // A tail longer than the pack it is said to end.
        let f = footer(Container::Zstd);
        assert!(matches!(Footer::decode(&f.encode(), 10), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn the_index_limit_grows_with_the_pack_not_with_its_claims() {
        let small = footer(Container::Zstd);
        let limit = small.index_limit();
        assert!((1000..8 << 10).contains(&limit), "{limit}");
        let huge = Footer { records: u64::MAX, index_offset: u64::MAX, ..small };
        assert_eq!(huge.index_limit(), usize::MAX);
    }

    #[test]
    fn a_footer_split_across_gzip_members_is_corrupt() {
        // Two members of 14 and 4 payload bytes frame 70 bytes, like one footer member, with the
        // footer magic where its payload would start; the second member's payload lands on the
        // footer's CRC. This used to trip a `debug_assert` (and was accepted in release builds).
        let mut first = FOOTER_MAGIC.to_vec();
        first.extend_from_slice(&PACK_VERSION.to_le_bytes());
        first.extend_from_slice(&[Container::Gzip.to_byte(), 0, 0, 0]);
        let mut frame = Container::Gzip.meta(Meta::Footer, &first);
        let crc = crc32c::crc32c(&[&frame[16..], &Container::Gzip.meta(Meta::Footer, &[0; 4])[..16]].concat());
        frame.extend(Container::Gzip.meta(Meta::Footer, &crc.to_le_bytes()));
        assert_eq!(frame.len(), 26 + FOOTER_LEN);
        // The index fields now hold the second member's header bytes: the index ends here.
        let index_end = u64::from_le_bytes(frame[32..40].try_into().unwrap())
            + u64::from_le_bytes(frame[40..48].try_into().unwrap());
        let pack_len = index_end + frame.len() as u64;
        assert!(matches!(Footer::decode(&frame, pack_len), Err(Error::Corrupt { .. })));
    }
}

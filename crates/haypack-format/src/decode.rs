//! Decoding a record's content with every check a reader owes its caller, in memory bounded by
//! [`Budget`] whatever the content decodes to: encoded bytes go in, and each call gives back at
//! most the caller's buffer of decoded bytes.

use crate::dict::Dictionary;
use crate::error::{Error, Result, corrupt};
use crate::frame::{Container, RecordFrame};
use crate::header::Codec;

/// What reading one record may hold in memory, whatever it decodes to: the one rule every path
/// that reads records follows (get, get_many and extract, verify, compact's checks, and the HTTP
/// gateway in each of its content codings).
///
/// A record whose stored *and* decoded lengths are both at most [`Budget::WHOLE`] is read with
/// one range read and decoded into one buffer: at most 2 × 16 MiB. Any other record is read in
/// chunks of at most [`Budget::CHUNK`] stored bytes and decoded [`Budget::STEP`] bytes at a time
/// by a [`RecordDecoder`], whose state is the codec's window (32 KiB for deflate; for zstd the
/// window the frame declares, refused past 2^[`Budget::ZSTD_WINDOW_LOG`] bytes, and 2–8 MiB at
/// the levels haypack packs with by default): at most [`Budget::PER_RECORD`] in all.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Budget;

impl Budget {
    /// The largest record, stored and decoded, read and decoded whole.
    pub const WHOLE: u64 = 16 << 20;
    /// The most stored bytes of a larger record held at once (a store may ask for less).
    pub const CHUNK: u64 = 8 << 20;
    /// The most decoded bytes one decoding step produces.
    pub const STEP: usize = 256 << 10;
    /// The largest zstd window accepted, as a power of two: zstd's own default limit (128 MiB),
    /// which every level up to 22 stays within.
    pub const ZSTD_WINDOW_LOG: u32 = 27;
    /// The most one record read holds: the larger of a whole record with its content, and a
    /// chunk, a step and the largest window.
    pub const PER_RECORD: u64 = {
        let streamed = Budget::CHUNK + Budget::STEP as u64 + (1 << Budget::ZSTD_WINDOW_LOG);
        let whole = 2 * Budget::WHOLE;
        if streamed > whole { streamed } else { whole }
    };

    /// Whether a record of `stored_len` bytes (framing included) that decodes to `raw_len` bytes
    /// is read and decoded whole.
    pub fn whole(stored_len: u64, raw_len: u64) -> bool {
        stored_len <= Budget::WHOLE && raw_len <= Budget::WHOLE
    }
}

/// The most one zstd block can expand per encoded byte: an RLE block is a 3-byte header and one
/// byte that stand for up to 128 KiB.
const ZSTD_MAX_RATIO: u64 = (128 << 10) / 4;
/// The most deflate can expand per encoded byte: a 258-byte match in two bits.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Refuses a header whose raw length its stored length cannot decode to, before anything is
/// sized by either.
fn check_plausible(frame: &RecordFrame) -> Result<()> {
    let h = &frame.header;
    let most = match (frame.container, h.codec) {
        (_, Codec::Stored) => h.stored_len,
        (Container::Zstd, _) => h.stored_len.saturating_mul(ZSTD_MAX_RATIO),
        (Container::Gzip, _) => h.stored_len.saturating_mul(DEFLATE_MAX_RATIO).saturating_add(1 << 10),
    };
    if h.raw_len > most {
        return Err(Error::Implausible {
            what: "record header",
            detail: format!(
                "raw length {} is more than {} stored bytes of {} can decode to ({most})",
                h.raw_len,
                h.stored_len,
                h.codec.name()
            ),
        });
    }
    Ok(())
}

enum Inner {
    Zstd(Box<zstd::stream::raw::Decoder<'static>>),
    Deflate(Box<flate2::Decompress>),
}

/// Decodes one record's content in bounded steps and proves at the end that it is exactly the
/// content its header describes: its length and CRC-32C, and for gzip the member trailer. Pure:
/// the caller brings the encoded bytes (everything after the record's prefix, in order, in
/// pieces of any size) and the output buffer.
pub struct RecordDecoder {
    frame: RecordFrame,
    inner: Inner,
    /// Encoded content bytes used.
    fed: u64,
    /// Decoded bytes produced.
    produced: u64,
    crc32c: u32,
    ieee: Option<flate2::Crc>,
    suffix: Vec<u8>,
    /// The codec saw its stream's end (and gave out all of it).
    ended: bool,
}

impl std::fmt::Debug for RecordDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordDecoder")
            .field("frame", &self.frame)
            .field("fed", &self.fed)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl RecordDecoder {
    /// Starts decoding the content of the record `frame`, with `dict` if the record names one.
    pub fn new(frame: RecordFrame, dict: Option<&Dictionary>) -> Result<Self> {
        let dict = check_dictionary(&frame, dict)?;
        check_plausible(&frame)?;
        let inner = match frame.container {
            Container::Zstd => {
                let mut d = zstd::stream::raw::Decoder::with_dictionary(dict.map_or(&[][..], |d| d.bytes()))?;
                d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(Budget::ZSTD_WINDOW_LOG))?;
                Inner::Zstd(Box::new(d))
            }
            Container::Gzip => Inner::Deflate(Box::new(flate2::Decompress::new(false))),
        };
        let ieee = (frame.container == Container::Gzip).then(flate2::Crc::new);
        Ok(RecordDecoder { frame, inner, fed: 0, produced: 0, crc32c: 0, ieee, suffix: Vec::new(), ended: false })
    }

    /// The framing the decoder checks against.
    pub fn frame(&self) -> &RecordFrame {
        &self.frame
    }

    /// Decodes from the front of `input`, advancing it past what was used, into `out`; returns
    /// how many bytes of `out` it filled. It fills less than all of `out` only once `input` is
    /// used up and nothing more comes out without more input: so a caller calls again (with the
    /// rest of `input`, or an empty one after the record's last byte) until it does.
    pub fn decode(&mut self, input: &mut &[u8], out: &mut [u8]) -> Result<usize> {
        let h = &self.frame.header;
        let (stored, raw_len) = (h.stored_len, h.raw_len);
        let mut written = 0;
        loop {
            let n = input.len().min((stored - self.fed).min(usize::MAX as u64) as usize);
            if self.ended {
                if n > 0 {
                    return Err(corrupt(
                        "record content",
                        format!("ends {} bytes before its stored length", stored - self.fed),
                    ));
                }
                break;
            }
            if written == out.len() {
                break;
            }
            // One byte of room past the raw length is enough to see content that runs longer.
            let room =
                (out.len() - written).min((raw_len - self.produced).saturating_add(1).min(usize::MAX as u64) as usize);
            let target = &mut out[written..written + room];
            let (used, made, ended) = self.run(&input[..n], target)?;
            if self.produced + made as u64 > raw_len {
                return Err(corrupt("record content", format!("decodes longer than its raw length {raw_len}")));
            }
            self.crc32c = crc32c::crc32c_append(self.crc32c, &target[..made]);
            if let Some(c) = &mut self.ieee {
                c.update(&target[..made]);
            }
            self.produced += made as u64;
            self.fed += used as u64;
            self.ended = ended;
            written += made;
            *input = &input[used..];
            if used == 0 && made == 0 && !ended {
                if n > 0 {
                    return Err(corrupt("record content", "the decoder stopped before the content's end"));
                }
                break;
            }
        }
        if self.fed == stored && !input.is_empty() {
            if self.suffix.len() + input.len() > self.frame.suffix_len as usize {
                return Err(corrupt("record", "more bytes than the header's lengths account for"));
            }
            self.suffix.extend_from_slice(input);
            *input = &[];
        }
        Ok(written)
    }

    /// One call of the codec: bytes used, bytes made, whether its stream ended.
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize, bool)> {
        match &mut self.inner {
            Inner::Zstd(d) => {
                use zstd::stream::raw::Operation;
                let s = d.run_on_buffers(input, out).map_err(|e| corrupt("record content", e.to_string()))?;
                Ok((s.bytes_read, s.bytes_written, s.remaining == 0))
            }
            Inner::Deflate(d) => {
                let (in0, out0) = (d.total_in(), d.total_out());
                let status = d
                    .decompress(input, out, flate2::FlushDecompress::None)
                    .map_err(|e| corrupt("record content", e.to_string()))?;
                let (used, made) = ((d.total_in() - in0) as usize, (d.total_out() - out0) as usize);
                Ok((used, made, status == flate2::Status::StreamEnd))
            }
        }
    }

    /// Checks that the record was complete and intact.
    pub fn finish(self) -> Result<()> {
        let h = &self.frame.header;
        let suffix_len = self.frame.suffix_len;
        if self.fed < h.stored_len || (self.suffix.len() as u64) < suffix_len {
            return Err(Error::Truncated {
                what: "record",
                needed: h.stored_len + suffix_len,
                available: self.fed + self.suffix.len() as u64,
            });
        }
        if !self.ended {
            return Err(corrupt("record content", "ends in the middle of its compressed stream"));
        }
        if self.produced != h.raw_len {
            return Err(corrupt(
                "record content",
                format!("decodes to {} bytes, header says {}", self.produced, h.raw_len),
            ));
        }
        if self.crc32c != h.crc32c {
            return Err(Error::Checksum { what: "record content", expected: h.crc32c, found: self.crc32c });
        }
        if let Some(ieee) = self.ieee {
            let expected = self.frame.container.record_suffix(ieee.sum(), self.produced);
            if self.suffix != expected {
                return Err(corrupt("record", "gzip member trailer does not match the content"));
            }
        }
        Ok(())
    }
}

/// Decodes a whole record held in memory and verifies it.
pub fn decode_record(bytes: &[u8]) -> Result<(crate::header::RecordHeader, Vec<u8>)> {
    let frame = RecordFrame::parse(bytes)?;
    let total = frame.record_len();
    if bytes.len() as u64 > total {
        return Err(corrupt("record", format!("{} bytes after the record's end", bytes.len() as u64 - total)));
    }
    let content = decode_content(&frame, bytes, None)?;
    Ok((frame.header, content))
}

/// Decodes the content of the record `frame` was parsed from, held whole in `bytes` (from the
/// record's first byte), with `dict` if the record names one, and verifies it as
/// [`RecordDecoder`] does. Within [`Budget::WHOLE`], the output is allocated once, and a zstd
/// record is decoded with a context this thread keeps for its dictionary: making one per record
/// costs more than decoding a small record, and loading a dictionary into it costs more again.
/// Larger content grows its output as it decodes, never by what the header claims: readers send
/// such records through a [`RecordDecoder`] instead, and only a caller that asked for the whole
/// content in memory gets here.
pub fn decode_content(frame: &RecordFrame, bytes: &[u8], dict: Option<&Dictionary>) -> Result<Vec<u8>> {
    let h = &frame.header;
    let total = frame.record_len();
    if (bytes.len() as u64) < total {
        return Err(Error::Truncated { what: "record", needed: total, available: bytes.len() as u64 });
    }
    let encoded = &bytes[frame.prefix_len as usize..total as usize];
    if frame.container == Container::Zstd && h.raw_len <= Budget::WHOLE {
        check_plausible(frame)?;
        let dict = check_dictionary(frame, dict)?;
        return zstd_whole(frame, &encoded[..h.stored_len as usize], dict);
    }
    let mut d = RecordDecoder::new(frame.clone(), dict)?;
    let whole = h.raw_len <= Budget::WHOLE;
    let mut out = vec![0; if whole { h.raw_len as usize } else { Budget::STEP }];
    let mut len = 0;
    let mut input = encoded;
    loop {
        if len == out.len() {
            // Past the raw length only if the content runs longer, which `decode` refuses.
            out.resize(len + if whole { 1 } else { Budget::STEP }, 0);
        }
        let n = d.decode(&mut input, &mut out[len..])?;
        len += n;
        if n == 0 && input.is_empty() {
            break;
        }
    }
    out.truncate(len);
    d.finish()?;
    Ok(out)
}

/// [`decode_content`] for a zstd record within [`Budget::WHOLE`], with this thread's context.
fn zstd_whole(frame: &RecordFrame, encoded: &[u8], dict: Option<&Dictionary>) -> Result<Vec<u8>> {
    let h = &frame.header;
    /// Contexts per thread: an archive has one dictionary, or a few across generations.
    const CONTEXTS: usize = 4;
    type Contexts = Vec<((u32, u32), zstd::bulk::Decompressor<'static>)>;
    thread_local! {
        static DCTX: std::cell::RefCell<Contexts> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // The capacity is the limit: content longer than the header says fails to decode.
    let mut out = Vec::with_capacity(h.raw_len as usize);
    let key = dict.map_or((0, 0), |d| (d.id(), d.crc32c()));
    DCTX.with(|cell| {
        let mut contexts = cell.borrow_mut();
        let at = match contexts.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                let dctx = match dict {
                    Some(d) => zstd::bulk::Decompressor::with_dictionary(d.bytes())?,
                    None => zstd::bulk::Decompressor::new()?,
                };
                if contexts.len() == CONTEXTS {
                    contexts.remove(0);
                }
                contexts.push((key, dctx));
                contexts.len() - 1
            }
        };
        contexts[at].1.decompress_to_buffer(encoded, &mut out)
    })
    .map_err(|e| corrupt("record content", e.to_string()))?;
    if out.len() as u64 != h.raw_len {
        return Err(corrupt("record content", format!("decodes to {} bytes, header says {}", out.len(), h.raw_len)));
    }
    let found = crc32c::crc32c(&out);
    if found != h.crc32c {
        return Err(Error::Checksum { what: "record content", expected: h.crc32c, found });
    }
    Ok(out)
}

/// The dictionary to decode the record `frame` with: `dict` if the record names it, none if it
/// names none.
fn check_dictionary<'d>(frame: &RecordFrame, dict: Option<&'d Dictionary>) -> Result<Option<&'d Dictionary>> {
    let wanted = frame.header.dict_id;
    match dict {
        _ if wanted == 0 => Ok(None),
        Some(d) if d.id() == wanted && frame.header.codec == Codec::Zstd => Ok(Some(d)),
        _ => Err(corrupt("record header", format!("dictionary {wanted} is not in this archive"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Compression, ContentEncoder, RecordMeta, encode_record};
    use crate::header::{RecordHeader, Timestamp};
    use std::io::Write;

    fn meta() -> RecordMeta {
        RecordMeta { key: "k".into(), mtime: Timestamp::default(), mode: 0o644, content_type: None }
    }

    /// A record of `n` zero bytes, compressed in `container`, with its frame.
    fn zeros(container: Container, n: u64) -> (RecordFrame, Vec<u8>) {
        let mut e = ContentEncoder::new(container, container.codec(), 3, Some(n), Vec::new()).unwrap();
        let block = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(block.len() as u64) as usize;
            e.write_all(&block[..k]).unwrap();
            left -= k as u64;
        }
        let (content, s) = e.finish().unwrap();
        let header = RecordHeader {
            key: "zeros".into(),
            codec: container.codec(),
            raw_len: s.raw_len,
            stored_len: s.stored_len,
            crc32c: s.crc32c,
            mtime: Timestamp::default(),
            mode: 0o644,
            content_type: None,
            dict_id: 0,
        };
        let mut record = container.record_prefix(&header).unwrap();
        record.extend(content);
        record.extend(container.record_suffix(s.crc32_ieee, s.raw_len));
        (RecordFrame::parse(&record).unwrap(), record)
    }

    /// Decodes `record` fed `piece` bytes at a time into a buffer of `step`; returns the content
    /// and the most one call produced.
    fn stepwise(frame: &RecordFrame, record: &[u8], piece: usize, step: usize) -> Result<(Vec<u8>, usize)> {
        let mut d = RecordDecoder::new(frame.clone(), None)?;
        let (mut content, mut most, mut buf) = (Vec::new(), 0, vec![0; step]);
        for mut input in record[frame.prefix_len as usize..].chunks(piece).chain([&[][..]]) {
            loop {
                let n = d.decode(&mut input, &mut buf)?;
                most = most.max(n);
                content.extend_from_slice(&buf[..n]);
                if n < buf.len() {
                    break;
                }
            }
        }
        d.finish()?;
        Ok((content, most))
    }

    #[test]
    fn a_small_input_that_decodes_to_much_comes_out_a_step_at_a_time() {
        for container in [Container::Zstd, Container::Gzip] {
            let (frame, record) = zeros(container, 40 << 20);
            assert!(record.len() < 64 << 10, "{container:?}: {}", record.len());
            let (content, most) = stepwise(&frame, &record, 1 << 20, 4096).unwrap();
            assert_eq!(content.len(), 40 << 20);
            assert!(content.iter().all(|&b| b == 0));
            assert_eq!(most, 4096, "{container:?}: never more than the buffer");
        }
    }

    #[test]
    fn any_piece_size_decodes_alike_and_every_record_kind_round_trips() {
        let text = b"hello haypack ".repeat(3000);
        for compression in [
            Compression::default(),
            Compression { container: Container::Gzip, level: 6, compress: true },
            Compression { container: Container::Zstd, level: 1, compress: false },
            Compression { container: Container::Gzip, level: 6, compress: false },
        ] {
            for raw in [&b""[..], b"x", &text, &haypack_testkit::noise(200_000, 1)] {
                let (_, record) = encode_record(compression, meta(), raw).unwrap();
                let frame = RecordFrame::parse(&record).unwrap();
                for (piece, step) in [(1, 1), (7, 100), (1 << 20, 1 << 16)] {
                    let (content, _) = stepwise(&frame, &record, piece, step).unwrap();
                    assert!(content == raw, "{compression:?} {piece} {step}");
                }
            }
        }
    }

    #[test]
    fn a_raw_length_the_stored_bytes_cannot_decode_to_is_refused_before_decoding() {
        for compression in
            [Compression::default(), Compression { container: Container::Gzip, level: 6, compress: true }]
        {
            let (mut h, _) = encode_record(compression, meta(), &b"abc".repeat(1000)).unwrap();
            h.raw_len = 1 << 50;
            let prefix = compression.container.record_prefix(&h).unwrap();
            let frame = RecordFrame::parse(&prefix).unwrap();
            let err = RecordDecoder::new(frame.clone(), None).unwrap_err();
            assert!(matches!(err, Error::Implausible { .. }), "{err}");
            let err = decode_content(&frame, &vec![0; frame.record_len() as usize], None).unwrap_err();
            assert!(matches!(err, Error::Implausible { .. }), "{err}");
        }
    }

    #[test]
    fn content_that_runs_longer_or_shorter_than_its_header_says_is_caught() {
        for container in [Container::Zstd, Container::Gzip] {
            let (frame, record) = zeros(container, 3 << 20);
            for raw_len in [(3 << 20) - 1, (3 << 20) + 1] {
                let mut bad = frame.clone();
                bad.header.raw_len = raw_len;
                let err = stepwise(&bad, &record, 4096, 1000).unwrap_err();
                assert!(matches!(err, Error::Corrupt { .. }), "{container:?} {raw_len}: {err}");
            }
            let mut bad = frame.clone();
            bad.header.crc32c ^= 1;
            let err = stepwise(&bad, &record, 1 << 20, 1 << 20).unwrap_err();
            assert!(matches!(err, Error::Checksum { .. }), "{container:?}: {err}");
            let err = stepwise(&frame, &record[..record.len() - 1], 1 << 20, 1 << 20).unwrap_err();
            assert!(matches!(err, Error::Truncated { .. }), "{container:?}: {err}");
        }
    }
}

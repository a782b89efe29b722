//! Index entries and the block encoding shared by the archive index and each pack's own index.
//!
//! A block is a key-sorted run of entries, stored column by column (keys front-coded, numbers as
//! deltas in varints) and compressed with zstd: similar values sit together, so a block of small
//! records costs a few bytes per entry besides the key suffixes.

use crate::bytes::{Reader, put_bytes, put_varint, put_zigzag};
use crate::error::{Error, Result, corrupt};
use crate::header::{MAX_KEY_LEN, Timestamp, check_key, content_type_ref, put_content_type};

/// zstd level for index blocks: they are written once and read often, so spend effort on size.
const BLOCK_LEVEL: i32 = 9;

/// Where a record lives and what `ls --long` shows about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The record's key.
    pub key: String,
    /// The pack holding it (its id in the manifest); 0 in a pack's own index.
    pub pack: u32,
    /// Offset of the record's first byte in the pack.
    pub offset: u64,
    /// Length of the whole record in the pack: framing, header and content.
    pub len: u64,
    /// Length of the raw content.
    pub raw_len: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Unix permission bits.
    pub mode: u32,
    /// Media type, if known.
    pub content_type: Option<String>,
}

/// Encodes key-sorted entries as one compressed block. Keys must be strictly increasing.
pub fn encode_block(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = BlockBuilder::default();
    for e in entries {
        b.push(e)?;
    }
    b.finish()
}

/// Builds the block [`encode_block`] writes one entry at a time, keeping only the encoded
/// columns (a few bytes per entry besides key suffixes) rather than the entries: a pack's own
/// index spans every record of the pack, which for tiny files means millions of them.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    count: u64,
    prev_key: String,
    keys: Vec<u8>,
    packs: Vec<u8>,
    offsets: Vec<u8>,
    lens: Vec<u8>,
    raw_lens: Vec<u8>,
    mtimes: Vec<u8>,
    modes: Vec<u8>,
    content_types: Vec<u8>,
    /// Where the next record of a pack starts if it follows the previous one: offsets are stored
    /// relative to it.
    next: Option<(u32, u64)>,
    prev_secs: i64,
}

impl BlockBuilder {
    /// Adds an entry whose key is greater than every key added before.
    pub fn push(&mut self, e: &Entry) -> Result<()> {
        check_key(&e.key)?;
        if self.count > 0 && e.key <= self.prev_key {
            return Err(Error::Unencodable {
                what: "index block",
                detail: format!("keys out of order: {:?} then {:?}", self.prev_key, e.key),
            });
        }
        let shared = common_prefix(self.prev_key.as_bytes(), e.key.as_bytes());
        put_varint(&mut self.keys, shared as u64);
        put_bytes(&mut self.keys, &e.key.as_bytes()[shared..]);
        self.prev_key.clear();
        self.prev_key.push_str(&e.key);
        put_varint(&mut self.packs, u64::from(e.pack));
        // An offset is stored relative to where it would be if records of one pack were
        // contiguous in key order, as they are when a tree is packed: usually zero.
        let expected = self.next.filter(|(p, _)| *p == e.pack).map_or(0, |(_, o)| o);
        put_zigzag(&mut self.offsets, e.offset.wrapping_sub(expected) as i64);
        self.next = Some((e.pack, e.offset.wrapping_add(e.len)));
        put_varint(&mut self.lens, e.len);
        put_varint(&mut self.raw_lens, e.raw_len);
        e.mtime.encode(&mut self.mtimes, self.prev_secs);
        self.prev_secs = e.mtime.secs;
        put_varint(&mut self.modes, u64::from(e.mode));
        put_content_type(&mut self.content_types, e.content_type.as_deref());
        self.count += 1;
        Ok(())
    }

    /// Entries added so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The compressed block.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let columns = [
            &mut self.keys,
            &mut self.packs,
            &mut self.offsets,
            &mut self.lens,
            &mut self.raw_lens,
            &mut self.mtimes,
            &mut self.modes,
            &mut self.content_types,
        ];
        let mut raw = Vec::with_capacity(10 + columns.iter().map(|c| c.len()).sum::<usize>());
        put_varint(&mut raw, self.count);
        for c in columns {
            raw.append(c);
            // Give each column back as soon as it is copied: for a large pack they add up.
            *c = Vec::new();
        }
        Ok(zstd::bulk::compress(&raw, BLOCK_LEVEL)?)
    }
}

/// The most memory an archive index block may take while it is decoded, and so once it is: its
/// decompressed bytes, plus for each entry `size_of::<Entry>()`, its key and its content type.
///
/// The packer cuts blocks at 256 KiB of keys plus 24 bytes per entry (`INDEX_BLOCK_TARGET` in
/// haypack-pack; a rewritten block may pass it by two entries), which decode to at most about
/// 2 MiB: short keys make the most entries, ~10,000 of ~100 bytes each, besides ~60 bytes each
/// of decompressed columns. The limit leaves four times that, for long content types, and
/// refuses a forged block whose few kilobytes of front-coded keys stand for gigabytes.
pub const MAX_BLOCK_DECODED: usize = 8 << 20;

/// Decodes a block written by [`encode_block`], holding at most `limit` bytes while doing so
/// (see [`MAX_BLOCK_DECODED`]): a block that would take more is [`Error::TooLarge`], found
/// before its entries are built.
pub fn decode_block(block: &[u8], limit: usize) -> Result<Vec<Entry>> {
    with_decompressed(block, &mut Tally { used: 0, limit }, decode_raw)
}

fn decode_raw(raw: &[u8], tally: &mut Tally) -> Result<Vec<Entry>> {
    let mut r = Reader::new(raw, "index block");
    let count = read_count(&mut r, raw.len())?;
    tally.add(count.saturating_mul(size_of::<Entry>()), || format!("{count} entries"))?;
    let mut entries: Vec<Entry> = Vec::with_capacity(count);
    let mut keys = KeyCursor::default();
    for i in 0..count {
        let key = keys.next(&mut r)?;
        tally.add(key.len(), || format!("the keys of its first {} entries", i + 1))?;
        let key = std::str::from_utf8(key).map_err(|_| corrupt("index block", "key is not UTF-8"))?;
        if entries.last().is_some_and(|p| p.key.as_str() >= key) {
            return Err(corrupt("index block", format!("keys out of order at {key:?}")));
        }
        entries.push(Entry { key: key.to_owned(), ..Entry::default() });
    }
    let mut rows = Columns::new(&mut r, count)?;
    for (i, e) in entries.iter_mut().enumerate() {
        let row = rows.next()?;
        if let Some(t) = row.content_type {
            tally.add(t.len(), || format!("the content types of its first {} entries", i + 1))?;
        }
        row.fill(e);
    }
    Ok(entries)
}

/// What decoded entries take in memory, about: the entries, their keys and content types. The
/// one measure for decoded index limits and caches.
pub fn decoded_size(entries: &[Entry]) -> usize {
    let strings = |e: &Entry| e.key.len() + e.content_type.as_ref().map_or(0, String::len);
    entries.iter().map(|e| size_of::<Entry>() + strings(e)).sum()
}

/// Finds `key`'s entry in a block written by [`encode_block`] without building the others: the
/// keys are compared as they are decoded, and only the found entry gets strings of its own. A
/// lookup in a block that is not kept decoded costs this, not a whole [`decode_block`]; it
/// holds the block's decompressed bytes (at most `limit`) and one key.
pub fn find_in_block(block: &[u8], limit: usize, key: &str) -> Result<Option<Entry>> {
    with_decompressed(block, &mut Tally { used: 0, limit }, |raw, _| find_in_raw(raw, key))
}

fn find_in_raw(raw: &[u8], key: &str) -> Result<Option<Entry>> {
    let mut r = Reader::new(raw, "index block");
    let count = read_count(&mut r, raw.len())?;
    let mut keys = KeyCursor::default();
    let mut found = None;
    for i in 0..count {
        let current = keys.next(&mut r)?;
        if found.is_none() && current == key.as_bytes() {
            found = Some(i);
        }
    }
    let Some(at) = found else { return Ok(None) };
    let mut rows = Columns::new(&mut r, count)?;
    for _ in 0..at {
        rows.next()?;
    }
    let mut entry = Entry { key: key.to_owned(), ..Entry::default() };
    rows.next()?.fill(&mut entry);
    Ok(Some(entry))
}

/// What decoding a block holds so far, against the caller's limit.
pub(crate) struct Tally {
    pub(crate) used: usize,
    pub(crate) limit: usize,
}

impl Tally {
    pub(crate) fn add(&mut self, bytes: usize, detail: impl FnOnce() -> String) -> Result<()> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(Error::TooLarge { what: "index block", limit: self.limit as u64, detail: detail() });
        }
        Ok(())
    }
}

/// Calls `f` with a block's bytes before compression, counted against the tally before they
/// are allocated. The bytes live in a buffer of the calling thread's, with its zstd context:
/// making either for every lookup costs more than decompressing a 16 KiB leaf.
pub(crate) fn with_decompressed<T>(
    block: &[u8],
    tally: &mut Tally,
    f: impl FnOnce(&[u8], &mut Tally) -> Result<T>,
) -> Result<T> {
    type State = (Option<zstd::bulk::Decompressor<'static>>, Vec<u8>);
    thread_local! {
        static STATE: std::cell::RefCell<State> = const { std::cell::RefCell::new((None, Vec::new())) };
    }
    let size = zstd::zstd_safe::get_frame_content_size(block)
        .map_err(|_| corrupt("index block", "not a zstd frame"))?
        .ok_or_else(|| corrupt("index block", "frame does not state its size"))?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    tally.add(size, || format!("{size} bytes decompressed"))?;
    STATE.with(|state| {
        // `f` only parses: it never decompresses again, so the buffer is never borrowed twice.
        let mut state = state.borrow_mut();
        let (context, buffer) = &mut *state;
        if context.is_none() {
            *context = Some(zstd::bulk::Decompressor::new().map_err(|e| corrupt("index block", e.to_string()))?);
        }
        buffer.clear();
        buffer.reserve(size);
        let decompressed = context.as_mut().expect("made above").decompress_to_buffer(block, buffer);
        decompressed.map_err(|e| corrupt("index block", e.to_string()))?;
        if buffer.len() != size {
            return Err(corrupt("index block", format!("{} bytes decompressed, the frame says {size}", buffer.len())));
        }
        let result = f(buffer, tally);
        // Keep a buffer for leaves, not for the largest block this thread ever decoded.
        if buffer.capacity() > 1 << 20 {
            *buffer = Vec::new();
        }
        result
    })
}

/// The entry count of a block of `len` bytes, bounded by that size.
fn read_count(r: &mut Reader<'_>, len: usize) -> Result<usize> {
    let count = r.varint()?;
    // Each entry takes at least 10 bytes, which bounds the allocation by the input.
    if count > len as u64 / 10 {
        return Err(corrupt("index block", format!("{count} entries cannot fit in {len} bytes")));
    }
    Ok(count as usize)
}

/// The key column, decoded one key at a time into one buffer: never longer than
/// [`MAX_KEY_LEN`], however the front coding is forged.
#[derive(Default)]
pub(crate) struct KeyCursor {
    current: Vec<u8>,
}

impl KeyCursor {
    pub(crate) fn next(&mut self, r: &mut Reader<'_>) -> Result<&[u8]> {
        let shared = r.varint()?;
        let suffix = r.bytes()?;
        if shared > self.current.len() as u64 {
            return Err(corrupt("index block", "key shares more bytes than the previous key has"));
        }
        let len = shared as usize + suffix.len();
        if len == 0 || len > MAX_KEY_LEN {
            return Err(corrupt("index block", format!("a key of {len} bytes; keys are 1 to {MAX_KEY_LEN}")));
        }
        self.current.truncate(shared as usize);
        self.current.extend_from_slice(suffix);
        Ok(&self.current)
    }
}

/// The columns that follow a block's keys, each a cursor at its next value: entry i is the i-th
/// value of every column, read in step. Building it checks every value and that nothing
/// follows, so a block is refused whole or not at all, whichever entries a caller reads.
struct Columns<'a> {
    packs: Reader<'a>,
    offsets: Reader<'a>,
    lens: Reader<'a>,
    raw_lens: Reader<'a>,
    mtimes: Reader<'a>,
    modes: Reader<'a>,
    types: Reader<'a>,
    /// Where the next record would start if it followed the last one in the same pack.
    next: Option<(u32, u64)>,
    prev_secs: i64,
}

/// One entry's fields besides its key, borrowed from the block.
struct Row<'a> {
    pack: u32,
    offset: u64,
    len: u64,
    raw_len: u64,
    mtime: Timestamp,
    mode: u32,
    content_type: Option<&'a str>,
}

impl Row<'_> {
    fn fill(self, e: &mut Entry) {
        e.pack = self.pack;
        e.offset = self.offset;
        e.len = self.len;
        e.raw_len = self.raw_len;
        e.mtime = self.mtime;
        e.mode = self.mode;
        e.content_type = self.content_type.map(str::to_owned);
    }
}

impl<'a> Columns<'a> {
    /// The columns of `count` entries from `r`, which must end with them.
    fn new(r: &mut Reader<'a>, count: usize) -> Result<Self> {
        fn column<'a>(
            r: &mut Reader<'a>,
            count: usize,
            mut skip: impl FnMut(&mut Reader<'a>) -> Result<()>,
        ) -> Result<Reader<'a>> {
            let start = r.clone();
            for _ in 0..count {
                skip(r)?;
            }
            Ok(start)
        }
        let packs = column(r, count, |r| r.varint_u32().map(drop))?;
        let offsets = column(r, count, |r| r.zigzag().map(drop))?;
        let lens = column(r, count, |r| r.varint().map(drop))?;
        let raw_lens = column(r, count, |r| r.varint().map(drop))?;
        let mut secs = 0;
        let mtimes = column(r, count, |r| {
            secs = Timestamp::decode(r, secs)?.secs;
            Ok(())
        })?;
        let modes = column(r, count, |r| r.varint_u32().map(drop))?;
        let types = column(r, count, |r| content_type_ref(r).map(drop))?;
        r.finish()?;
        Ok(Columns { packs, offsets, lens, raw_lens, mtimes, modes, types, next: None, prev_secs: 0 })
    }

    /// The next entry's fields (offsets made absolute again).
    fn next(&mut self) -> Result<Row<'a>> {
        let pack = self.packs.varint_u32()?;
        let len = self.lens.varint()?;
        let expected = self.next.filter(|(p, _)| *p == pack).map_or(0, |(_, o)| o);
        // Wrapping, as the writer subtracted: the reader checks every offset against its pack.
        let offset = expected.wrapping_add(self.offsets.zigzag()? as u64);
        self.next = Some((pack, offset.wrapping_add(len)));
        let mtime = Timestamp::decode(&mut self.mtimes, self.prev_secs)?;
        self.prev_secs = mtime.secs;
        Ok(Row {
            pack,
            offset,
            len,
            raw_len: self.raw_lens.varint()?,
            mtime,
            mode: self.modes.varint_u32()?,
            content_type: content_type_ref(&mut self.types)?,
        })
    }
}

pub(crate) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(key: &str, pack: u32, offset: u64, len: u64) -> Entry {
        Entry {
            key: key.into(),
            pack,
            offset,
            len,
            raw_len: len * 3,
            mtime: Timestamp { secs: 1_700_000_000 + offset as i64, nanos: 0 },
            mode: 0o644,
            content_type: Some("application/json".into()),
        }
    }

    #[test]
    fn contiguous_small_records_cost_a_few_bytes_each() {
        let mut offset = 0;
        let entries: Vec<Entry> = (0..5000)
            .map(|i| {
                let e = entry(&format!("shard-{:02}/record-{i:06}.json", i / 1000), 1, offset, 200 + i % 97);
                offset += e.len;
                e
            })
            .collect();
        let block = encode_block(&entries).unwrap();
        assert_eq!(decode_block(&block, 1 << 20).unwrap(), entries);
        let per_entry = block.len() as f64 / entries.len() as f64;
        assert!(per_entry < 8.0, "{per_entry} bytes per entry");
    }

    /// The bytes of a block are format: this one was encoded before `BlockBuilder` existed, so a
    /// change that alters what any block encodes to fails here, not in a reader years later.
    #[test]
    fn blocks_encode_to_the_same_bytes_as_format_v1() {
        let mut offset = 0;
        let mut entries: Vec<Entry> = (0..3000u64)
            .map(|i| {
                let len = 100 + (i * 7919) % 5000;
                let e = Entry {
                    key: format!("d{:02}/f{i:07}.{}", i % 7, ["txt", "json", "bin"][(i % 3) as usize]),
                    pack: (i / 1000) as u32,
                    offset,
                    len,
                    raw_len: len * 3 - i % 11,
                    mtime: Timestamp {
                        secs: 1_700_000_000 - (i as i64 % 13) * 1000,
                        nanos: ((i * 104_729) % 1_000_000_000) as u32,
                    },
                    mode: [0o644, 0o755, 0o600][(i % 3) as usize],
                    content_type: [None, Some("text/plain".to_owned()), Some("x-custom/y".to_owned())]
                        [(i % 3) as usize]
                        .clone(),
                };
                offset = if i % 500 == 0 { offset + len + 7 } else { offset + len };
                e
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let block = encode_block(&entries).unwrap();
        assert_eq!((block.len(), crc32c::crc32c(&block)), (37394, 0xb704_7cac));
        assert_eq!(decode_block(&block, 1 << 20).unwrap(), entries);
    }

    #[test]
    fn unsorted_keys_are_refused_both_ways() {
        let e = [entry("b", 0, 0, 1), entry("a", 0, 1, 1)];
        assert!(matches!(encode_block(&e), Err(Error::Unencodable { .. })));
        let dup = [entry("a", 0, 0, 1), entry("a", 0, 1, 1)];
        assert!(encode_block(&dup).is_err());
    }

    #[test]
    fn oversized_and_foreign_blocks_are_refused() {
        let block = encode_block(&[entry("a", 0, 0, 1)]).unwrap();
        assert!(matches!(decode_block(&block, 4), Err(Error::TooLarge { .. })));
        assert!(matches!(decode_block(b"not zstd", 1 << 20), Err(Error::Corrupt { .. })));
    }

    proptest! {
        #[test]
        fn blocks_round_trip(
            keys in prop::collection::btree_set("[a-z/._ é]{1,12}", 0..60),
            seed in any::<u64>(),
        ) {
            let entries: Vec<Entry> = keys
                .into_iter()
                .enumerate()
                .map(|(i, k)| {
                    let x = seed.wrapping_mul(i as u64 + 1);
                    Entry {
                        key: k,
                        pack: (x % 3) as u32,
                        offset: x >> 20,
                        len: x % 5000,
                        raw_len: x % 7000,
                        mtime: Timestamp { secs: (x as i64) >> 30, nanos: (x % 1_000_000_000) as u32 },
                        mode: (x % 0o7777) as u32,
                        content_type: [None, Some("text/plain".to_owned()), Some("x/y".to_owned())][i % 3].clone(),
                    }
                })
                .collect();
            let block = encode_block(&entries)?;
            prop_assert_eq!(&decode_block(&block, 1 << 24)?, &entries);
            for e in &entries {
                prop_assert_eq!(find_in_block(&block, 1 << 24, &e.key)?, Some(e.clone()));
                let missing = format!("{}~", e.key);
                if !entries.iter().any(|x| x.key == missing) {
                    prop_assert_eq!(find_in_block(&block, 1 << 24, &missing)?, None);
                }
            }
        }
    }
}

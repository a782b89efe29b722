//! What each fuzz target does with its input, written once: the libFuzzer targets in
//! `fuzz_targets/` call these, and so does `crates/haypack-read/tests/fuzz_seeds.rs`, which feeds
//! every committed seed in `fuzz/seeds/` through them in the ordinary test suite (it includes this
//! file by path, as the fuzz crate is a workspace of its own). A check returns normally on any
//! input and panics only when haypack did something it must not (a wrong answer, an unchecked
//! number); memory and time are bounded by libFuzzer's limits when fuzzing.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use haypack_format::{
    Container, Footer, MANIFEST_NAME, MAX_BLOCK_DECODED, MAX_NODE_DECODED, Manifest, Meta, RecordFrame, decode_block,
    decode_node, decode_page, decode_record, encode_node, find_in_block,
};
use haypack_read::{Archive, Want};
use haypack_store::{Error, ObjectMeta, ObjectWriter, PutMode, Result, Store};

/// A target's check of one input.
pub type Check = fn(&[u8]);

/// The targets, by the names of their directories under `fuzz/seeds/` and `fuzz/corpus/`.
pub const TARGETS: [(&str, Check); 5] = [
    ("footer", footer),
    ("record", record),
    ("index_block", index_block),
    ("manifest", manifest),
    ("archive", archive),
];

/// `Footer::decode` on a pack tail. Input: the length of the pack before the tail (4 bytes,
/// little-endian), then the tail, which is always the pack's end but need not be all of it.
pub fn footer(data: &[u8]) {
    let (before, tail) = match data {
        [a, b, c, d, tail @ ..] => (u64::from(u32::from_le_bytes([*a, *b, *c, *d])), tail),
        _ => (0, data),
    };
    let pack_len = before + tail.len() as u64;
    if let Ok(footer) = Footer::decode(tail, pack_len) {
        // The index ends where the footer starts, the footer re-encodes to bytes that decode to
        // it again, and its records fit before its index.
        let footer_start = pack_len - footer.framed_len();
        assert_eq!(footer.index_offset.checked_add(footer.index_len), Some(footer_start));
        assert_eq!(Footer::decode(&footer.encode(), pack_len).ok(), Some(footer));
        assert!(footer.records <= footer.index_offset);
        let _ = footer.index_limit();
    }
    // The same bytes said to end a pack shorter than themselves.
    let _ = Footer::decode(tail, tail.len() as u64 / 2);
}

/// `RecordFrame::parse` and `decode_record` on a record's bytes.
pub fn record(data: &[u8]) {
    let frame = RecordFrame::parse(data);
    if let Ok(frame) = &frame {
        assert!(frame.prefix_len <= data.len() as u64);
        let _ = frame.record_len();
    }
    if let Ok((header, content)) = decode_record(data) {
        // A record decodes only when its framing parses and its content is what it claims.
        let frame = frame.expect("a decoded record has a parsable frame");
        assert_eq!(frame.header, header);
        assert_eq!(frame.record_len(), data.len() as u64);
        assert_eq!(content.len() as u64, header.raw_len);
    }
}

/// `decode_block`, `find_in_block`, `decode_node`, `decode_page` and `Container::unmeta`, and the
/// last two chained as a reader does with a pack's trailing index, all with the archive reader's
/// limits.
pub fn index_block(data: &[u8]) {
    if let Ok(children) = decode_node(data, MAX_NODE_DECODED) {
        // A valid node: it encodes to a node that decodes to the same children.
        let again = encode_node(&children).unwrap();
        assert_eq!(decode_node(&again, MAX_NODE_DECODED).unwrap(), children);
    }
    // The same bytes as a page whose node is its last bytes, whatever they are.
    let head = data.last().map_or(0, |b| u64::from(*b));
    if let Ok(entries) = decode_page(
        data,
        head,
        crc32c::crc32c(&data[data.len() - head.min(data.len() as u64) as usize..]),
        MAX_BLOCK_DECODED,
    ) {
        assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
    }
    if let Ok(entries) = decode_block(data, MAX_BLOCK_DECODED) {
        assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        // A valid block: searching it finds exactly what decoding it gives.
        for e in entries.iter().take(8) {
            assert_eq!(find_in_block(data, MAX_BLOCK_DECODED, &e.key).ok().flatten().as_ref(), Some(e));
        }
    }
    let _ = find_in_block(data, MAX_BLOCK_DECODED, "a");
    for container in [Container::Zstd, Container::Gzip] {
        let _ = container.unmeta(Meta::Footer, data);
        if let Ok(payload) = container.unmeta(Meta::Index, data) {
            assert!(payload.len() <= data.len());
            let _ = decode_block(&payload, MAX_BLOCK_DECODED);
        }
    }
}

/// `Manifest::parse`; a manifest that parses must survive a round trip.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::parse(data) {
        let again = Manifest::parse(&m.to_json()).expect("a parsed manifest's JSON parses");
        assert_eq!(again, m);
    }
}

/// The whole reader on a hostile archive: [`archive_objects`] turns the input into a manifest and
/// the objects it names, which go into a [`MemStore`]; then the archive is opened, listed, read
/// (`stat`, `get`, `get_many`, `record` as the HTTP gateway reads it) and verified. Whatever the
/// bytes, each call returns (an error is fine); content that comes back must be as long as the
/// index says.
pub fn archive(data: &[u8]) {
    let store = Arc::new(MemStore::default());
    for (name, bytes) in archive_objects(data) {
        store.insert(&name, bytes);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(read_everything(store));
}

async fn read_everything(store: Arc<MemStore>) {
    let Ok(archive) = Archive::open(store).await else { return };
    let archive = Arc::new(archive);
    let entries = archive.list("").await.unwrap_or_default();
    let _ = archive.list_page("", entries.first().map(|e| e.key.as_str()), 3).await;
    for e in entries.iter().take(8) {
        if let Ok(content) = archive.get(&e.key).await {
            assert_eq!(content.len() as u64, e.raw_len, "{:?}", e.key);
        }
        if let Ok(record) = archive.record(&e.key, Want::Content).await
            && let Ok(content) = record.content().await
        {
            assert_eq!(content.len() as u64, e.raw_len, "{:?}", e.key);
        }
    }
    let _ = archive.stat("a-key-that-is-not-there").await;
    let _ = archive
        .get_many(entries.iter().take(16).cloned().collect(), |e, content| {
            assert_eq!(content.len() as u64, e.raw_len, "{:?}", e.key);
            Ok(())
        })
        .await;
    let _ = archive.verify().await;
}

/// The objects of a hostile archive, from fuzzed bytes: sections, each a 4-byte little-endian
/// length and that many bytes (the last may be cut short). The first is the manifest; if it
/// parses, the next go to the index objects and then the packs it names, in its order.
///
/// The root's checksums are then made to match whatever bytes the objects hold, so the fuzzer
/// reaches the parsers behind them: a block whose CRC does not match is refused before it is
/// decoded, which a random mutation would almost always trip.
pub fn archive_objects(data: &[u8]) -> Vec<(String, Bytes)> {
    let mut sections = Sections(data);
    let manifest = sections.next().unwrap_or_default();
    let Ok(mut m) = Manifest::parse(manifest) else {
        return vec![(MANIFEST_NAME.to_owned(), Bytes::copy_from_slice(manifest))];
    };
    let names = m.index.objects.iter().map(|o| o.name.clone()).chain(m.packs.iter().map(|p| p.name.clone()));
    let objects: BTreeMap<String, Bytes> =
        names.zip(sections.by_ref()).map(|(n, b)| (n, Bytes::copy_from_slice(b))).collect();
    for block in &mut m.index.blocks {
        let object = m.index.objects.get(block.object as usize).and_then(|o| objects.get(&o.name));
        let range =
            usize::try_from(block.offset).ok().zip(usize::try_from(block.offset.saturating_add(block.len)).ok());
        if let Some(bytes) = object.zip(range).and_then(|(o, (start, end))| o.get(start..end)) {
            block.crc32c = crc32c::crc32c(bytes);
        }
    }
    for pack in &mut m.packs {
        if let (Some(crc), Some(bytes)) = (&mut pack.crc32c, objects.get(&pack.name)) {
            *crc = crc32c::crc32c(bytes);
        }
    }
    let mut out = vec![(MANIFEST_NAME.to_owned(), Bytes::from(m.to_json()))];
    out.extend(objects);
    out
}

/// The input [`archive_objects`] reads back as `manifest` and `objects` (the index objects,
/// then the packs, in the manifest's order): how seeds are written.
pub fn archive_input(manifest: &[u8], objects: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for section in std::iter::once(manifest).chain(objects.iter().copied()) {
        out.extend_from_slice(&u32::try_from(section.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(section);
    }
    out
}

struct Sections<'a>(&'a [u8]);

impl<'a> Iterator for Sections<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let [a, b, c, d, rest @ ..] = self.0 else { return None };
        let len = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(rest.len());
        let (section, rest) = rest.split_at(len);
        self.0 = rest;
        Some(section)
    }
}

/// A store in memory, for fuzzing the reader without the file system: objects by name, each
/// with a version that changes when it is replaced.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, (Bytes, u64)>>,
    writes: std::sync::atomic::AtomicU64,
}

impl MemStore {
    /// Puts `bytes` under `name`, replacing what was there.
    pub fn insert(&self, name: &str, bytes: Bytes) {
        let version = self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.objects.lock().unwrap().insert(name.to_owned(), (bytes, version));
    }

    fn object(&self, name: &str) -> Result<(Bytes, String)> {
        let objects = self.objects.lock().unwrap();
        let (bytes, version) =
            objects.get(name).ok_or_else(|| Error::NotFound { store: self.describe(), name: name.to_owned() })?;
        Ok((bytes.clone(), version.to_string()))
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn get(&self, name: &str) -> Result<Bytes> {
        Ok(self.object(name)?.0)
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        Ok(self.get_range_pinned(name, range, None).await?.0)
    }

    async fn get_range_pinned(&self, name: &str, range: Range<u64>, version: Option<&str>) -> Result<(Bytes, String)> {
        let (bytes, found) = self.object(name)?;
        if let Some(expected) = version.filter(|v| *v != found) {
            return Err(haypack_store::changed(self, name, expected, &found));
        }
        let size = bytes.len() as u64;
        if range.start > range.end || range.end > size {
            let (start, end) = (range.start, range.end);
            return Err(Error::OutOfRange { store: self.describe(), name: name.to_owned(), start, end, size });
        }
        Ok((bytes.slice(range.start as usize..range.end as usize), found))
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        let (bytes, version) = self.object(name)?;
        Ok(ObjectMeta { name: name.to_owned(), size: bytes.len() as u64, version, modified: None })
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let current = self.object(name).ok().map(|(_, v)| v);
        haypack_store::check_put(self, name, &mode, current.as_deref())?;
        self.insert(name, data);
        self.head(name).await
    }

    fn create(&self, _name: &str) -> Result<Box<dyn ObjectWriter>> {
        // A reader never writes; `put` is enough for a test that builds an archive.
        Err(Error::Unsupported { what: "stream writes in memory" })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let names: Vec<String> =
            self.objects.lock().unwrap().keys().filter(|n| n.starts_with(prefix)).cloned().collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.head(&name).await?);
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.objects.lock().unwrap().remove(name);
        Ok(())
    }
}

//! Streaming writers for packs and for the archive index.

use std::io::Write;

use haypack_format::{
    BlockBuilder, BlockRef, Child, Container, Entry, Footer, IndexObject, Meta, PackRef, ROOT_BYTES, RecordHeader,
    decode_block, encode_block, encode_node, root_fits,
};
use haypack_store::{Finished, ObjectWriter, Store};

use crate::Result;

/// Writes one pack: records, then its own index and footer. Hashes everything it writes, so
/// the manifest can carry the pack's CRC without a second read.
pub(crate) struct PackWriter {
    id: u32,
    name: String,
    container: Container,
    out: Box<dyn ObjectWriter>,
    offset: u64,
    /// CRC-32C of every byte so far; `None` once the store copied bytes this process never saw.
    crc32c: Option<u32>,
    raw_bytes: u64,
    /// The pack's own index, encoded as records arrive: entries themselves would cost ~150
    /// bytes each for the life of the pack, which for tiny files holds millions of records.
    index: BlockBuilder,
    /// Entries that arrived out of key order (records copied by compaction, or written in any
    /// order): added to the index, sorted, at the end. Once one arrives, every entry goes here,
    /// so the pack holds at most a pack's worth of them.
    copied: Vec<Entry>,
    /// The last key added to `index`.
    last_key: String,
}

impl PackWriter {
    /// Starts pack `id`, named `packs/{id:06}{suffix}.hpk.{zst|gz}`.
    pub fn create(store: &dyn Store, id: u32, suffix: &str, container: Container, resume: bool) -> Result<Self> {
        let name = format!("packs/{id:06}{suffix}.hpk.{}", container.name());
        let out = if resume { store.create_resumable(&name)? } else { store.create(&name)? };
        Ok(PackWriter {
            id,
            name,
            container,
            out,
            offset: 0,
            crc32c: Some(0),
            raw_bytes: 0,
            index: BlockBuilder::default(),
            copied: Vec::new(),
            last_key: String::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn container(&self) -> Container {
        self.container
    }

    /// Bytes left before the pack reaches `pack_size`.
    pub fn room(&self, pack_size: u64) -> u64 {
        pack_size.saturating_sub(self.offset)
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty() && self.copied.is_empty()
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.crc32c = self.crc32c.map(|crc| crc32c::crc32c_append(crc, bytes));
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// See [`ObjectWriter::copy_lead`].
    pub fn copy_lead(&self, len: u64) -> Option<u64> {
        self.out.copy_lead(len)
    }

    /// Appends `range` of the pack `source` by a copy inside the store.
    pub fn copy_range(&mut self, source: &str, range: std::ops::Range<u64>, version: &str) -> Result<()> {
        self.out.copy_range(source, range.clone(), version)?;
        self.crc32c = None;
        self.offset += range.end - range.start;
        Ok(())
    }

    /// Records that a record copied from another pack, which `e` describes there, now starts
    /// at `start` in this one; returns its entry here.
    pub fn add_copied(&mut self, e: &Entry, start: u64) -> Entry {
        self.raw_bytes += e.raw_len;
        let here = Entry { pack: self.id, offset: start, ..e.clone() };
        self.copied.push(Entry { pack: 0, ..here.clone() });
        here
    }

    /// Records that the record whose header is `h` spans `start..self.len()`, and returns its
    /// entry for the archive index (tagged with this pack's id).
    pub fn add_entry(&mut self, h: &RecordHeader, start: u64) -> Result<Entry> {
        let entry = Entry {
            key: h.key.clone(),
            pack: 0,
            offset: start,
            len: self.offset - start,
            raw_len: h.raw_len,
            mtime: h.mtime,
            mode: h.mode,
            content_type: h.content_type.clone(),
        };
        self.raw_bytes += h.raw_len;
        let in_order = self.copied.is_empty() && (self.index.is_empty() || entry.key > self.last_key);
        if in_order {
            self.index.push(&entry)?;
            self.last_key.clone_from(&entry.key);
        } else {
            if !self.index.is_empty() {
                // The first record out of key order: what was indexed so far joins the rest.
                let block = std::mem::take(&mut self.index).finish()?;
                self.copied = decode_block(&block, usize::MAX)?;
            }
            self.copied.push(entry.clone());
        }
        Ok(Entry { pack: self.id, ..entry })
    }

    /// Writes the pack index and footer and makes the pack visible. Returns its manifest entry
    /// and how the object got there.
    pub fn finish(mut self) -> Result<(PackRef, Finished)> {
        // Copied records arrive in their old packs' order; the pack index is by key.
        self.copied.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        if let Some(w) = self.copied.windows(2).find(|w| w[0].key == w[1].key) {
            return Err(crate::Error::DuplicateKey { key: w[0].key.clone() });
        }
        for e in std::mem::take(&mut self.copied) {
            self.index.push(&e)?;
        }
        let records = self.index.len();
        let payload = std::mem::take(&mut self.index).finish()?;
        let framed = self.container.meta(Meta::Index, &payload);
        let footer = Footer {
            container: self.container,
            records,
            index_offset: self.offset,
            index_len: framed.len() as u64,
            index_crc32c: crc32c::crc32c(&payload),
        };
        self.write(&framed).map_err(|e| io_error(&self.name, e))?;
        self.write(&footer.encode()).map_err(|e| io_error(&self.name, e))?;
        let finished = self.out.finish()?;
        if finished.meta().size != self.offset {
            return Err(crate::Error::Bug(format!(
                "{} is {} bytes in the store, {} were written",
                self.name,
                finished.meta().size,
                self.offset
            )));
        }
        let pack = PackRef {
            id: self.id,
            name: self.name,
            size: self.offset,
            records,
            raw_bytes: self.raw_bytes,
            crc32c: self.crc32c,
            dead_records: 0,
            dead_bytes: 0,
        };
        Ok((pack, finished))
    }
}

pub(crate) fn io_error(name: &str, source: std::io::Error) -> crate::Error {
    haypack_store::Error::Io { op: "writing", path: name.into(), source }.into()
}

/// What a leaf of the archive index aims for, in bytes of keys plus 24 per entry: a lookup decodes (or searches)
/// one leaf, so this is what a warm lookup that misses the cache pays, ~16 KiB decompressed.
pub const LEAF_TARGET: usize = 16 << 10;

/// What a page of the archive index aims for, in bytes of keys plus 24 per entry: writers rewrite whole pages, and
/// the root holds one reference per page, so this trades the bytes a change rewrites against
/// how many records a root that fits in the manifest reaches (up to ~90,000 entries of 20-byte
/// keys per page, fewer when [`PAGE_BYTES`] comes first).
pub const PAGE_TARGET: usize = 4 << 20;

/// The most a page may take compressed: a cold lookup reads one page whole, so this bounds
/// its bytes whatever the keys are (random keys compress far less than sorted paths).
pub const PAGE_BYTES: usize = 256 << 10;

/// Pages a branch lists at most: about 100 KiB of node, the last read a cold lookup makes
/// before the page in an archive of more than ~10 M records.
pub const BRANCH_PAGES: usize = 2048;

/// What a branch may take decoded at most (its children and their keys and object names):
/// long keys end a branch before [`BRANCH_PAGES`], well within what a reader accepts.
const BRANCH_BYTES: usize = 2 << 20;

/// About what an entry adds to a block before compression: how blocks are measured.
pub(crate) fn weight(e: &Entry) -> usize {
    e.key.len() + 24
}

/// An index object's pages, and the object itself unless it held none.
pub(crate) type WrittenIndex = (Vec<BlockRef>, Option<(IndexObject, Finished)>);

/// Writes one index object: takes entries in key order and cuts them into leaves, and leaves
/// into pages (the leaves, then the node listing them). The pages' references say
/// `object: 0`; whoever places the object in a manifest's list renumbers them.
pub(crate) struct IndexWriter {
    name: String,
    out: Box<dyn ObjectWriter>,
    offset: u64,
    /// Entries of the current leaf, and their weight.
    pending: Vec<Entry>,
    pending_bytes: usize,
    /// The current page: its compressed leaves, their references (offsets from the page's
    /// start) and their weight.
    page: Vec<u8>,
    leaves: Vec<Child>,
    page_weight: usize,
    pages: Vec<BlockRef>,
}

impl IndexWriter {
    pub fn create(store: &dyn Store, name: String, resume: bool) -> Result<Self> {
        let out = if resume { store.create_resumable(&name)? } else { store.create(&name)? };
        Ok(IndexWriter {
            name,
            out,
            offset: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            page: Vec::new(),
            leaves: Vec::new(),
            page_weight: 0,
            pages: Vec::new(),
        })
    }

    /// Pages written so far.
    pub fn pages(&self) -> &[BlockRef] {
        &self.pages
    }

    /// Adds entries whose keys are greater than every key added before.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        for e in entries {
            self.push(e)?;
        }
        Ok(())
    }

    /// Adds an entry whose key is greater than every key added before. Its mtime is kept to the
    /// second: the record's header holds the rest (FORMAT.md, "The archive index").
    pub fn push(&mut self, mut e: Entry) -> Result<()> {
        e.mtime.nanos = 0;
        self.pending_bytes += weight(&e);
        self.pending.push(e);
        if self.pending_bytes >= LEAF_TARGET {
            self.end_leaf()?;
        }
        Ok(())
    }

    fn end_leaf(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let leaf = encode_block(&self.pending)?;
        if !self.leaves.is_empty() && self.page.len() + leaf.len() > PAGE_BYTES {
            self.end_page()?;
        }
        self.leaves.push(Child {
            first_key: self.pending[0].key.clone(),
            object: String::new(),
            offset: self.page.len() as u64,
            len: leaf.len() as u64,
            head: 0,
            records: self.pending.len() as u64,
            crc32c: crc32c::crc32c(&leaf),
        });
        self.page.extend_from_slice(&leaf);
        self.page_weight += self.pending_bytes;
        self.pending.clear();
        self.pending_bytes = 0;
        if self.page_weight >= PAGE_TARGET {
            self.end_page()?;
        }
        Ok(())
    }

    fn end_page(&mut self) -> Result<()> {
        if self.leaves.is_empty() {
            return Ok(());
        }
        let node = encode_node(&self.leaves)?;
        self.page.extend_from_slice(&node);
        self.out.write_all(&self.page).map_err(|e| io_error(&self.name, e))?;
        self.pages.push(BlockRef {
            object: 0,
            first_key: self.leaves[0].first_key.clone(),
            offset: self.offset,
            len: self.page.len() as u64,
            head: node.len() as u64,
            records: self.leaves.iter().map(|l| l.records).sum(),
            crc32c: crc32c::crc32c(&node),
        });
        self.offset += self.page.len() as u64;
        self.page.clear();
        self.leaves.clear();
        self.page_weight = 0;
        Ok(())
    }

    /// Ends the current page early, so that a page written elsewhere can follow it.
    pub fn flush(&mut self) -> Result<()> {
        self.end_leaf()?;
        self.end_page()
    }

    /// The root over `pages` (in key order, naming `objects` by position; `own` is this
    /// object's position): the pages themselves if they fit in [`ROOT_BYTES`] of the manifest's JSON,
    /// else branches of [`BRANCH_PAGES`] pages each, written into this object.
    pub fn plant(&mut self, pages: Vec<BlockRef>, objects: &[IndexObject], own: u32) -> Result<Vec<BlockRef>> {
        self.flush()?;
        if root_fits(&pages) {
            return Ok(pages);
        }
        let name_of = |p: &BlockRef| match p.object == own {
            true => self.name.clone(),
            false => objects[p.object as usize].name.clone(),
        };
        let mut root = Vec::new();
        let mut rest = &pages[..];
        while !rest.is_empty() {
            // A branch ends at BRANCH_PAGES pages, or sooner when long keys would make it take
            // more than BRANCH_BYTES decoded (a reader refuses a node past 8 MiB).
            let mut size = 0;
            let n = (rest.iter().take(BRANCH_PAGES))
                .take_while(|p| {
                    size += size_of::<Child>() + p.first_key.len() + name_of(p).len();
                    size <= BRANCH_BYTES
                })
                .count()
                .max(1);
            let (group, after) = rest.split_at(n);
            rest = after;
            let children: Vec<Child> = group.iter().map(|p| Child::of(p, name_of(p))).collect();
            let node = encode_node(&children)?;
            self.out.write_all(&node).map_err(|e| io_error(&self.name, e))?;
            root.push(BlockRef {
                object: own,
                first_key: group[0].first_key.clone(),
                offset: self.offset,
                len: node.len() as u64,
                head: node.len() as u64,
                records: group.iter().map(|p| p.records).sum(),
                crc32c: crc32c::crc32c(&node),
            });
            self.offset += node.len() as u64;
        }
        if !root_fits(&root) {
            return Err(haypack_format::Error::Unencodable {
                what: "archive index",
                detail: format!(
                    "{} pages need {} branches, whose root passes {ROOT_BYTES} bytes of the manifest: keys this long \
                     ({} bytes in the root) make too large an index for version 4",
                    pages.len(),
                    root.len(),
                    root.iter().map(|r| r.first_key.len()).sum::<usize>()
                ),
            }
            .into());
        }
        Ok(root)
    }

    /// Makes the object visible, if it holds anything: an index object holding nothing is
    /// never written. Returns its pages and, when written, its size and how it got there.
    pub fn finish(mut self) -> Result<WrittenIndex> {
        self.flush()?;
        if self.offset == 0 {
            return Ok((self.pages, None));
        }
        let finished = self.out.finish()?;
        Ok((self.pages, Some((IndexObject { name: self.name, size: self.offset }, finished))))
    }
}

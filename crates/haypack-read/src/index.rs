//! Walking the archive index: from the manifest's root, through a branch if the root lists
//! branches, to a page and one of its leaves (FORMAT.md, "The archive index"), with the caches
//! that keep a warm reader from reading the same bytes twice. Archives of versions 1–3 have a
//! root of leaves, which the same walk reads.

use std::collections::HashMap;
use std::sync::Arc;

use haypack_format::{
    BlockRef, Child, Entry, MAX_NODE_DECODED, MAX_PAGE_DECODED, decode_block, decode_page, decoded_size, extend_page,
    page_leaves,
};
use lru::LruCache;

use crate::{Archive, Error, Result};

/// A range read whole when its node is needed: a page the packer wrote (at most 256 KiB and
/// one leaf) comes in one request with its leaves, which is what a cold lookup wants. A longer
/// range (a forged one) is read a node at a time.
const SPAN_READ: u64 = 1 << 20;
/// The most an archive index leaf may take decoded, its keys included: what the packer's
/// leaves can take, with room to spare, so a forged leaf cannot make a lookup allocate more.
pub(crate) const MAX_LEAF_DECODED: usize = haypack_format::MAX_BLOCK_DECODED;

/// The default of [`crate::Archive::set_index_memory`]. Half of it keeps compressed leaves
/// (~5 bytes per record of short keys: the whole index of ~12 M records), three eighths
/// decoded leaves (~110 bytes per record: ~500,000 records' lookups that need no decoding),
/// an eighth nodes (~0.15 bytes per record: every page of ~800 M records).
pub const DEFAULT_INDEX_MEMORY: usize = 128 << 20;

/// Where a range of the index lies: its object's position in the manifest, and its offset.
type Place = (u32, u64);

/// What a reader keeps of the index it read, within its memory bound: nodes most recently
/// used first; leaves, decoded and compressed, as long as they fit (then lookups search the
/// compressed ones they find, and read the others again).
#[derive(Debug)]
pub(crate) struct IndexCache {
    nodes: LruCache<Place, (Arc<Vec<BlockRef>>, usize)>,
    node_bytes: usize,
    leaves: HashMap<Place, Arc<Vec<Entry>>>,
    leaf_bytes: usize,
    raw: HashMap<Place, bytes::Bytes>,
    raw_bytes: usize,
    memory: usize,
    /// Every page in key order, once a reader needed them all.
    pages: Option<Arc<Vec<BlockRef>>>,
}

impl Default for IndexCache {
    fn default() -> Self {
        IndexCache {
            nodes: LruCache::unbounded(),
            node_bytes: 0,
            leaves: HashMap::new(),
            leaf_bytes: 0,
            raw: HashMap::new(),
            raw_bytes: 0,
            memory: DEFAULT_INDEX_MEMORY,
            pages: None,
        }
    }
}

impl IndexCache {
    pub(crate) fn set_memory(&mut self, bytes: usize) {
        self.memory = bytes;
        self.nodes.clear();
        self.leaves.clear();
        self.raw.clear();
        (self.node_bytes, self.leaf_bytes, self.raw_bytes) = (0, 0, 0);
    }

    fn keep_raw(&mut self, place: Place, bytes: bytes::Bytes) {
        if !self.raw.contains_key(&place) && self.raw_bytes + bytes.len() <= self.memory / 2 {
            self.raw_bytes += bytes.len();
            self.raw.insert(place, bytes);
        }
    }

    fn keep_leaf(&mut self, place: Place, entries: Arc<Vec<Entry>>) {
        // Admitted while the share is not full, as `leaf_cached_or_room` promised: it may pass
        // its bound by one leaf (at most `MAX_LEAF_DECODED`).
        let size = decoded_size(&entries);
        if !self.leaves.contains_key(&place) && self.leaf_bytes < self.memory / 4 {
            self.leaf_bytes += size;
            self.leaves.insert(place, entries);
        }
    }

    fn keep_node(&mut self, place: Place, children: Arc<Vec<BlockRef>>) {
        let size = children.iter().map(|c| size_of::<BlockRef>() + c.first_key.len()).sum::<usize>();
        if let Some((_, old)) = self.nodes.put(place, (children, size)) {
            self.node_bytes -= old;
        }
        self.node_bytes += size;
        while self.node_bytes > self.memory / 4 && self.nodes.len() > 1 {
            let Some((_, (_, gone))) = self.nodes.pop_lru() else { break };
            self.node_bytes -= gone;
        }
    }
}

impl Archive {
    fn cache(&self) -> std::sync::MutexGuard<'_, IndexCache> {
        self.index.lock().expect("index cache lock")
    }

    /// The leaf whose key range holds `key`, if any could: one read per level on a cold reader
    /// (a branch, if the root lists branches; a page, which brings its leaves), none on a warm.
    pub(crate) async fn leaf_for(&self, key: &str) -> Result<Option<BlockRef>> {
        let root = &self.manifest.index.blocks;
        let Some(i) = self.manifest.block_for(key) else { return Ok(None) };
        let mut r = root[i].clone();
        // Root, branch, page, leaf: a forged tree deeper than that is refused, not followed.
        for _ in 0..3 {
            if r.head == 0 {
                return Ok(Some(r));
            }
            let children = self.node(&r).await?;
            match children.partition_point(|c| c.first_key.as_str() <= key).checked_sub(1) {
                Some(c) => r = children[c].clone(),
                None => return Ok(None),
            }
        }
        Err(self.index_corrupt(&r, "the index is deeper than root, branch, page and leaf".into()))
    }

    /// Every page (or, in archives of versions 1–3, every leaf) in key order: the root's, or
    /// those its branches list (read once, then kept).
    pub async fn pages(&self) -> Result<Arc<Vec<BlockRef>>> {
        if let Some(pages) = &self.cache().pages {
            return Ok(pages.clone());
        }
        let root = &self.manifest.index.blocks;
        let mut pages = Vec::new();
        for r in root {
            match r.is_branch() {
                true => pages.extend(self.node(r).await?.iter().cloned()),
                false => pages.push(r.clone()),
            }
        }
        if let Some(p) = pages.iter().find(|p| p.is_branch()) {
            return Err(self.index_corrupt(p, "a branch lists a branch".into()));
        }
        let pages = Arc::new(pages);
        self.cache().pages = Some(pages.clone());
        Ok(pages)
    }

    /// Bytes of the index this generation uses: its pages (or leaves) and branches. The rest of
    /// its index objects is what earlier generations replaced.
    pub async fn live_index_bytes(&self) -> Result<u64> {
        let branches = self.manifest.index.blocks.iter().filter(|r| r.is_branch()).map(|r| r.len);
        Ok(self.pages().await?.iter().map(|p| p.len).chain(branches).fold(0, u64::saturating_add))
    }

    /// The entries of page `i` of [`Archive::pages`], read with one request and checked
    /// against every checksum and reference on the way; not kept.
    pub async fn page_entries(&self, i: usize) -> Result<Vec<Entry>> {
        let pages = self.pages().await?;
        self.entries_of(&pages[i]).await
    }

    /// The entries of the page (or leaf) `p`, as [`Archive::page_entries`] reads them.
    pub(crate) async fn entries_of(&self, p: &BlockRef) -> Result<Vec<Entry>> {
        let mut entries = match self.cached_leaves(p) {
            // A lookup read this page before (as a writer's checks do): decode what it kept.
            Some(leaves) => {
                let (mut entries, mut budget) = (Vec::new(), MAX_PAGE_DECODED);
                for (l, bytes) in &leaves {
                    extend_page(&mut entries, bytes, (Some(&l.first_key), l.records, l.crc32c), &mut budget)
                        .map_err(|e| self.index_corrupt(l, e.to_string()))?;
                }
                entries
            }
            None => {
                let span = self.index_range(p, p.offset..p.offset + p.len).await?;
                decode_page(&span, p.head, p.crc32c, MAX_PAGE_DECODED)
                    .map_err(|e| self.index_corrupt(p, e.to_string()))?
            }
        };
        if entries.len() as u64 != p.records || entries.first().map(|e| &e.key) != Some(&p.first_key) {
            return Err(self.index_corrupt(p, "index page disagrees with its reference".into()));
        }
        // Blocks before format version 3 may hold nanoseconds; the index means whole seconds.
        entries.iter_mut().for_each(|e| e.mtime.nanos = 0);
        Ok(entries)
    }

    /// The pages a reference of the root stands for: a branch's, or the reference itself.
    pub(crate) async fn pages_under(&self, r: &BlockRef) -> Result<Arc<Vec<BlockRef>>> {
        match r.is_branch() {
            true => self.node(r).await,
            false => Ok(Arc::new(vec![r.clone()])),
        }
    }

    /// The leaves of a page of [`Archive::pages`], in key order.
    pub(crate) async fn leaves_of(&self, page: &BlockRef) -> Result<Arc<Vec<BlockRef>>> {
        match page.head {
            0 => Ok(Arc::new(vec![page.clone()])),
            _ => self.node(page).await,
        }
    }

    /// Every leaf of page `p` with its checked bytes, if the cache holds the page's node and all
    /// its leaves.
    fn cached_leaves(&self, p: &BlockRef) -> Option<Vec<(BlockRef, bytes::Bytes)>> {
        let mut cache = self.cache();
        let leaves = match p.head {
            0 => Arc::new(vec![p.clone()]),
            _ => cache.nodes.get(&(p.object, p.offset))?.0.clone(),
        };
        (leaves.iter()).map(|l| Some((l.clone(), cache.raw.get(&(l.object, l.offset))?.clone()))).collect()
    }

    /// The decoded leaf `r`, from the cache or the store. Once the cache is full, a caller
    /// after one key is better served by [`Archive::find_in_leaf`].
    pub(crate) async fn leaf(&self, r: &BlockRef) -> Result<Arc<Vec<Entry>>> {
        if let Some(l) = self.cache().leaves.get(&(r.object, r.offset)) {
            return Ok(l.clone());
        }
        let bytes = self.leaf_bytes(r).await?;
        let mut entries = decode_block(&bytes, MAX_LEAF_DECODED).map_err(|e| self.index_corrupt(r, e.to_string()))?;
        entries.iter_mut().for_each(|e| e.mtime.nanos = 0);
        if entries.len() as u64 != r.records || entries.first().map(|e| &e.key) != Some(&r.first_key) {
            return Err(self.index_corrupt(r, "index block disagrees with its reference".into()));
        }
        let entries = Arc::new(entries);
        self.cache().keep_leaf((r.object, r.offset), entries.clone());
        Ok(entries)
    }

    /// Whether the decoded leaf `r` is in the cache, or the cache has room for more.
    pub(crate) fn leaf_cached_or_room(&self, r: &BlockRef) -> bool {
        let cache = self.cache();
        cache.leaves.contains_key(&(r.object, r.offset)) || cache.leaf_bytes < cache.memory / 4
    }

    /// `key`'s entry in the leaf `r`, found in its compressed bytes without decoding the rest.
    pub(crate) async fn find_in_leaf(&self, r: &BlockRef, key: &str) -> Result<Option<Entry>> {
        let bytes = self.leaf_bytes(r).await?;
        let found = haypack_format::find_in_block(&bytes, MAX_LEAF_DECODED, key)
            .map_err(|e| self.index_corrupt(r, e.to_string()))?;
        Ok(found.map(|mut e| {
            e.mtime.nanos = 0;
            e
        }))
    }

    /// The compressed leaf `r`, checked against its CRC: from memory or the store.
    async fn leaf_bytes(&self, r: &BlockRef) -> Result<bytes::Bytes> {
        if let Some(b) = self.cache().raw.get(&(r.object, r.offset)) {
            return Ok(b.clone());
        }
        let bytes = self.index_range(r, r.offset..r.offset + r.len).await?;
        check_crc(&bytes, r.crc32c).map_err(|d| self.index_corrupt(r, d))?;
        self.cache().keep_raw((r.object, r.offset), bytes.clone());
        Ok(bytes)
    }

    /// The children of the node that ends `r` (a page's leaves, or a branch's pages), as
    /// references into the manifest's objects. A page short enough is read whole, and its
    /// leaves kept, so that the lookup that needed the node needs no other read.
    async fn node(&self, r: &BlockRef) -> Result<Arc<Vec<BlockRef>>> {
        if let Some((n, _)) = self.cache().nodes.get(&(r.object, r.offset)) {
            return Ok(n.clone());
        }
        let end = r.offset + r.len;
        let whole = !r.is_branch() && r.len <= SPAN_READ;
        let start = if whole { r.offset } else { end - r.head };
        let bytes = self.index_range(r, start..end).await?;
        let node = bytes.slice((end - r.head - start) as usize..);
        let children = match r.is_branch() {
            true => {
                check_crc(&node, r.crc32c).map_err(|d| self.index_corrupt(r, d))?;
                let children = haypack_format::decode_node(&node, MAX_NODE_DECODED)
                    .map_err(|e| self.index_corrupt(r, e.to_string()))?;
                children.iter().map(|c| self.named_child(r, c)).collect::<Result<Vec<_>>>()?
            }
            false => {
                let leaves = page_leaves(&node, r.len, r.crc32c, MAX_NODE_DECODED)
                    .map_err(|e| self.index_corrupt(r, e.to_string()))?;
                let leaves: Vec<BlockRef> = leaves.iter().map(|l| leaf_of(r, l)).collect();
                if whole {
                    let mut cache = self.cache();
                    for l in &leaves {
                        let at = (l.offset - r.offset) as usize;
                        let leaf = bytes.slice(at..at + l.len as usize);
                        if check_crc(&leaf, l.crc32c).is_ok() {
                            cache.keep_raw((l.object, l.offset), leaf);
                        }
                    }
                }
                leaves
            }
        };
        let records = children.iter().try_fold(0u64, |n, c| n.checked_add(c.records));
        if records != Some(r.records) || children.first().map(|c| &c.first_key) != Some(&r.first_key) {
            return Err(self.index_corrupt(r, "index node disagrees with its reference".into()));
        }
        let children = Arc::new(children);
        self.cache().keep_node((r.object, r.offset), children.clone());
        Ok(children)
    }

    /// A branch's child as a reference into the manifest's objects: it must name one, and lie
    /// inside it.
    fn named_child(&self, branch: &BlockRef, c: &Child) -> Result<BlockRef> {
        let objects = &self.manifest.index.objects;
        let Some(object) = objects.iter().position(|o| o.name == c.object) else {
            let detail = format!("a branch names {:?}, which the manifest does not list", c.object);
            return Err(self.index_corrupt(branch, detail));
        };
        // A branch lists pages (or, over an index upgraded from version 3, leaves), not branches.
        if c.offset.checked_add(c.len).is_none_or(|end| end > objects[object].size) || (c.head != 0 && c.head == c.len)
        {
            return Err(self.index_corrupt(branch, format!("a branch's child at {:?} is not a page", c.first_key)));
        }
        Ok(c.at(object as u32, c.offset))
    }

    /// A range of the object `r` lies in: from the disk cache (named by the range's checksum
    /// and length, so a file there is the range whichever archive put it) or the store.
    async fn index_range(&self, r: &BlockRef, range: std::ops::Range<u64>) -> Result<bytes::Bytes> {
        let object = &self.manifest.index.objects[r.object as usize];
        let len = range.end - range.start;
        let cached = (self.disk_cache.as_ref()).map(|d| d.join(format!("{:08x}-{:x}-{len:x}.hpb", r.crc32c, r.len)));
        // A range ends with what the reference's CRC covers (the leaf, or the node that ends a
        // page or branch): a cached file that does not check out is read from the store again.
        let checks = |b: &[u8]| {
            let covered = if r.head == 0 { r.len } else { r.head };
            b.len() as u64 == len
                && b.len() as u64 >= covered
                && check_crc(&b[b.len() - covered as usize..], r.crc32c).is_ok()
        };
        if let Some(b) = cached.as_ref().and_then(|p| std::fs::read(p).ok()).filter(|b| checks(b)) {
            return Ok(b.into());
        }
        let bytes = self.read_range(&object.name, range, None).await.map_err(|e| match e {
            Error::Store(haypack_store::Error::OutOfRange { size, .. }) => self.index_corrupt(
                r,
                format!("index object is {size} bytes, the manifest says {}: truncated", object.size),
            ),
            e => e,
        })?;
        if let Some(path) = &cached {
            crate::save_to_cache(path, &bytes);
        }
        Ok(bytes)
    }

    pub(crate) fn index_corrupt(&self, r: &BlockRef, detail: String) -> Error {
        let object =
            (self.manifest.index.objects.get(r.object as usize)).map_or("the index".into(), |o| o.name.clone());
        Error::Corrupt { object, offset: r.offset, key: None, detail }
    }
}

/// A page's leaf as a reference into the page's object.
fn leaf_of(page: &BlockRef, l: &Child) -> BlockRef {
    l.at(page.object, page.offset + l.offset)
}

fn check_crc(bytes: &[u8], expected: u32) -> std::result::Result<(), String> {
    let crc = crc32c::crc32c(bytes);
    match crc == expected {
        true => Ok(()),
        false => Err(format!("index block checksum {crc:#010x}, expected {expected:#010x}")),
    }
}

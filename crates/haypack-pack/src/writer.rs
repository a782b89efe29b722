//! Streaming writers for packs and for the archive index.

use std::io::Write;

use haypack_format::{
    BlockBuilder, BlockRef, Container, Entry, Footer, IndexRef, Meta, PackRef, RecordHeader, encode_block,
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
    crc32c: u32,
    raw_bytes: u64,
    /// The pack's own index, encoded as records arrive: entries themselves would cost ~150
    /// bytes each for the life of the pack, which for tiny files holds millions of records.
    index: BlockBuilder,
}

impl PackWriter {
    pub fn create(store: &dyn Store, id: u32, container: Container, resume: bool) -> Result<Self> {
        let name = format!("packs/{id:06}.hpk.{}", container.name());
        let out = if resume { store.create_resumable(&name)? } else { store.create(&name)? };
        Ok(PackWriter { id, name, container, out, offset: 0, crc32c: 0, raw_bytes: 0, index: BlockBuilder::default() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Records that the record whose header is `h` spans `start..self.len()`, and returns its
    /// entry for the archive index (tagged with this pack's id).
    pub fn add_entry(&mut self, h: &RecordHeader, start: u64) -> Result<Entry> {
        let mut entry = Entry {
            key: h.key.clone(),
            pack: 0,
            offset: start,
            len: self.offset - start,
            raw_len: h.raw_len,
            mtime: h.mtime,
            mode: h.mode,
            content_type: h.content_type.clone(),
        };
        self.index.push(&entry)?;
        self.raw_bytes += h.raw_len;
        entry.pack = self.id;
        Ok(entry)
    }

    /// Writes the pack index and footer and makes the pack visible. Returns its manifest entry
    /// and how the object got there.
    pub fn finish(mut self) -> Result<(PackRef, Finished)> {
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
        debug_assert_eq!(finished.meta().size, self.offset);
        let pack = PackRef {
            id: self.id,
            name: self.name,
            size: self.offset,
            records,
            raw_bytes: self.raw_bytes,
            crc32c: self.crc32c,
        };
        Ok((pack, finished))
    }
}

pub(crate) fn io_error(name: &str, source: std::io::Error) -> crate::Error {
    haypack_store::Error::Io { op: "writing", path: name.into(), source }.into()
}

/// Uncompressed bytes an index block aims for: a lookup decodes one block, so this is the
/// trade between root size (one reference per block) and bytes read per cold lookup.
pub const INDEX_BLOCK_TARGET: usize = 256 * 1024;

/// Writes the archive index: takes entries in key order, cuts them into blocks, and returns
/// the root for the manifest.
pub(crate) struct IndexWriter {
    name: String,
    out: Box<dyn ObjectWriter>,
    offset: u64,
    pending: Vec<Entry>,
    pending_bytes: usize,
    blocks: Vec<BlockRef>,
}

impl IndexWriter {
    pub fn create(store: &dyn Store, generation: u64, resume: bool) -> Result<Self> {
        let name = format!("index/{generation:06}.hpi");
        let out = if resume { store.create_resumable(&name)? } else { store.create(&name)? };
        Ok(IndexWriter { name, out, offset: 0, pending: Vec::new(), pending_bytes: 0, blocks: Vec::new() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds an entry whose key is greater than every key added before.
    pub fn push(&mut self, e: Entry) -> Result<()> {
        self.pending_bytes += e.key.len() + 24;
        self.pending.push(e);
        if self.pending_bytes >= INDEX_BLOCK_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let block = encode_block(&self.pending)?;
        self.out.write_all(&block).map_err(|e| io_error(&self.name, e))?;
        self.blocks.push(BlockRef {
            first_key: self.pending[0].key.clone(),
            offset: self.offset,
            len: block.len() as u64,
            records: self.pending.len() as u64,
            crc32c: crc32c::crc32c(&block),
        });
        self.offset += block.len() as u64;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(IndexRef, Finished)> {
        self.flush()?;
        let finished = self.out.finish()?;
        Ok((IndexRef { name: self.name, size: self.offset, blocks: self.blocks }, finished))
    }
}

//! The record writer: records in, in any key order, packs out. Every way of writing an archive
//! goes through it: `pack` and `add` feed it a source, library users their own records.
//!
//! Records are appended to packs in the order they arrive, so the same records in the same
//! order give the same packs. Small records collect in batches that are read and compressed in
//! parallel (rayon) while the next batch fills, then appended in order; large ones stream
//! through a temporary file one at a time (their header needs the encoded length and checksum
//! before the content). Index entries go to a [`Sorter`], which spills sorted runs to disk, so
//! memory stays flat whatever the number of records or their order.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use haypack_format::{
    Codec, Compression, ContentEncoder, Dictionary, MAX_KEY_LEN, PackRef, RecordHeader, RecordMeta, Timestamp,
    encode_record, encode_record_with,
};
use haypack_source::{Content, Item, Record, Skipped, Source};
use haypack_store::{Finished, Store};
use rayon::prelude::*;

use crate::sort::{Sorted, Sorter};
use crate::writer::{PackWriter, io_error};
use crate::{Error, PackOptions, Progress, Result};

/// Records larger than this stream through a temporary file instead of being held whole.
pub(crate) const STREAM_THRESHOLD: u64 = 8 << 20;
/// Raw bytes read and compressed at once, which bounds the writer's memory.
const BATCH_BYTES: u64 = 32 << 20;
/// Records read and compressed at once.
const BATCH_RECORDS: usize = 2048;

/// A small record waiting in a batch: its content in memory, or a file to read.
struct Pending {
    meta: RecordMeta,
    content: Small,
}

enum Small {
    Bytes(Vec<u8>),
    File { path: PathBuf, len: u64 },
}

/// One encoded record, ready to append.
struct Encoded {
    header: RecordHeader,
    bytes: Vec<u8>,
}

/// A batch of small records being read and compressed in parallel on the rayon pool.
struct Encoding(std::sync::mpsc::Receiver<Vec<Result<Encoded>>>);

impl Encoding {
    fn start(batch: Vec<Pending>, compression: Compression, dict: Option<Arc<Dictionary>>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rayon::spawn(move || {
            let dict = dict.as_deref();
            let encoded = batch.into_par_iter().map(|p| encode_small(p, compression, dict)).collect();
            // The receiver is gone only if writing already failed: nothing is waiting.
            let _ = tx.send(encoded);
        });
        Encoding(rx)
    }

    /// The batch's records, in the batch's order.
    fn wait(self) -> Result<Vec<Result<Encoded>>> {
        self.0.recv().map_err(|_| Error::Bug("a batch of records was lost while encoding".into()))
    }
}

/// What a finished writer leaves: its packs and their records' entries, sorted.
pub(crate) struct Written {
    pub packs: Vec<PackRef>,
    pub entries: Sorted,
    pub skipped: Vec<Skipped>,
    /// Objects made visible, to delete if the commit fails.
    pub written: Vec<String>,
    /// Objects an interrupted run had already written with the same bytes.
    pub kept: Vec<String>,
}

impl Written {
    /// Records indexed: written, less those a later record under the same key replaced.
    pub fn records(&self) -> u64 {
        self.packs.iter().map(|p| p.records - p.dead_records).sum()
    }

    /// Raw bytes of the records indexed.
    pub fn raw_bytes(&self) -> u64 {
        let dropped: u64 = self.entries.dropped().iter().map(|e| e.raw_len).sum();
        self.packs.iter().map(|p| p.raw_bytes).sum::<u64>() - dropped
    }
}

/// Writes records into new packs of a store. Blocking: call it from a thread that may block
/// (`tokio::task::spawn_blocking`, or any thread outside an async runtime's workers).
pub(crate) struct RecordWriter {
    store: Arc<dyn Store>,
    opts: PackOptions,
    progress: Arc<dyn Progress>,
    next_id: u32,
    /// Added to pack names after the id: empty for a new archive, whose names must be the same
    /// on every run so an interrupted one can resume; unique for a writer that may race others.
    suffix: String,
    /// Put before every key.
    key_prefix: String,
    /// The dictionary small records are compressed against, if any.
    dict: Option<Arc<Dictionary>>,
    /// Write resumably: keep objects an interrupted run left with the same bytes.
    resume: bool,
    /// When records without a time of their own were written.
    now: Timestamp,
    pack: Option<PackWriter>,
    batch: Vec<Pending>,
    batch_bytes: u64,
    /// The batch before, being encoded while `batch` fills.
    encoding: Option<Encoding>,
    entries: Sorter,
    /// Keys in the current pack, kept only when a key may repeat (see [`RecordWriter::append`]).
    pack_keys: Option<std::collections::HashSet<String>>,
    packs: Vec<PackRef>,
    written: Vec<String>,
    kept: Vec<String>,
    skipped: Vec<Skipped>,
}

/// Where a writer's packs go and how they are named.
pub(crate) struct Placement {
    /// The id of the first pack.
    pub first_id: u32,
    /// Added to every pack's name (see [`RecordWriter`]'s `suffix`).
    pub suffix: String,
    /// Keep objects an interrupted run left with the same bytes.
    pub resume: bool,
}

impl RecordWriter {
    pub fn new(
        store: Arc<dyn Store>,
        opts: PackOptions,
        progress: Arc<dyn Progress>,
        placement: Placement,
        dict: Option<Arc<Dictionary>>,
    ) -> Self {
        let duplicates = opts.duplicates;
        RecordWriter {
            store,
            key_prefix: opts.key_prefix.clone(),
            opts,
            progress,
            next_id: placement.first_id,
            suffix: placement.suffix,
            dict,
            resume: placement.resume,
            now: Timestamp::from_system_time(std::time::SystemTime::now()),
            pack: None,
            batch: Vec::new(),
            batch_bytes: 0,
            encoding: None,
            entries: Sorter::new(duplicates),
            pack_keys: (duplicates == crate::Duplicates::KeepLast).then(Default::default),
            packs: Vec::new(),
            written: Vec::new(),
            kept: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// The options it writes with.
    pub fn options(&self) -> &PackOptions {
        &self.opts
    }

    /// Writes everything `source` yields.
    pub fn write_source(&mut self, source: &mut dyn Source) -> Result<()> {
        while let Some(item) = source.next_item()? {
            match item {
                Item::Record(r) => self.write(r)?,
                Item::Skipped(s) => self.skip(s),
            }
        }
        Ok(())
    }

    /// Writes the head of a stream that a dictionary was learnt from: its skipped entries and
    /// its records.
    pub(crate) fn write_head(&mut self, head: crate::dict::Head) -> Result<()> {
        for s in head.skipped {
            self.skip(s);
        }
        for r in head.records {
            self.write(r)?;
        }
        // The spooled record, if any, was read above: its file may go.
        drop(head.spool);
        Ok(())
    }

    /// Writes one record. Its content is read to the end before this returns.
    pub fn write(&mut self, record: Record<'_>) -> Result<()> {
        let key = format!("{}{}", self.key_prefix, record.key);
        check_record_key(&key)?;
        let meta = RecordMeta {
            content_type: record.content_type.or_else(|| mime_guess::from_path(&key).first_raw().map(str::to_owned)),
            key,
            mtime: record.mtime.unwrap_or(self.now),
            mode: record.mode.unwrap_or(0o644),
        };
        match record.content {
            Content::Bytes(bytes) if bytes.len() as u64 <= STREAM_THRESHOLD => {
                self.queue(Pending { meta, content: Small::Bytes(bytes) })
            }
            Content::Bytes(bytes) => self.write_large(meta, &mut std::io::Cursor::new(bytes), None),
            Content::File { path, len } if len <= STREAM_THRESHOLD => {
                self.queue(Pending { meta, content: Small::File { path, len } })
            }
            Content::File { path, len: _ } => match std::fs::File::open(&path) {
                Ok(mut file) => self.write_large(meta, &mut file, Some(&path)),
                Err(source) => self.fail_or_skip(Error::Unreadable { path, source }),
            },
            Content::Reader { mut reader, len } => {
                // Up to the threshold in memory; what goes past it streams.
                let head_len = len.unwrap_or(u64::MAX).min(STREAM_THRESHOLD + 1);
                let mut head = Vec::with_capacity(head_len.min(1 << 20) as usize);
                (&mut reader).take(head_len).read_to_end(&mut head).map_err(content_error(&meta.key))?;
                if head.len() as u64 <= STREAM_THRESHOLD {
                    if let Some(len) = len.filter(|len| *len != head.len() as u64) {
                        return Err(short_content(&meta.key, len, head.len() as u64));
                    }
                    return self.queue(Pending { meta, content: Small::Bytes(head) });
                }
                let key = meta.key.clone();
                let mut counted = Counted { inner: std::io::Cursor::new(head).chain(reader), read: 0 };
                self.write_large(meta, &mut counted, None)?;
                match len {
                    Some(len) if len != counted.read => Err(short_content(&key, len, counted.read)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Reports an entry passed over.
    pub fn skip(&mut self, skipped: Skipped) {
        tracing::debug!("skipping {}: {}", skipped.path.display(), skipped.reason);
        self.progress.skipped(&skipped.path, &skipped.reason);
        self.skipped.push(skipped);
    }

    fn queue(&mut self, pending: Pending) -> Result<()> {
        self.batch_bytes += match &pending.content {
            Small::Bytes(b) => b.len() as u64,
            Small::File { len, .. } => *len,
        };
        self.batch.push(pending);
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_RECORDS {
            // Encode this batch in the background; append the one before meanwhile.
            let next = self.start_batch();
            if let Some(prev) = self.encoding.replace(next) {
                self.append_batch(prev.wait()?)?;
            }
        }
        Ok(())
    }

    fn start_batch(&mut self) -> Encoding {
        self.batch_bytes = 0;
        Encoding::start(std::mem::take(&mut self.batch), self.opts.compression, self.dict.clone())
    }

    /// Appends every record queued so far, in order.
    fn drain(&mut self) -> Result<()> {
        if let Some(prev) = self.encoding.take() {
            self.append_batch(prev.wait()?)?;
        }
        if !self.batch.is_empty() {
            let rest = self.start_batch();
            self.append_batch(rest.wait()?)?;
        }
        Ok(())
    }

    /// Finishes the last pack. Returns the packs and the entries of every record, sorted.
    pub fn finish(mut self) -> Result<Written> {
        self.drain()?;
        if let Some(p) = self.pack.take() {
            self.finish_pack(p)?;
        }
        let entries = self.entries.finish()?;
        // Records a later one under the same key replaced are dead bytes from the start.
        for e in entries.dropped() {
            let p = (self.packs.iter_mut().find(|p| p.id == e.pack))
                .ok_or_else(|| Error::Bug(format!("{:?} was written to no pack", e.key)))?;
            p.dead_records += 1;
            p.dead_bytes += e.len;
        }
        Ok(Written { packs: self.packs, entries, skipped: self.skipped, written: self.written, kept: self.kept })
    }

    /// With `skip_unreadable`, records a file-level failure and goes on; otherwise stops.
    pub fn fail_or_skip(&mut self, e: Error) -> Result<()> {
        let path = match &e {
            Error::Unreadable { path, .. } if self.opts.skip_unreadable => path.clone(),
            _ => return Err(e),
        };
        self.skip(Skipped { path, reason: e.to_string() });
        Ok(())
    }

    fn current_pack(&mut self) -> Result<&mut PackWriter> {
        if self.pack.is_none() {
            let id = self.next_id;
            self.next_id = haypack_format::pack_id_after(id)?;
            let container = self.opts.compression.container;
            self.pack = Some(PackWriter::create(&*self.store, id, &self.suffix, container, self.resume)?);
        }
        self.pack.as_mut().ok_or_else(|| Error::Bug("no current pack".into()))
    }

    fn finish_pack(&mut self, pack: PackWriter) -> Result<()> {
        if let Some(keys) = &mut self.pack_keys {
            keys.clear();
        }
        let name = pack.name().to_owned();
        let (pack_ref, finished) = pack.finish()?;
        tracing::debug!("finished {name}: {} records, {} bytes", pack_ref.records, pack_ref.size);
        match finished {
            Finished::Written(_) => self.written.push(name),
            Finished::Kept(_) => self.kept.push(name),
        }
        self.packs.push(pack_ref);
        crate::fault::step("pack written");
        Ok(())
    }

    /// Appends a batch of encoded records in order.
    fn append_batch(&mut self, encoded: Vec<Result<Encoded>>) -> Result<()> {
        for enc in encoded {
            match enc {
                Ok(enc) => self.append(&enc.header, |p| p.write(&enc.bytes).map_err(|e| io_error(p.name(), e)))?,
                Err(e) => self.fail_or_skip(e)?,
            }
        }
        Ok(())
    }

    /// Appends one record, written by `write`, to the current pack: a record larger than the
    /// pack size gets a pack of its own, and a pack that reached its size is finished. With
    /// [`crate::Duplicates::KeepLast`], a key already in the current pack ends the pack first:
    /// a pack's own index holds each key once.
    fn append(&mut self, header: &RecordHeader, write: impl FnOnce(&mut PackWriter) -> Result<()>) -> Result<()> {
        let own_pack = header.raw_len > self.opts.pack_size;
        let repeated = self.pack_keys.as_ref().is_some_and(|k| k.contains(&header.key));
        if (own_pack || repeated)
            && let Some(p) = self.pack.take().filter(|p| !p.is_empty())
        {
            self.finish_pack(p)?;
        }
        let pack_size = self.opts.pack_size;
        let p = self.current_pack()?;
        let start = p.len();
        write(p)?;
        let entry = p.add_entry(header, start)?;
        let full = own_pack || p.len() >= pack_size;
        if let Some(keys) = &mut self.pack_keys {
            keys.insert(entry.key.clone());
        }
        self.entries.push(entry)?;
        self.progress.packed(1, header.raw_len);
        if full && let Some(p) = self.pack.take() {
            self.finish_pack(p)?;
        }
        Ok(())
    }

    /// Streams one large record: encoded into a temporary file, then copied into a pack.
    /// `path` names the file the content comes from, if it is one (for its errors).
    fn write_large(&mut self, meta: RecordMeta, content: &mut dyn Read, path: Option<&Path>) -> Result<()> {
        self.drain()?;
        let (header, mut temp, suffix) = match encode_large(meta, content, path, self.opts.compression) {
            Ok(done) => done,
            Err(e) => return self.fail_or_skip(e),
        };
        let prefix = self.opts.compression.container.record_prefix(&header)?;
        let key = header.key.clone();
        self.append(&header, move |p| {
            p.write(&prefix).map_err(|e| io_error(p.name(), e))?;
            let temp_err = |source| Error::Temp { path: key.clone().into(), source };
            temp.rewind().map_err(temp_err)?;
            let mut buf = vec![0; 1 << 20];
            loop {
                let n = temp.read(&mut buf).map_err(temp_err)?;
                if n == 0 {
                    break;
                }
                p.write(&buf[..n]).map_err(|e| io_error(p.name(), e))?;
            }
            p.write(&suffix).map_err(|e| io_error(p.name(), e))
        })
    }
}

/// A key is 1 to [`MAX_KEY_LEN`] bytes of UTF-8 without NUL. Keys need not be paths (a WARC's
/// are URIs): where a key becomes a path (`extract`) or a URL (`serve`), the key is checked
/// there, and refused if it would escape the target.
pub(crate) fn check_record_key(key: &str) -> Result<()> {
    let why = if key.is_empty() {
        "it is empty"
    } else if key.len() > MAX_KEY_LEN {
        "it is longer than a key may be"
    } else if key.contains('\0') {
        "it holds a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::BadKey { key: key.to_owned(), why })
}

/// Counts what a reader gave.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn content_error(key: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Content { key: key.to_owned(), source }
}

fn short_content(key: &str, expected: u64, found: u64) -> Error {
    Error::Content {
        key: key.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the source said {expected} bytes and gave {found}"),
        ),
    }
}

fn encode_small(p: Pending, compression: Compression, dict: Option<&Dictionary>) -> Result<Encoded> {
    let raw = match p.content {
        Small::Bytes(b) => b,
        Small::File { path, len } => {
            let raw = std::fs::read(&path).map_err(|source| Error::Unreadable { path: path.clone(), source })?;
            if raw.len() as u64 != len {
                return Err(Error::Unreadable {
                    path,
                    source: std::io::Error::other(format!("changed size while being packed ({len} -> {})", raw.len())),
                });
            }
            raw
        }
    };
    let (header, bytes) = encode_record_with(compression, dict, p.meta, &raw)?;
    Ok(Encoded { header, bytes })
}

/// Encodes a large record into an anonymous temporary file. Whether to compress is decided on
/// the first MiB, so incompressible media is stored without compressing all of it first.
fn encode_large(
    meta: RecordMeta,
    content: &mut dyn Read,
    path: Option<&Path>,
    compression: Compression,
) -> Result<(RecordHeader, std::fs::File, Vec<u8>)> {
    let read_err = |source| match path {
        Some(path) => Error::Unreadable { path: path.to_owned(), source },
        None => Error::Content { key: meta.key.clone(), source },
    };
    let named: PathBuf = path.map_or_else(|| meta.key.clone().into(), Path::to_owned);
    let temp_err = |source| Error::Temp { path: named.clone(), source };
    let container = compression.container;
    let mut sample = Vec::with_capacity(1 << 20);
    content.take(1 << 20).read_to_end(&mut sample).map_err(read_err)?;
    let codec = if compression.compress {
        let trial = encode_record(compression, meta.clone(), &sample)?.0;
        if trial.codec == Codec::Stored { Codec::Stored } else { container.codec() }
    } else {
        Codec::Stored
    };
    let temp = tempfile::tempfile().map_err(temp_err)?;
    let out = std::io::BufWriter::with_capacity(1 << 20, temp);
    let mut enc = ContentEncoder::new(container, codec, compression.level, None, out)?;
    enc.write_all(&sample).map_err(temp_err)?;
    copy(content, &mut enc).map_err(|e| match e {
        Side::Read(e) => read_err(e),
        Side::Write(e) => temp_err(e),
    })?;
    let (out, summary) = enc.finish()?;
    let temp = out.into_inner().map_err(|e| temp_err(e.into_error()))?;
    let header = RecordHeader {
        key: meta.key,
        codec,
        raw_len: summary.raw_len,
        stored_len: summary.stored_len,
        crc32c: summary.crc32c,
        mtime: meta.mtime,
        mode: meta.mode,
        content_type: meta.content_type,
        dict_id: 0,
    };
    Ok((header, temp, container.record_suffix(summary.crc32_ieee, summary.raw_len)))
}

/// Which side of a copy failed: the source being read, or the temporary file.
enum Side {
    Read(std::io::Error),
    Write(std::io::Error),
}

fn copy(from: &mut dyn Read, to: &mut impl Write) -> std::result::Result<(), Side> {
    let mut buf = vec![0; 256 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Side::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Side::Write)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_long_and_nul_keys_are_refused() {
        for bad in ["".to_owned(), "a\0b".to_owned(), "k".repeat(MAX_KEY_LEN + 1)] {
            assert!(matches!(check_record_key(&bad), Err(Error::BadKey { .. })), "{bad:?}");
        }
        for good in ["a", "a/b.c", ".hidden/x", "https://example.com/a?b", "ä/ü"] {
            check_record_key(good).expect(good);
        }
    }
}

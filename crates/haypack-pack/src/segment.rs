//! The public record writer, and segments: what a writer leaves in a store when it does not
//! commit, and the one commit that merges many of them into an archive.
//!
//! A writer (this process, another one, another machine) writes packs and a sorted index run
//! under names no other writer uses, and describes them in a [`Segment`]. Committing segments
//! merges their runs with the archive's index in one streaming pass (a k-way merge that holds
//! one block per segment) and commits the result with compare-and-swap like every other
//! change, merging again on top of whatever another writer committed first.

use std::collections::HashMap;
use std::sync::Arc;

use haypack_format::{
    Dictionary, Entry, MANIFEST_NAME, MAX_PAGE_DECODED, Manifest, PackRef, SEGMENT_VERSION, Segment, decode_page,
};
use haypack_read::Archive;
use haypack_source::{Record, Skipped, Source};
use haypack_store::{PutMode, Store};

use crate::mutate::{ChangeReport, commit_written};
use crate::records::{Placement, RecordWriter, Written};
use crate::sort::{Duplicates, Merge, Run};
use crate::update::{Change, ChangeIter, Changes, Update, commit, unique_token};
use crate::{CREATED_BY, Error, PackOptions, Progress, Result, remove_objects, write_index};

/// Writes records, in any key order, into new packs of an archive's store, and ends with a
/// commit (the records join the archive, which is created if there is none) or a segment
/// (written, not committed: see [`commit_segments`]).
///
/// `write` blocks (it reads and compresses): call it from a thread that may block, such as
/// `tokio::task::spawn_blocking`'s, never from an async task.
///
/// ```
/// use std::sync::Arc;
/// use haypack_pack::{PackOptions, Writer};
/// use haypack_source::{Content, Record};
/// use haypack_store::LocalStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Arc::new(LocalStore::new(dir.path().join("archive")));
/// let mut writer = Writer::open(store, PackOptions::default(), Arc::new(())).await?;
/// let writer = tokio::task::spawn_blocking(move || {
///     for key in ["b.txt", "a.txt"] {
///         let content = Content::Bytes(format!("record {key}").into_bytes());
///         writer.write(Record { key: key.into(), mtime: None, mode: None, content_type: None, content })?;
///     }
///     Ok::<_, haypack_pack::Error>(writer)
/// })
/// .await??;
/// let report = writer.commit().await?;
/// assert_eq!(report.added, 2);
/// # Ok(())
/// # }
/// ```
pub struct Writer {
    store: Arc<dyn Store>,
    inner: RecordWriter,
    token: String,
    dictionary: Option<u32>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("store", &self.store.describe()).field("token", &self.token).finish()
    }
}

impl Writer {
    /// A writer into the archive in `store`, or into a store with no archive yet. Records
    /// are compressed with the archive's newest dictionary, if it has one (`opts.dictionary`
    /// trains one only when packing a directory: see [`crate::pack`]).
    pub async fn open(store: Arc<dyn Store>, opts: PackOptions, progress: Arc<dyn Progress>) -> Result<Writer> {
        let dict = match Archive::open(store.clone()).await {
            Ok(archive) => archive.dictionaries().await?.iter().max_by_key(|d| d.id()).cloned().map(Arc::new),
            Err(haypack_read::Error::NoArchive { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let token = unique_token();
        let placement = Placement { first_id: 1, suffix: format!("-{token}"), resume: false };
        let dictionary = dict.as_deref().map(Dictionary::id);
        let inner = RecordWriter::new(store.clone(), opts, progress, placement, dict);
        Ok(Writer { store, inner, token, dictionary })
    }

    /// Writes one record; its content is read to its end before this returns.
    pub fn write(&mut self, record: Record<'_>) -> Result<()> {
        self.inner.write(record)
    }

    /// Writes every record `source` yields, and reports what it skipped.
    pub fn write_source(&mut self, source: &mut dyn Source) -> Result<()> {
        self.inner.write_source(source)
    }

    /// Writes every record of `src`: a directory (every file under it, keyed by its path
    /// relative to `src`), or a tar, zip or WARC stream (`-` is standard input), as the
    /// options' `format` says or its bytes reveal.
    pub fn write_from(&mut self, src: &std::path::Path) -> Result<()> {
        let opts = self.inner.options().clone();
        crate::feed_source(&mut self.inner, src, &opts)
    }

    /// Reports an entry passed over.
    pub fn skip(&mut self, skipped: Skipped) {
        self.inner.skip(skipped);
    }

    /// Finishes the packs, on a blocking thread.
    async fn finish(self) -> Result<(Arc<dyn Store>, Written, String, Option<u32>)> {
        let Writer { store, inner, token, dictionary } = self;
        let written = tokio::task::spawn_blocking(move || inner.finish())
            .await
            .map_err(|e| Error::Bug(format!("the writer stopped: {e}")))??;
        Ok((store, written, token, dictionary))
    }

    /// Commits the records as the next generation of the archive (creating it if there is
    /// none): a key it already holds gets the new record. Nothing is committed if this fails,
    /// and what the writer wrote is removed.
    pub async fn commit(self) -> Result<ChangeReport> {
        let (store, written, token, _) = self.finish().await?;
        let skipped = written.skipped.clone();
        if written.packs.is_empty() {
            return Ok(ChangeReport { manifest: None, added: 0, removed: 0, skipped, retries: 0 });
        }
        if let Err(e) = ensure_archive(&*store).await {
            remove_objects(&*store, &written.written).await;
            return Err(e);
        }
        let c = commit_written(&store, written, None, &token).await?;
        Ok(ChangeReport {
            added: c.tally.added - c.tally.removed,
            removed: c.tally.removed,
            manifest: Some(c.manifest),
            skipped,
            retries: c.retries,
        })
    }

    /// Writes the records' sorted index run next to their packs and describes both, without
    /// committing. The description is what [`commit_segments`] takes; until then no reader
    /// sees the records, and `gc` removes the objects once they are older than its grace
    /// period. `None` when no record was written.
    pub async fn segment(self) -> Result<(Option<Segment>, Vec<Skipped>)> {
        let (store, written, token, dictionary) = self.finish().await?;
        if written.packs.is_empty() {
            return Ok((None, written.skipped));
        }
        let s = store.clone();
        let name = format!("index/segment-{token}.hpi");
        let (written, index) = tokio::task::spawn_blocking(move || {
            let index = write_index(&*s, name, false, &written.entries, false);
            (written, index)
        })
        .await
        .map_err(|e| Error::Bug(format!("the writer stopped: {e}")))?;
        let (index, _) = match index {
            Ok(i) => i,
            Err(e) => {
                remove_objects(&*store, &written.written).await;
                return Err(e);
            }
        };
        let segment = Segment {
            format: "haypack-segment".into(),
            version: SEGMENT_VERSION,
            archive: store.describe(),
            token,
            created_by: CREATED_BY.into(),
            records: written.records(),
            raw_bytes: written.raw_bytes(),
            packs: written.packs,
            index,
            dictionary,
        };
        segment.validate()?;
        Ok((Some(segment), written.skipped))
    }
}

/// Creates an empty archive (generation 0) in `store` unless there is one: commits land on
/// top of it. The store must hold nothing but packs and index objects.
async fn ensure_archive(store: &dyn Store) -> Result<()> {
    match store.head(MANIFEST_NAME).await {
        Ok(_) => return Ok(()),
        Err(haypack_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Segments are what a commit is for, so look as a forced pack does: only what is not
    // haypack's is refused.
    crate::inspect(store, true).await?;
    let empty = Manifest::empty(CREATED_BY);
    match store.put(MANIFEST_NAME, empty.to_json().into(), PutMode::Create).await {
        // Another writer created it first: as good.
        Ok(_) | Err(haypack_store::Error::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What committing segments did.
#[derive(Debug, Clone)]
pub struct SegmentsReport {
    /// The change itself; its manifest is `None` when every segment was committed already.
    pub change: ChangeReport,
    /// Tokens of segments skipped because the archive already holds their packs.
    pub already: Vec<String>,
}

/// Commits `segments` into the archive in `store` (creating it if there is none) as one new
/// generation: their records are added as `add` would, a key the archive holds gets the new
/// record, and two segments holding one key are an error unless `duplicates` keeps the last
/// (segments count in the order given). Streaming: memory holds one index block per segment.
///
/// A segment written for another archive, or whose packs or index are gone, truncated or
/// replaced, is refused and nothing is committed. A segment committed before is skipped, so
/// committing the same segments twice adds nothing twice.
pub async fn commit_segments(
    store: Arc<dyn Store>,
    segments: &[Segment],
    duplicates: Duplicates,
) -> Result<SegmentsReport> {
    let here = store.describe();
    for s in segments {
        s.validate()?;
        if s.archive != here {
            return Err(Error::ForeignSegment {
                token: s.token.clone(),
                written_for: s.archive.clone(),
                archive: here,
            });
        }
    }
    let mut base = match Archive::open_for_update(store.clone()).await {
        Ok(b) => Some(b),
        Err(haypack_read::Error::NoArchive { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    // Committed before: the archive names its packs. (Packs it retired since, by compaction or
    // by `gc` as leftovers, are refused by the commit's own checks: nothing is added twice.)
    let known: std::collections::HashSet<String> =
        base.iter().flat_map(|(a, _)| a.manifest().packs.iter().map(|p| p.name.clone())).collect();
    let (already, todo): (Vec<&Segment>, Vec<&Segment>) =
        segments.iter().partition(|s| s.packs.iter().any(|p| known.contains(&p.name)));
    let already: Vec<String> = already.iter().map(|s| s.token.clone()).collect();
    let mut report = SegmentsReport {
        change: ChangeReport { manifest: None, added: 0, removed: 0, skipped: Vec::new(), retries: 0 },
        already,
    };
    if todo.is_empty() {
        return Ok(report);
    }
    for s in &todo {
        let has = |id: u32| base.as_ref().is_some_and(|(a, _)| a.manifest().dictionary(id).is_some());
        if let Some(id) = s.dictionary.filter(|id| !has(*id)) {
            return Err(Error::SegmentIncomplete {
                token: s.token.clone(),
                detail: format!("its records need dictionary {id}, which the archive does not have"),
            });
        }
        check_objects(&*store, s).await?;
    }
    let (archive, version) = match base.take() {
        Some(b) => b,
        None => {
            ensure_archive(&*store).await?;
            Archive::open_for_update(store.clone()).await?
        }
    };
    // Each segment's packs get ids no other segment's use; the commit renumbers them again,
    // after the archive's own.
    let mut new_packs = Vec::new();
    let mut ids: Vec<HashMap<u32, u32>> = Vec::new();
    for s in &todo {
        let mut map = HashMap::new();
        for p in &s.packs {
            let id = u32::try_from(new_packs.len() + 1).map_err(|_| Error::Bug("too many packs".into()))?;
            map.insert(p.id, id);
            new_packs.push(PackRef { id, ..p.clone() });
        }
        ids.push(map);
    }
    let runs: Arc<Vec<(Arc<Segment>, PackIds)>> =
        Arc::new(todo.iter().map(|s| Arc::new((*s).clone())).zip(ids).collect());
    let open_runs = {
        let (store, runs) = (store.clone(), runs.clone());
        move || -> Result<Merge> {
            let handle = tokio::runtime::Handle::current();
            let readers: Vec<Box<dyn Run>> = (runs.iter())
                .map(|(s, ids)| {
                    let run = SegmentRun::new(store.clone(), s.clone(), ids.clone(), handle.clone());
                    Box::new(run) as Box<dyn Run>
                })
                .collect();
            Merge::new(readers, duplicates)
        }
    };
    if duplicates == Duplicates::KeepLast {
        // Records that lose to a later segment's are dead in their packs: found before the
        // commit, by one merge on a blocking thread.
        let mut merge = open_runs()?;
        let dropped = tokio::task::spawn_blocking(move || {
            for e in merge.by_ref() {
                e?;
            }
            Ok::<_, Error>(merge.dropped)
        })
        .await
        .map_err(|e| Error::Bug(format!("the merge stopped: {e}")))??;
        for e in dropped {
            let p = (new_packs.iter_mut().find(|p| p.id == e.pack))
                .ok_or_else(|| Error::Bug(format!("{:?} names no pack of its segment", e.key)))?;
            p.dead_records += 1;
            p.dead_bytes += e.len;
        }
    }
    let open = move || -> Result<ChangeIter> { Ok(Box::new(open_runs()?.map(|e| e.map(Change::Put)))) };
    let update = Update { changes: Changes::Streamed(Arc::new(open)), new_packs, ..Update::default() };
    let c = commit(&store, &update, Some((Arc::new(archive), version)), &unique_token()).await?;
    // The runs are merged into the archive's index now; gc would remove them too.
    for s in runs.iter() {
        for o in &s.0.index.objects {
            if let Err(e) = store.delete(&o.name).await {
                tracing::warn!("could not remove {}, a committed segment's index run: {e}", o.name);
            }
        }
    }
    report.change = ChangeReport {
        added: c.tally.added - c.tally.removed,
        removed: c.tally.removed,
        manifest: Some(c.manifest),
        skipped: Vec::new(),
        retries: c.retries,
    };
    Ok(report)
}

/// A segment's pack ids and the ids its packs have in a commit.
type PackIds = HashMap<u32, u32>;

/// Every object of the segment must be there, at the size it describes.
async fn check_objects(store: &dyn Store, s: &Segment) -> Result<()> {
    let sizes = s.packs.iter().map(|p| (&p.name, p.size)).chain(s.index.objects.iter().map(|o| (&o.name, o.size)));
    for (name, size) in sizes {
        let detail = match store.head(name).await {
            Ok(meta) if meta.size == size => continue,
            Ok(meta) => format!("{name} is {} bytes, the segment says {size}: truncated or replaced", meta.size),
            Err(haypack_store::Error::NotFound { .. }) => format!("{name} is gone"),
            Err(e) => return Err(e.into()),
        };
        return Err(Error::SegmentIncomplete { token: s.token.clone(), detail });
    }
    Ok(())
}

/// A segment's index run, read block by block from the store, its entries renumbered to the
/// commit's pack ids. Reads on the thread that pulls it (a blocking one: see `update.rs`).
struct SegmentRun {
    store: Arc<dyn Store>,
    segment: Arc<Segment>,
    ids: HashMap<u32, u32>,
    handle: tokio::runtime::Handle,
    next_block: usize,
    entries: std::vec::IntoIter<Entry>,
    /// Bytes read ahead: the object, where they start in it, and the bytes.
    window: Option<(u32, u64, bytes::Bytes)>,
}

/// A segment's index blocks are read [`READ_AHEAD`] bytes at a time (consecutive blocks of one
/// object in one request), not one request per block: a commit merging many segments waits on
/// the store once per window, not once per few thousand records.
const READ_AHEAD: u64 = 1 << 20;

impl SegmentRun {
    fn new(
        store: Arc<dyn Store>,
        segment: Arc<Segment>,
        ids: HashMap<u32, u32>,
        handle: tokio::runtime::Handle,
    ) -> Self {
        SegmentRun { store, segment, ids, handle, next_block: 0, entries: Vec::new().into_iter(), window: None }
    }

    /// The bytes of block `i`: from the window, or by reading the window that starts with it.
    fn block_bytes(&mut self, i: usize) -> Result<bytes::Bytes> {
        let blocks = &self.segment.index.blocks;
        let b = &blocks[i];
        let end = b.offset.checked_add(b.len).ok_or_else(|| self.corrupt(format!("index block {i} ends past 2^64")))?;
        if let Some((object, start, bytes)) = &self.window
            && *object == b.object
            && b.offset >= *start
            && end <= start + bytes.len() as u64
        {
            return Ok(bytes.slice((b.offset - start) as usize..(end - start) as usize));
        }
        // The blocks that follow this one in the same object, as far as the window goes.
        let mut window_end = end;
        for next in &blocks[i + 1..] {
            let next_end = next.offset.saturating_add(next.len);
            if next.object != b.object || next.offset != window_end || next_end - b.offset > READ_AHEAD {
                break;
            }
            window_end = next_end;
        }
        let object = &self.segment.index.objects[b.object as usize].name;
        let bytes = self.handle.block_on(self.store.get_range(object, b.offset..window_end))?;
        if (bytes.len() as u64) < end - b.offset {
            return Err(self.corrupt(format!("{object} ends before its index block at offset {}", b.offset)));
        }
        self.window = Some((b.object, b.offset, bytes));
        self.block_bytes(i)
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::SegmentIncomplete { token: self.segment.token.clone(), detail }
    }
}

impl Run for SegmentRun {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(mut e) = self.entries.next() {
                e.pack = *self.ids.get(&e.pack).ok_or_else(|| {
                    self.corrupt(format!("its index names pack {} for {:?}, which it does not hold", e.pack, e.key))
                })?;
                return Ok(Some(e));
            }
            let i = self.next_block;
            if i >= self.segment.index.blocks.len() {
                return Ok(None);
            }
            self.next_block += 1;
            let bytes = self.block_bytes(i)?;
            let b = &self.segment.index.blocks[i];
            let object = &self.segment.index.objects[b.object as usize].name;
            let entries = decode_page(&bytes, b.head, b.crc32c, MAX_PAGE_DECODED)
                .map_err(|e| self.corrupt(format!("{object}: index page at offset {}: {e}", b.offset)))?;
            if entries.len() as u64 != b.records {
                return Err(
                    self.corrupt(format!("{object}: index block at offset {} is not the one described", b.offset))
                );
            }
            self.entries = entries.into_iter();
        }
    }
}

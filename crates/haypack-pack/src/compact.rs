//! `compact`: rewrite the packs whose dead fraction passed a threshold, copying their live
//! records' stored bytes verbatim into new packs, and commit the moves.
//!
//! Bytes that pass through this process are checked record by record (header against the
//! index, content against its checksum) on their way. On a store that copies ranges itself (S3's
//! UploadPartCopy), long runs of live records are copied there instead and never downloaded;
//! only the short runs between them travel.
//!
//! The old packs are not deleted: the commit retires them, and `gc` deletes them once no
//! reader can still be pinned to a generation that used them.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use haypack_format::{Budget, Container, Entry, FOOTER_TAIL, Footer, Manifest, PackRef};
use haypack_read::{Archive, RecordCheck};
use haypack_store::Store;
use tokio::runtime::Handle;

use crate::update::{Change, Update, commit, unique_token};
use crate::writer::PackWriter;
use crate::{DEFAULT_PACK_SIZE, Error, Progress, Result, fault};

/// Bytes read at once when records travel through this process: a record within the read
/// budget comes whole, a larger one in pieces this size; each is checked a step at a time
/// ([`RecordCheck`]), so what a copy holds does not depend on what the record decodes to.
const CHUNK: u64 = Budget::WHOLE;

/// How to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Rewrite a pack once this fraction of its bytes is dead.
    pub min_garbage: f64,
    /// Target size of the new packs.
    pub pack_size: u64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions { min_garbage: 0.3, pack_size: DEFAULT_PACK_SIZE }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default)]
pub struct CompactReport {
    /// The manifest it committed; `None` when nothing passed the threshold.
    pub manifest: Option<Manifest>,
    /// Packs rewritten, now retired.
    pub compacted: Vec<String>,
    /// New packs.
    pub written: Vec<String>,
    /// Bytes of live records copied.
    pub live_bytes: u64,
    /// Bytes read from the old packs: the live records that travelled through this process
    /// (and were uploaded again), plus dead bytes between them that were cheaper to read along.
    pub downloaded: u64,
    /// Bytes of live records the store copied itself.
    pub copied_in_store: u64,
    /// Dead bytes the compacted packs held: freed when `gc` deletes them.
    pub reclaimable: u64,
    /// Commits by other writers this one merged on top of.
    pub retries: u32,
}

/// Compacts the archive in `store`: every pack whose dead bytes are at least `min_garbage` of
/// its size is rewritten without them, and the index is rewritten into one object.
pub async fn compact(
    store: Arc<dyn Store>,
    opts: CompactOptions,
    progress: Arc<dyn Progress>,
) -> Result<CompactReport> {
    let (archive, version) = Archive::open_for_update(store.clone()).await?;
    // Records are checked as they are copied: against their dictionary, if they have one.
    archive.dictionaries().await?;
    let archive = Arc::new(archive);
    let m = archive.manifest();
    let garbage = |dead: u64, size: u64| dead > 0 && dead as f64 >= opts.min_garbage * size as f64;
    let chosen: Vec<PackRef> = m.packs.iter().filter(|p| garbage(p.dead_bytes, p.size)).cloned().collect();
    let index_garbage = m.index_bytes().saturating_sub(archive.live_index_bytes().await?);
    let mut report = CompactReport::default();
    if chosen.is_empty() && (m.index.objects.len() < 2 || !garbage(index_garbage, m.index_bytes())) {
        return Ok(report);
    }
    let ids: HashSet<u32> = chosen.iter().map(|p| p.id).collect();
    let mut live = Vec::new();
    if !ids.is_empty() {
        archive
            .scan("", |e| {
                if ids.contains(&e.pack) {
                    live.push(e.clone());
                }
                true
            })
            .await?;
    }
    live.sort_unstable_by_key(|e| (e.pack, e.offset));
    let live_bytes = live.iter().map(|e| e.len).sum();

    let token = unique_token();
    let first_id = m.next_pack_id()?;
    let copier = Copier {
        store: store.clone(),
        archive: archive.clone(),
        handle: Handle::current(),
        suffix: format!("-{token}"),
        next_id: first_id,
        pack_size: opts.pack_size,
        progress,
        current: None,
        packs: Vec::new(),
        written: Vec::new(),
        moves: Vec::new(),
        spans: Vec::new(),
        window: None,
        downloaded: 0,
        copied_in_store: 0,
    };
    let sources = chosen.clone();
    let (mut copier, copied) = tokio::task::spawn_blocking(move || {
        let mut copier = copier;
        let copied = copier.run(&sources, &live);
        (copier, copied)
    })
    .await
    .expect("compaction does not panic");
    let committed = async {
        copied?;
        let mut changes = std::mem::take(&mut copier.moves);
        changes.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        let update = Update {
            changes: changes.into(),
            new_packs: copier.packs.clone(),
            drop_packs: chosen.iter().map(|p| p.name.clone()).collect(),
            rewrite_index: true,
        };
        commit(&store, &update, Some((archive, version)), &token).await
    };
    match committed.await {
        Ok(c) => {
            report.manifest = Some(c.manifest);
            report.retries = c.retries;
        }
        Err(e) => {
            for name in &copier.written {
                if let Err(cleanup) = store.delete(name).await {
                    tracing::warn!("could not remove {name} after a failed compaction: {cleanup}");
                }
            }
            return Err(e);
        }
    }
    report.compacted = chosen.iter().map(|p| p.name.clone()).collect();
    report.reclaimable = chosen.iter().map(|p| p.dead_bytes).sum();
    report.written = copier.written;
    report.downloaded = copier.downloaded;
    report.copied_in_store = copier.copied_in_store;
    report.live_bytes = live_bytes;
    Ok(report)
}

/// Copies live records into new packs, on a blocking thread (pack writers block).
struct Copier {
    store: Arc<dyn Store>,
    archive: Arc<Archive>,
    handle: Handle,
    suffix: String,
    next_id: u32,
    pack_size: u64,
    progress: Arc<dyn Progress>,
    current: Option<PackWriter>,
    packs: Vec<PackRef>,
    written: Vec<String>,
    moves: Vec<Change>,
    /// Where to read ahead in the pack being copied, and what was read.
    spans: Vec<Range<u64>>,
    window: Option<(u64, bytes::Bytes)>,
    downloaded: u64,
    copied_in_store: u64,
}

impl Copier {
    /// Copies `live` (sorted by pack and offset) out of the `sources`.
    fn run(&mut self, sources: &[PackRef], live: &[Entry]) -> Result<()> {
        for pack in sources {
            let from = live.partition_point(|e| e.pack < pack.id);
            let to = live.partition_point(|e| e.pack <= pack.id);
            if from < to {
                self.copy_pack(pack, &live[from..to])?;
            }
        }
        self.finish_current()
    }

    fn copy_pack(&mut self, pack: &PackRef, live: &[Entry]) -> Result<()> {
        self.spans = spans(live);
        self.window = None;
        // The footer says the container (new packs keep it: records are copied as they are);
        // reading it also pins the pack's version, which copies inside the store then require.
        let tail = self.read(pack, pack.size.saturating_sub(FOOTER_TAIL as u64)..pack.size, None)?;
        let footer = Footer::decode(&tail, pack.size).map_err(|e| corrupt(pack, footer_offset(pack), None, e))?;
        let version = self.archive.pinned_version(&pack.name).unwrap_or_default();
        let mut i = 0;
        while i < live.len() {
            let pack_size = self.pack_size;
            let room = self.writer(footer.container)?.room(pack_size);
            // A run of adjacent records, as long as the new pack has room for (at least one).
            let mut j = i + 1;
            let mut end = live[i].offset + live[i].len;
            while j < live.len() && live[j].offset == end && end - live[i].offset + live[j].len <= room {
                end += live[j].len;
                j += 1;
            }
            self.copy_run(pack, &version, &live[i..j])?;
            if self.current.as_ref().is_some_and(|w| w.len() >= self.pack_size) {
                self.finish_current()?;
            }
            i = j;
        }
        Ok(())
    }

    /// Copies a run of adjacent records: inside the store where it will take the run (after
    /// whatever lead of whole records it asks to be written first), through here otherwise.
    fn copy_run(&mut self, pack: &PackRef, version: &str, mut run: &[Entry]) -> Result<()> {
        while !run.is_empty() {
            let len = run_end(run) - run[0].offset;
            let writer = self.current.as_ref().expect("a pack is open");
            match writer.copy_lead(len) {
                Some(0) => {
                    let start = writer.len();
                    let range = run[0].offset..run_end(run);
                    self.current.as_mut().expect("open").copy_range(&pack.name, range, version)?;
                    self.copied_in_store += len;
                    self.moved(run, start);
                    return Ok(());
                }
                Some(lead) => {
                    let mut n = 0;
                    let mut bytes = 0;
                    while bytes < lead && n < run.len() {
                        bytes += run[n].len;
                        n += 1;
                    }
                    self.download(pack, &run[..n])?;
                    run = &run[n..];
                }
                None => return self.download(pack, run),
            }
        }
        Ok(())
    }

    /// Reads adjacent records through this process, checking each, and appends them.
    fn download(&mut self, pack: &PackRef, run: &[Entry]) -> Result<()> {
        let start = self.current.as_ref().expect("a pack is open").len();
        for e in run {
            let archive = self.archive.clone();
            let mut check = RecordCheck::new(e, archive.loaded_dictionaries());
            let mut at = e.offset;
            while at < e.offset + e.len {
                // A record larger than CHUNK streams through in pieces; others come whole.
                let next = (at + CHUNK).min(e.offset + e.len);
                let bytes = self.record_bytes(pack, e, at..next)?;
                check.push(&bytes).map_err(|d| corrupt(pack, e.offset, Some(&e.key), d))?;
                let w = self.current.as_mut().expect("a pack is open");
                w.write(&bytes).map_err(|err| crate::writer::io_error(w.name(), err))?;
                at = next;
            }
            check.finish().map_err(|d| corrupt(pack, e.offset, Some(&e.key), d))?;
        }
        self.moved(run, start);
        Ok(())
    }

    /// Bytes `range` of record `e`: from the window read ahead, or by reading the span that holds
    /// it into the window. Records of a pack are asked for in offset order, so each span is read
    /// once.
    fn record_bytes(&mut self, pack: &PackRef, e: &Entry, range: Range<u64>) -> Result<bytes::Bytes> {
        if let Some((start, bytes)) = &self.window
            && range.start >= *start
            && range.end <= start + bytes.len() as u64
        {
            return Ok(bytes.slice((range.start - start) as usize..(range.end - start) as usize));
        }
        let i = self.spans.partition_point(|s| s.end <= range.start);
        let span = match self.spans.get(i) {
            Some(s) if s.start <= range.start && range.end <= s.end && s.end - s.start <= CHUNK => s.clone(),
            _ => range.clone(),
        };
        let bytes = self.read(pack, span.clone(), Some(&e.key))?;
        self.downloaded += bytes.len() as u64;
        self.window = Some((span.start, bytes));
        self.record_bytes(pack, e, range)
    }

    /// Notes that `run` now starts at `start` in the current pack.
    fn moved(&mut self, run: &[Entry], start: u64) {
        let w = self.current.as_mut().expect("a pack is open");
        for e in run {
            let to = w.add_copied(e, start + (e.offset - run[0].offset));
            self.progress.packed(1, e.raw_len);
            self.moves.push(Change::Move { to, from: (e.pack, e.offset) });
        }
    }

    fn read(&self, pack: &PackRef, range: Range<u64>, key: Option<&str>) -> Result<bytes::Bytes> {
        Ok(self.handle.block_on(self.archive.read_range(&pack.name, range, key))?)
    }

    /// The pack being written, started (or switched, for another container) as needed.
    fn writer(&mut self, container: Container) -> Result<&mut PackWriter> {
        if self.current.as_ref().is_some_and(|w| w.container() != container) {
            self.finish_current()?;
        }
        if self.current.is_none() {
            let id = self.next_id;
            self.next_id = haypack_format::pack_id_after(id)?;
            self.current = Some(PackWriter::create(&*self.store, id, &self.suffix, container, false)?);
        }
        Ok(self.current.as_mut().expect("just made"))
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            let name = w.name().to_owned();
            let (pack, _) = w.finish()?;
            tracing::debug!("compacted into {name}: {} records, {} bytes", pack.records, pack.size);
            self.packs.push(pack);
            self.written.push(name);
            fault::step("pack written");
        }
        Ok(())
    }
}

/// The byte ranges to read live records in (sorted by offset): see [`haypack_read::coalesce`].
fn spans(live: &[Entry]) -> Vec<Range<u64>> {
    haypack_read::coalesce(live, CHUNK).into_iter().map(|s| s.bytes).collect()
}

fn run_end(run: &[Entry]) -> u64 {
    run.last().map_or(0, |e| e.offset + e.len)
}

fn footer_offset(pack: &PackRef) -> u64 {
    pack.size.saturating_sub(FOOTER_TAIL as u64)
}

fn corrupt(pack: &PackRef, offset: u64, key: Option<&str>, detail: impl ToString) -> Error {
    haypack_read::Error::Corrupt {
        object: pack.name.clone(),
        offset,
        key: key.map(str::to_owned),
        detail: format!("{}; nothing was compacted", detail.to_string()),
    }
    .into()
}

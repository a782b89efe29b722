//! Changing an archive that is already there: a set of index changes merged into the index of
//! the current generation, committed as the next one with compare-and-swap, and merged again on
//! top of whatever another writer committed first.
//!
//! The index is copy-on-write at block granularity. A change lands in the block whose key range
//! holds its key; only such blocks are read, merged and written again (into one new index
//! object), and the root keeps pointing at every other block where it already is. So a lookup
//! reads one block however many generations came before, and a small change writes a small
//! object.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use haypack_format::{
    BlockRef, Entry, IndexObject, IndexRef, MANIFEST_NAME, MANIFEST_VERSION, Manifest, PackRef, Retired, pack_id_after,
};
use haypack_read::Archive;
use haypack_store::{PutMode, Store};

use crate::writer::{IndexWriter, PAGE_TARGET, weight};
use crate::{CREATED_BY, Error, Result, fault};

/// Commits lost to other writers before giving up.
const MAX_ATTEMPTS: u32 = 8;

/// One change to the index, for one key.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Add the record, replacing any under its key.
    Put(Entry),
    /// Remove the record under this key, if there is one.
    Delete(String),
    /// The record was copied to `to`: point its key there, but only while the index still
    /// points at `from` (pack id, offset). A key written again meanwhile keeps its newer record.
    Move {
        /// The copy.
        to: Entry,
        /// Where the index pointed when the copy was made.
        from: (u32, u64),
    },
}

impl Change {
    pub(crate) fn key(&self) -> &str {
        match self {
            Change::Put(e) | Change::Move { to: e, .. } => &e.key,
            Change::Delete(key) => key,
        }
    }
}

/// Changes in key order, one at a time.
pub(crate) type ChangeIter = Box<dyn Iterator<Item = Result<Change>> + Send>;

/// An update's changes, sorted by key with at most one per key: listed in memory, or streamed
/// from a source that can be read again, since a commit that loses a race merges again.
pub(crate) enum Changes {
    Listed(Vec<Change>),
    Streamed(Arc<dyn Fn() -> Result<ChangeIter> + Send + Sync>),
}

impl Default for Changes {
    fn default() -> Self {
        Changes::Listed(Vec::new())
    }
}

impl From<Vec<Change>> for Changes {
    fn from(changes: Vec<Change>) -> Self {
        Changes::Listed(changes)
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Changes::Listed(c) => write!(f, "{} listed changes", c.len()),
            Changes::Streamed(_) => f.write_str("streamed changes"),
        }
    }
}

impl Changes {
    fn open(&self) -> Result<ChangeIter> {
        match self {
            Changes::Listed(c) => Ok(Box::new(c.clone().into_iter().map(Ok))),
            Changes::Streamed(open) => open(),
        }
    }
}

/// What a merge did to the records.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// Per pack id: records (and their bytes) the index stopped naming.
    pub dead: HashMap<u32, (u64, u64)>,
    /// Records added, and removed.
    pub added: u64,
    pub removed: u64,
    /// Raw bytes added, and removed.
    pub raw_added: u64,
    pub raw_removed: u64,
    /// Deletes that found no record.
    pub missing: u64,
}

impl Tally {
    fn kill(&mut self, e: &Entry) {
        self.removed += 1;
        self.raw_removed += e.raw_len;
        self.bury(e);
    }

    fn bury(&mut self, e: &Entry) {
        let dead = self.dead.entry(e.pack).or_default();
        dead.0 += 1;
        dead.1 += e.len;
    }

    fn add(&mut self, e: &Entry) {
        self.added += 1;
        self.raw_added += e.raw_len;
    }
}

/// A change to commit: index changes and the packs they point into.
#[derive(Debug, Default)]
pub(crate) struct Update {
    /// What changes, in key order.
    pub changes: Changes,
    /// Packs this writer wrote. Their ids, and the ids in `changes` that name them, are
    /// renumbered to follow the packs of whatever generation the commit lands on.
    pub new_packs: Vec<PackRef>,
    /// Packs this change empties and drops from the manifest (compaction's sources).
    pub drop_packs: Vec<String>,
    /// Write every block again, into one object, even those no change touches.
    pub rewrite_index: bool,
}

/// A commit that landed.
#[derive(Debug)]
pub(crate) struct Committed {
    pub manifest: Manifest,
    pub tally: Tally,
    /// Commits by other writers this one had to merge on top of.
    pub retries: u32,
}

/// Commits `update` as the next generation of the archive in `store`, starting from `base` (an
/// archive opened for update) if given. When another writer commits first, the update is merged
/// again on top of that generation: nothing either of them wrote is lost.
pub(crate) async fn commit(
    store: &Arc<dyn Store>,
    update: &Update,
    mut base: Option<(Arc<Archive>, String)>,
    token: &str,
) -> Result<Committed> {
    for retries in 0..MAX_ATTEMPTS {
        let (archive, version) = match base.take() {
            Some(b) => b,
            None => {
                let (archive, version) = Archive::open_for_update(store.clone()).await?;
                (Arc::new(archive), version)
            }
        };
        let generation = archive.manifest().next_generation()?;
        let mut ids = HashMap::new();
        let mut id = archive.manifest().next_pack_id()?;
        for (i, p) in update.new_packs.iter().enumerate() {
            if i > 0 {
                id = pack_id_after(id)?;
            }
            ids.insert(p.id, id);
        }
        let index_name = format!("index/{generation:06}-{token}.hpi");
        let (root, retired_objects, tally) = merge_index(store, &archive, update, &ids, index_name.clone()).await?;
        // Checked against this attempt's base, read before any of them was written or checked:
        // a gc that retires one after that makes the put below fail (see gc.rs).
        let base_objects = archive.manifest().index.objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>();
        let new_index = root.objects.iter().filter(|o| !base_objects.contains(&o.name.as_str()));
        let ours: Vec<(&str, u64)> = (update.new_packs.iter().map(|p| (p.name.as_str(), p.size)))
            .chain(new_index.map(|o| (o.name.as_str(), o.size)))
            .collect();
        if let Err(e) = check_objects(&**store, archive.manifest(), &ours).await {
            // This attempt's index object goes; what becomes of the packs is the caller's call
            // (left, they are `gc`'s: no manifest can name them any more).
            if let Err(cleanup) = store.delete(&index_name).await {
                tracing::warn!("could not remove {index_name} after a refused commit: {cleanup}");
            }
            return Err(e);
        }
        let manifest = next_manifest(archive.manifest(), update, &ids, root, retired_objects, &tally)?;
        fault::step("index written");
        match store.put(MANIFEST_NAME, manifest.to_json().into(), PutMode::Update(version)).await {
            Ok(_) => {
                fault::step("committed");
                return Ok(Committed { manifest, tally, retries });
            }
            Err(e) => {
                if let Err(cleanup) = store.delete(&index_name).await {
                    tracing::warn!("could not remove {index_name} after a lost commit: {cleanup}");
                }
                match e {
                    haypack_store::Error::Conflict { .. } => {
                        tracing::info!("another writer committed generation {generation} first; merging on top of it")
                    }
                    e => return Err(e.into()),
                }
            }
        }
    }
    Err(Error::Contended { archive: store.describe(), attempts: MAX_ATTEMPTS })
}

/// Refuses to commit `objects` (name, size) that a `gc` may have taken for leftovers: one that
/// `base` retired, or that is not in the store at its size. Every writer calls it on the base
/// its compare-and-swap commits on, after reading that base: a gc retires an object only by a
/// commit, so one that retires these after the base was read makes the writer's commit fail,
/// and its next base shows them retired (or they are gone).
pub(crate) async fn check_objects(store: &dyn Store, base: &Manifest, objects: &[(&str, u64)]) -> Result<()> {
    let retired: HashSet<&str> = base.retired.iter().map(|r| r.name.as_str()).collect();
    for &(name, size) in objects {
        let vanished = || Error::Vanished { archive: store.describe(), name: name.to_owned() };
        if retired.contains(name) {
            return Err(vanished());
        }
        match store.head(name).await {
            Ok(meta) if meta.size == size => {}
            Ok(_) | Err(haypack_store::Error::NotFound { .. }) => return Err(vanished()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Merges the update into the archive's index, on a blocking thread (index objects are written
/// by blocking writers). Returns the new root, the index objects it no longer uses, and the tally.
async fn merge_index(
    store: &Arc<dyn Store>,
    archive: &Arc<Archive>,
    update: &Update,
    ids: &HashMap<u32, u32>,
    index_name: String,
) -> Result<(IndexRef, Vec<String>, Tally)> {
    let (store, archive, handle) = (store.clone(), archive.clone(), tokio::runtime::Handle::current());
    let (mut changes, rewrite_all, ids) = (update.changes.open()?.peekable(), update.rewrite_index, ids.clone());
    tokio::task::spawn_blocking(move || {
        let renumber = |mut e: Entry| {
            if let Some(id) = ids.get(&e.pack) {
                e.pack = *id;
            }
            e
        };
        let out = IndexWriter::create(&*store, index_name, false)?;
        let mut merger = Merger::new(out);
        let old = handle.block_on(archive.pages())?;
        let mut last: Option<String> = None;
        // The next change whose key is before `end`, checked to come in order.
        let mut next_before = |end: Option<&str>| -> Result<Option<Change>> {
            match changes.peek() {
                None => return Ok(None),
                Some(Ok(c)) if end.is_some_and(|end| c.key() >= end) => return Ok(None),
                Some(_) => {}
            }
            let c = changes.next().transpose()?;
            if let Some(c) = &c {
                if last.as_deref().is_some_and(|last| last >= c.key()) {
                    return Err(Error::Bug(format!("changes out of order: {last:?} then {:?}", c.key())));
                }
                last = Some(c.key().to_owned());
            }
            Ok(c)
        };
        for i in 0..old.len() {
            let end = old.get(i + 1).map(|b| b.first_key.as_str());
            let first = next_before(end)?;
            if first.is_none() && !rewrite_all {
                merger.keep(i)?;
                continue;
            }
            let entries = handle.block_on(archive.page_entries(i))?;
            merger.merge(&entries, first, &mut || next_before(end), &renumber)?;
        }
        // An empty index has no block to merge into.
        let first = next_before(None)?;
        merger.merge(&[], first, &mut || next_before(None), &renumber)?;
        merger.finish(&archive.manifest().index.objects, &old)
    })
    .await
    .expect("index merges do not panic")
}

/// Where each page of the new index comes from.
enum Slot {
    /// Page `i` of the old index, kept where it is.
    Old(usize),
    /// Page `i` of the new index object.
    New(usize),
}

struct Merger {
    out: IndexWriter,
    /// Merged entries not yet cut into blocks, and their weight.
    run: Vec<Entry>,
    run_weight: usize,
    slots: Vec<Slot>,
    /// New blocks already given a slot.
    registered: usize,
    tally: Tally,
}

impl Merger {
    fn new(out: IndexWriter) -> Self {
        Merger { out, run: Vec::new(), run_weight: 0, slots: Vec::new(), registered: 0, tally: Tally::default() }
    }

    /// Gives the new blocks written so far their places, before whatever comes next.
    fn register(&mut self) {
        let written = self.out.pages().len();
        self.slots.extend((self.registered..written).map(Slot::New));
        self.registered = written;
    }

    fn keep(&mut self, old: usize) -> Result<()> {
        self.cut_run()?;
        self.register();
        self.slots.push(Slot::Old(old));
        Ok(())
    }

    fn push(&mut self, e: Entry) -> Result<()> {
        self.run_weight += weight(&e);
        self.run.push(e);
        // Hold at most two blocks' worth: cut a full block off the front.
        if self.run_weight >= 2 * PAGE_TARGET {
            self.cut(PAGE_TARGET)?;
        }
        Ok(())
    }

    /// Writes entries off the front of the run as one block, until it weighs `target`.
    fn cut(&mut self, target: usize) -> Result<()> {
        let mut w = 0;
        let n = self.run.iter().take_while(|e| (w < target).then(|| w += weight(e)).is_some()).count();
        self.run_weight -= w;
        self.out.extend(self.run.drain(..n))?;
        self.out.flush()
    }

    /// Ends the run before a kept block: as one block, or as two even halves if it outgrew one,
    /// so that rewritten blocks stay at least half full.
    fn cut_run(&mut self) -> Result<()> {
        if self.run_weight > PAGE_TARGET {
            self.cut(self.run_weight / 2)?;
        }
        let w = self.run_weight;
        self.cut(w.max(1))
    }

    /// Merges a block's entries with the changes in its key range (`first`, then what `next`
    /// gives until it gives `None`), both sorted by key.
    fn merge(
        &mut self,
        entries: &[Entry],
        first: Option<Change>,
        next: &mut dyn FnMut() -> Result<Option<Change>>,
        renumber: &impl Fn(Entry) -> Entry,
    ) -> Result<()> {
        let (mut a, mut pending) = (0, first);
        loop {
            let old = entries.get(a);
            let change = match (old, pending.take()) {
                (None, None) => return Ok(()),
                (Some(e), None) => {
                    self.push(e.clone())?;
                    a += 1;
                    continue;
                }
                (Some(e), Some(c)) if e.key.as_str() < c.key() => {
                    self.push(e.clone())?;
                    a += 1;
                    pending = Some(c);
                    continue;
                }
                (_, Some(c)) => c,
            };
            let old = old.filter(|e| e.key.as_str() == change.key());
            a += usize::from(old.is_some());
            self.apply(old, change, renumber)?;
            pending = next()?;
        }
    }

    /// Applies one change to the entry under its key, if there is one.
    fn apply(&mut self, old: Option<&Entry>, change: Change, renumber: &impl Fn(Entry) -> Entry) -> Result<()> {
        match change {
            Change::Put(new) => {
                if let Some(old) = old {
                    self.tally.kill(old);
                }
                let new = renumber(new);
                self.tally.add(&new);
                self.push(new)
            }
            Change::Delete(_) => {
                match old {
                    Some(old) => self.tally.kill(old),
                    None => self.tally.missing += 1,
                }
                Ok(())
            }
            Change::Move { to, from } => {
                let to = renumber(to);
                match old {
                    Some(old) if (old.pack, old.offset) == from => {
                        self.tally.kill(old);
                        self.tally.add(&to);
                        self.push(to)
                    }
                    // Deleted or written again since the copy was made: the copy is dead.
                    _ => {
                        self.tally.bury(&to);
                        old.map_or(Ok(()), |old| self.push(old.clone()))
                    }
                }
            }
        }
    }

    /// Writes the new index object and builds the root: kept pages keep their objects (in the
    /// old order), new pages point at the new object, after them; branches over them all, in
    /// the new object, if they are too many for the root.
    fn finish(mut self, objects: &[IndexObject], old: &[BlockRef]) -> Result<(IndexRef, Vec<String>, Tally)> {
        self.cut_run()?;
        self.register();
        let mut used = vec![false; objects.len()];
        for slot in &self.slots {
            if let Slot::Old(i) = slot {
                used[old[*i].object as usize] = true;
            }
        }
        let mut position = vec![0u32; objects.len()];
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            if used[i] {
                position[i] = kept.len() as u32;
                kept.push(o.clone());
            } else {
                dropped.push(o.name.clone());
            }
        }
        let new_position = kept.len() as u32;
        let pages: Vec<BlockRef> = (self.slots.iter())
            .map(|slot| match slot {
                Slot::Old(i) => BlockRef { object: position[old[*i].object as usize], ..old[*i].clone() },
                Slot::New(i) => BlockRef { object: new_position, ..self.out.pages()[*i].clone() },
            })
            .collect();
        let root = self.out.plant(pages, &kept, new_position)?;
        let (_, new_object) = self.out.finish()?;
        if let Some((object, _)) = new_object {
            kept.push(object);
        }
        Ok((IndexRef { objects: kept, blocks: root }, dropped, self.tally))
    }
}

/// The manifest of the next generation: the base's packs with their new dead counts, the new
/// packs, without the dropped ones, and everything no longer used retired.
fn next_manifest(
    base: &Manifest,
    update: &Update,
    ids: &HashMap<u32, u32>,
    index: IndexRef,
    retired_objects: Vec<String>,
    tally: &Tally,
) -> Result<Manifest> {
    let generation = base.next_generation()?;
    let since = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let new_packs = (update.new_packs.iter()).map(|p| PackRef { id: ids[&p.id], ..p.clone() });
    let mut packs = Vec::new();
    let mut retired = base.retired.clone();
    for mut p in base.packs.iter().cloned().chain(new_packs) {
        if let Some((records, bytes)) = tally.dead.get(&p.id) {
            p.dead_records += records;
            p.dead_bytes += bytes;
        }
        if update.drop_packs.contains(&p.name) {
            if p.dead_records != p.records {
                return Err(Error::Bug(format!(
                    "{} still has {} live records after compaction",
                    p.name,
                    p.records - p.dead_records
                )));
            }
            retired.push(Retired { name: p.name, generation, since });
        } else {
            packs.push(p);
        }
    }
    retired.extend(retired_objects.into_iter().map(|name| Retired { name, generation, since }));
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        generation,
        created_by: CREATED_BY.into(),
        records: (base.records + tally.added)
            .checked_sub(tally.removed)
            .ok_or_else(|| Error::Bug("records < 0".into()))?,
        raw_bytes: (base.raw_bytes + tally.raw_added).saturating_sub(tally.raw_removed),
        packs,
        index,
        retired,
        ..base.clone()
    };
    // Every count above must add up, or the merge has a bug: refuse to commit it.
    manifest.validate().map_err(|e| Error::Bug(format!("the next manifest does not check out: {e}")))?;
    Ok(manifest)
}

/// A name part unique to this writer, so objects of writers racing on one archive never collide.
pub(crate) fn unique_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use haypack_format::Timestamp;
    use haypack_store::LocalStore;

    fn entry(key: &str, pack: u32, offset: u64) -> Entry {
        Entry {
            key: key.into(),
            pack,
            offset,
            len: 10,
            raw_len: 7,
            mtime: Timestamp { secs: 1, nanos: 0 },
            mode: 0o644,
            content_type: None,
        }
    }

    fn merged(entries: &[Entry], changes: &[Change]) -> (Vec<String>, Tally) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let out = IndexWriter::create(&store, "index/t.hpi".into(), false).unwrap();
        let mut m = Merger::new(out);
        let mut rest = changes.iter().cloned();
        let first = rest.next();
        m.merge(entries, first, &mut || Ok(rest.next()), &|e| e).unwrap();
        let (root, _, tally) = m.finish(&[], &[]).unwrap();
        let object = std::fs::read(dir.path().join("index/t.hpi")).unwrap_or_default();
        let keys = match root.blocks.as_slice() {
            [] => vec![],
            [page] => haypack_format::decode_page(&object, page.head, page.crc32c, 1 << 20).unwrap(),
            more => panic!("{} pages for a few entries", more.len()),
        };
        let keys = keys.into_iter().map(|e| e.key).collect();
        (keys, tally)
    }

    #[test]
    fn puts_replace_deletes_remove_and_moves_yield_to_newer_writes() {
        let old = [entry("a", 1, 0), entry("c", 1, 10), entry("e", 1, 20), entry("g", 1, 30)];
        let changes = [
            Change::Put(entry("b", 2, 0)),
            Change::Put(entry("c", 2, 10)),
            Change::Delete("d".into()),
            Change::Delete("e".into()),
            Change::Move { to: entry("g", 3, 0), from: (1, 30) },
            Change::Move { to: entry("h", 3, 10), from: (1, 40) },
        ];
        let (keys, tally) = merged(&old, &changes);
        assert_eq!(keys, ["a", "b", "c", "g"]);
        assert_eq!((tally.added, tally.removed, tally.missing), (3, 3, 1));
        // c replaced and e deleted and g moved: three dead in pack 1; the copy of h is dead too.
        assert_eq!(tally.dead[&1], (3, 30));
        assert_eq!(tally.dead[&3], (1, 10));
        let (keys, tally) = merged(&old, &[Change::Move { to: entry("c", 3, 0), from: (1, 99) }]);
        assert_eq!(keys, ["a", "c", "e", "g"]);
        assert_eq!((tally.added, tally.removed, tally.dead[&3]), (0, 0, (1, 10)));
    }

    /// An archive whose root lists branches: cold lookups read the manifest, a branch, a page
    /// and the record; changes merge through the branches and keep them.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_index_with_branches_reads_and_changes() {
        use haypack_store::{Counting, Store};
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..3000 {
            std::fs::write(src.join(format!("k{i:05}")), format!("value {i}")).unwrap();
        }
        let root = tmp.path().join("arch");
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(&root));
        crate::pack(&src, store.clone(), crate::PackOptions::default(), Arc::new(())).await.unwrap();
        // The same entries again, one per page: 3,000 pages, two branches of them.
        let archive = Archive::open(store.clone()).await.unwrap();
        let entries = archive.list("").await.unwrap();
        let name = "index/branchy.hpi".to_owned();
        let mut out = IndexWriter::create(&*store, name.clone(), false).unwrap();
        for e in &entries {
            out.push(e.clone()).unwrap();
            out.flush().unwrap();
        }
        let pages = out.pages().to_vec();
        let top = out.plant(pages, &[], 0).unwrap();
        assert!(top.len() == 2 && top.iter().all(BlockRef::is_branch), "{} root references", top.len());
        let (_, object) = out.finish().unwrap();
        let mut m = archive.manifest().clone();
        m.retired = vec![];
        m.index = IndexRef { objects: vec![object.unwrap().0], blocks: top };
        std::fs::write(root.join(MANIFEST_NAME), m.to_json()).unwrap();

        let counted = Arc::new(Counting::new(LocalStore::new(&root)));
        let archive = Archive::open(counted.clone()).await.unwrap();
        assert_eq!(archive.get("k01234").await.unwrap(), b"value 1234");
        let c = counted.counts();
        assert_eq!(c.gets + c.ranges, 4, "manifest, branch, page, record");
        assert_eq!(archive.pages().await.unwrap().len(), 3000);
        assert_eq!(archive.list("k02").await.unwrap().len(), 1000);
        assert!(archive.verify().await.unwrap().problems.is_empty());
        // A listing reads the branches it meets: the first one and its pages, not the second.
        counted.reset();
        let fresh = Archive::open(counted.clone()).await.unwrap();
        assert_eq!(fresh.list("k000").await.unwrap().len(), 100);
        assert_eq!(counted.counts().reads(), 1 + 1 + 100, "manifest, one branch, 100 pages");
        assert_eq!(fresh.list_page("k019", None, 1000).await.unwrap().entries.len(), 100);

        // A forged branch listing that branch: refused, not followed.
        let branch = &m.index.blocks[0];
        let object = &m.index.objects[0];
        let over = haypack_format::encode_node(&[haypack_format::Child::of(branch, object.name.clone())]).unwrap();
        std::fs::write(root.join("index/over.hpi"), &over).unwrap();
        let mut forged = m.clone();
        forged.index.objects.push(IndexObject { name: "index/over.hpi".into(), size: over.len() as u64 });
        let len = over.len() as u64;
        let crc32c = crc32c::crc32c(&over);
        let second = m.index.blocks[1].clone();
        forged.index.blocks = vec![BlockRef { object: 1, offset: 0, len, head: len, crc32c, ..branch.clone() }, second];
        let forged_store = Arc::new(LocalStore::new(tmp.path().join("forged")));
        forged_store.put(MANIFEST_NAME, forged.to_json().into(), PutMode::Overwrite).await.unwrap();
        for name in ["index/over.hpi", &object.name] {
            let bytes = std::fs::read(root.join(name)).unwrap();
            forged_store.put(name, bytes.into(), PutMode::Overwrite).await.unwrap();
        }
        let archive = Archive::open(forged_store).await.unwrap();
        let refused = archive.get("k01234").await.unwrap_err().to_string();
        assert!(refused.contains("not a page"), "{refused}");
        assert!(archive.pages().await.is_err());

        let more = tmp.path().join("more");
        std::fs::create_dir_all(&more).unwrap();
        std::fs::write(more.join("k01234x"), "between").unwrap();
        std::fs::write(more.join("k02000"), "new").unwrap();
        crate::add(&more, store.clone(), "", crate::PackOptions::default(), Arc::new(())).await.unwrap();
        crate::remove(store.clone(), &["k00007".into()], &[], false).await.unwrap();
        let archive = Archive::open(store.clone()).await.unwrap();
        let m = archive.manifest();
        assert!(m.index.blocks.iter().all(BlockRef::is_branch), "still a root of branches");
        assert!(m.index.objects.len() >= 2, "untouched pages stay where they were");
        // k00007 was its page's only entry: the page is gone; k01234x joined k01234's.
        assert_eq!(archive.pages().await.unwrap().len(), 2999);
        assert_eq!(archive.get("k01234x").await.unwrap(), b"between");
        assert_eq!(archive.get("k02000").await.unwrap(), b"new");
        assert!(archive.stat("k00007").await.is_err());
        assert_eq!(archive.list("").await.unwrap().len(), 3000);
        assert!(archive.verify().await.unwrap().problems.is_empty());
    }

    /// Keys of 4 KiB: a branch ends before it takes more than 2 MiB decoded, so readers accept
    /// every branch, and the root still fits.
    #[test]
    fn long_keys_make_more_smaller_branches() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let mut out = IndexWriter::create(&store, "index/long.hpi".into(), false).unwrap();
        for i in 0..2100u64 {
            let mut e = entry(&format!("{i:06}{}", "k".repeat(4000)), 1, i * 10);
            e.len = 10;
            out.push(e).unwrap();
            out.flush().unwrap();
        }
        let pages = out.pages().to_vec();
        let root = out.plant(pages, &[], 0).unwrap();
        assert!(root.len() >= 4 && root.iter().all(BlockRef::is_branch), "{} branches", root.len());
        out.finish().unwrap();
        let object = std::fs::read(dir.path().join("index/long.hpi")).unwrap();
        let mut listed = 0;
        for b in &root {
            let node = &object[b.offset as usize..(b.offset + b.len) as usize];
            listed += haypack_format::decode_node(node, haypack_format::MAX_NODE_DECODED).unwrap().len();
        }
        assert_eq!(listed, 2100);
    }

    /// An index a version-3 writer started (a root of leaves) grown past what the root holds:
    /// the branches then list leaves beside pages, and readers walk both.
    #[tokio::test(flavor = "multi_thread")]
    async fn branches_may_list_the_leaves_of_an_older_index() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..1200 {
            std::fs::write(src.join(format!("k{i:04}")), format!("value {i}")).unwrap();
        }
        let root = tmp.path().join("arch");
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(&root));
        crate::pack(&src, store.clone(), crate::PackOptions::default(), Arc::new(())).await.unwrap();
        let archive = Archive::open(store.clone()).await.unwrap();
        let entries = archive.list("").await.unwrap();
        // Leaves of two entries, as version 3 wrote blocks (no pages), then pages of the rest.
        let mut leaves = Vec::new();
        let mut object = Vec::new();
        for pair in entries[..800].chunks(2) {
            let block = haypack_format::encode_block(pair).unwrap();
            leaves.push(BlockRef {
                object: 0,
                first_key: pair[0].key.clone(),
                offset: object.len() as u64,
                len: block.len() as u64,
                head: 0,
                records: 2,
                crc32c: crc32c::crc32c(&block),
            });
            object.extend_from_slice(&block);
        }
        std::fs::write(root.join("index/old.hpi"), &object).unwrap();
        let mut out = IndexWriter::create(&*store, "index/new.hpi".into(), false).unwrap();
        for pair in entries[800..].chunks(2) {
            out.extend(pair.iter().cloned()).unwrap();
            out.flush().unwrap();
        }
        let pages: Vec<BlockRef> = out.pages().iter().map(|p| BlockRef { object: 1, ..p.clone() }).collect();
        let old = IndexObject { name: "index/old.hpi".into(), size: object.len() as u64 };
        let top = out.plant(leaves.into_iter().chain(pages).collect(), std::slice::from_ref(&old), 1).unwrap();
        assert!(top.iter().all(BlockRef::is_branch), "the root lists branches");
        let (_, new) = out.finish().unwrap();
        let mut m = archive.manifest().clone();
        m.retired = vec![];
        m.index = IndexRef { objects: vec![old, new.unwrap().0], blocks: top };
        std::fs::write(root.join(MANIFEST_NAME), m.to_json()).unwrap();

        let archive = Archive::open(store.clone()).await.unwrap();
        for i in [0, 1, 798, 799, 800, 1199] {
            assert_eq!(archive.get(&format!("k{i:04}")).await.unwrap(), format!("value {i}").as_bytes());
        }
        assert_eq!(archive.list("k03").await.unwrap().len(), 100);
        assert!(archive.verify().await.unwrap().problems.is_empty());
        // A change rewrites the leaf it touches as a page, and keeps the others.
        crate::remove(store.clone(), &["k0007".into()], &[], false).await.unwrap();
        let archive = Archive::open(store).await.unwrap();
        assert_eq!(archive.list("").await.unwrap().len(), 1199);
        assert!(archive.verify().await.unwrap().problems.is_empty());
    }
}

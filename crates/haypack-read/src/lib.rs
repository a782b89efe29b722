//! Reads haypack archives from any [`Store`]: a lookup decodes one index block (cached) and reads
//! one byte range of one pack, and no byte reaches the caller before its checksum matched.
//!
//! ```
//! use std::sync::Arc;
//! use haypack_read::Archive;
//! use haypack_store::LocalStore;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let src = tempfile::tempdir()?;
//! # std::fs::create_dir(src.path().join("notes"))?;
//! # std::fs::write(src.path().join("notes/hello.txt"), "hello, haypack")?;
//! # let dest = tempfile::tempdir()?;
//! # let store = Arc::new(LocalStore::new(dest.path()));
//! # haypack_pack::pack(src.path(), store.clone(), Default::default(), Arc::new(())).await?;
//! let archive = Archive::open(store).await?;
//! assert_eq!(archive.get("notes/hello.txt").await?, b"hello, haypack");
//! assert_eq!(archive.stat("notes/hello.txt").await?.raw_len, 14);
//! let keys: Vec<String> = archive.list("notes/").await?.into_iter().map(|e| e.key).collect();
//! assert_eq!(keys, ["notes/hello.txt"]);
//! assert!(archive.verify().await?.problems.is_empty());
//! # Ok(())
//! # }
//! ```

mod batch;
mod check;
mod chunked;
mod error;
mod export;
mod extract;
mod index;
mod page;
mod record;
mod verify;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use haypack_format::{
    Budget, Dictionary, Entry, MANIFEST_NAME, Manifest, PackRef, RecordFrame, Timestamp, decode_content,
};
use haypack_store::Store;

#[doc(hidden)]
pub use crate::batch::{Span, coalesce, plan_counts};
pub use crate::check::RecordCheck;
pub use crate::error::{Error, Result};
pub use crate::export::ExportReport;
pub use crate::extract::{ExtractOptions, ExtractReport, safe_path};
pub use crate::index::DEFAULT_INDEX_MEMORY;
pub use crate::page::Page;
pub use crate::record::{Record, Want};
pub use crate::verify::{Problem, VerifyReport};

/// The least a chunked read asks for at once: the first chunk must hold the record's header,
/// which takes at most 80 KiB.
const MIN_CHUNK: u64 = 256 << 10;

/// An open archive, pinned to the manifest generation it opened.
#[derive(Debug)]
pub struct Archive {
    store: Arc<dyn Store>,
    manifest: Manifest,
    packs: HashMap<u32, PackRef>,
    index: Mutex<index::IndexCache>,
    /// The archive's dictionaries, once a record needed one.
    dictionaries: tokio::sync::OnceCell<Vec<Dictionary>>,
    disk_cache: Option<std::path::PathBuf>,
    /// The version of each object as first read: later reads must see the same one.
    versions: Mutex<HashMap<String, String>>,
}

impl Archive {
    /// Opens the archive in `store`: one read, of its manifest.
    pub async fn open(store: Arc<dyn Store>) -> Result<Self> {
        Self::open_with_cache(store, None).await
    }

    /// Opens the archive and keeps the index blocks it reads in `cache_dir` too, so the next
    /// process to open it starts warm. Blocks are immutable and checked against the CRC in the
    /// manifest's root, so a cached copy is used only if it is exactly the block named there.
    pub async fn open_with_cache(store: Arc<dyn Store>, cache_dir: Option<std::path::PathBuf>) -> Result<Self> {
        let bytes = match store.get(MANIFEST_NAME).await {
            Ok(b) => b,
            Err(haypack_store::Error::NotFound { .. }) => return Err(Error::NoArchive { archive: store.describe() }),
            Err(e) => return Err(e.into()),
        };
        Self::with_manifest(store, &bytes, cache_dir)
    }

    /// Opens the archive for a writer: also returns the version of the manifest read, which
    /// the writer's commit must still find there (compare-and-swap).
    pub async fn open_for_update(store: Arc<dyn Store>) -> Result<(Self, String)> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let meta = match store.head(MANIFEST_NAME).await {
                Ok(m) => m,
                Err(haypack_store::Error::NotFound { .. }) => {
                    return Err(Error::NoArchive { archive: store.describe() });
                }
                Err(e) => return Err(e.into()),
            };
            // Read exactly the version the head saw; a commit in between means: look again.
            match store.get_range_pinned(MANIFEST_NAME, 0..meta.size, Some(&meta.version)).await {
                Ok((bytes, _)) => return Ok((Self::with_manifest(store, &bytes, None)?, meta.version)),
                Err(haypack_store::Error::Conflict { .. } | haypack_store::Error::OutOfRange { .. })
                    if attempts < 10 =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens the generation a manifest describes without reading the store: `manifest` is the
    /// bytes of a `manifest.json` this archive had (`self.manifest().to_json()` of a reader in
    /// another process). For a process that must read exactly the generation another one
    /// opened, such as a worker of a training job; nothing is read until a record is.
    pub fn open_manifest(
        store: Arc<dyn Store>,
        manifest: &[u8],
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        Self::with_manifest(store, manifest, cache_dir)
    }

    fn with_manifest(store: Arc<dyn Store>, bytes: &[u8], cache_dir: Option<std::path::PathBuf>) -> Result<Self> {
        let manifest =
            Manifest::parse(bytes).map_err(|source| Error::Manifest { archive: store.describe(), source })?;
        let packs = manifest.packs.iter().map(|p| (p.id, p.clone())).collect();
        Ok(Archive {
            store,
            manifest,
            packs,
            index: Mutex::default(),
            dictionaries: tokio::sync::OnceCell::new(),
            disk_cache: cache_dir,
            versions: Mutex::default(),
        })
    }

    /// The manifest of the pinned generation.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The store the archive lives in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The archive's zstd dictionaries: read (each object whole, checked against its size and
    /// CRC) the first time a caller needs them, then kept. An archive without any reads nothing.
    pub async fn dictionaries(&self) -> Result<&[Dictionary]> {
        let load = || async {
            let mut dicts = Vec::with_capacity(self.manifest.dictionaries.len());
            for d in &self.manifest.dictionaries {
                let bytes = match d.object() {
                    Some(name) => Some(self.read_range(name, 0..d.size(), None).await?),
                    None => None,
                };
                let object = d.object().unwrap_or("the manifest").to_owned();
                dicts.push(d.load(bytes.as_deref()).map_err(|e| Error::Corrupt {
                    object,
                    offset: 0,
                    key: None,
                    detail: e.to_string(),
                })?);
            }
            Ok::<_, Error>(dicts)
        };
        Ok(self.dictionaries.get_or_try_init(load).await?)
    }

    /// Dictionary `id`, if it was read (see [`Archive::dictionaries`]); `None` for id 0.
    pub(crate) fn loaded_dictionary(&self, id: u32) -> Option<&Dictionary> {
        self.loaded_dictionaries().iter().find(|d| d.id() == id && id != 0)
    }

    /// The dictionaries read so far: all of them once [`Archive::dictionaries`] returned, else
    /// none (a record that names one is then refused as naming a dictionary it does not have).
    pub fn loaded_dictionaries(&self) -> &[Dictionary] {
        self.dictionaries.get().map_or(&[], Vec::as_slice)
    }

    fn describe(&self) -> String {
        self.store.describe()
    }

    /// Reads a range of one of the archive's objects, pinned to the version of it this reader
    /// saw first: an object replaced under a live reader is an error, never bytes of another
    /// generation. `key` names the record being read, for the error.
    pub async fn read_range(&self, name: &str, range: std::ops::Range<u64>, key: Option<&str>) -> Result<bytes::Bytes> {
        let pinned = self.versions.lock().expect("versions lock").get(name).cloned();
        let read = self.store.get_range_pinned(name, range, pinned.as_deref()).await;
        match read {
            Ok((bytes, version)) => {
                if pinned.is_none() {
                    self.versions.lock().expect("versions lock").insert(name.to_owned(), version);
                }
                Ok(bytes)
            }
            Err(haypack_store::Error::Conflict { .. }) => Err(Error::Changed {
                object: name.to_owned(),
                key: key.map(str::to_owned),
                generation: self.manifest.generation,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps at most about `bytes` of the index in memory (default [`DEFAULT_INDEX_MEMORY`]):
    /// nodes, leaves decoded and leaves compressed, in the shares its documentation gives. A
    /// lookup whose leaf is not kept reads it (~3 KiB) again. Empties what is kept.
    pub fn set_index_memory(&self, bytes: usize) {
        self.index.lock().expect("index cache lock").set_memory(bytes);
    }

    /// The index entry of `key`: where it is and what `ls --long` shows. Reads at most one
    /// leaf, through its page (and a branch, in archives that have branches), which a warm
    /// reader keeps. A leaf is decoded whole and kept while the decoded cache has room; once it
    /// is full, a lookup in a leaf outside it searches the compressed leaf instead of decoding
    /// it and pushing another out.
    pub async fn stat(&self, key: &str) -> Result<Entry> {
        let not_found = || Error::NotFound { key: key.to_owned(), archive: self.describe() };
        let leaf = self.leaf_for(key).await?.ok_or_else(not_found)?;
        if self.leaf_cached_or_room(&leaf) {
            let entries = self.leaf(&leaf).await?;
            let at = entries.binary_search_by(|e| e.key.as_str().cmp(key)).map_err(|_| not_found())?;
            return Ok(entries[at].clone());
        }
        self.find_in_leaf(&leaf, key).await?.ok_or_else(not_found)
    }

    /// The content of `key`, verified.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let entry = self.stat(key).await?;
        let mut out = Vec::with_capacity(entry.raw_len.min(Budget::WHOLE) as usize);
        self.read_entry(&entry, &mut out).await?;
        Ok(out)
    }

    /// Streams the content of `key` into `out`, verified; large records never sit whole in
    /// memory. If the check fails after some bytes were written, `out` must be discarded: the
    /// error says so. Returns the record's entry, its mtime to the nanosecond as the record's
    /// header has it.
    pub async fn get_to(&self, key: &str, out: &mut (dyn Write + Send)) -> Result<Entry> {
        let mut entry = self.stat(key).await?;
        entry.mtime = self.read_entry(&entry, out).await?;
        Ok(entry)
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.scan(prefix, |e| {
            out.push(e.clone());
            true
        })
        .await?;
        Ok(out)
    }

    /// Calls `f` on each entry whose key starts with `prefix`, in key order, until it returns
    /// false. Reads only the pages that can hold such keys, one at a time.
    pub async fn scan(&self, prefix: &str, f: impl FnMut(&Entry) -> bool) -> Result<()> {
        self.scan_range(prefix, None, prefix, f).await
    }

    /// Calls `f` on each entry with `start <= key < end` (no `end`: to the last key) whose key
    /// starts with `prefix`, in key order, until it returns false. Reads only the pages that
    /// can hold such keys, one at a time.
    pub async fn scan_range(
        &self,
        start: &str,
        end: Option<&str>,
        prefix: &str,
        mut f: impl FnMut(&Entry) -> bool,
    ) -> Result<()> {
        let start = start.max(prefix);
        let past = |key: &str| end.is_some_and(|end| key >= end) || (key > prefix && !key.starts_with(prefix));
        // Root references from the one holding `start`, each expanded to its pages only when
        // the range reaches it: a listing reads the branches it meets, not all of them.
        let root = &self.manifest.index.blocks;
        for k in self.manifest.block_for(start).unwrap_or(0)..root.len() {
            if root[k].first_key.as_str() > start && past(&root[k].first_key) {
                break;
            }
            let pages = self.pages_under(&root[k]).await?;
            let first = pages.partition_point(|p| p.first_key.as_str() <= start).saturating_sub(1);
            for i in first..pages.len() {
                let page = &pages[i];
                if page.first_key.as_str() > start && past(&page.first_key) {
                    return Ok(());
                }
                let next = pages.get(i + 1).or(root.get(k + 1)).map(|n| n.first_key.as_str());
                // A page the range covers whole is read with one request; at an edge, only the
                // leaves the range meets (a reader splitting an archive into many small ranges
                // reads each page once, not once per range).
                let whole = page.first_key.as_str() >= start && next.is_some_and(|n| !past(n));
                let entries: Vec<Entry> = match whole || page.head == 0 {
                    true => self.entries_of(page).await?,
                    false => {
                        let leaves = self.leaves_of(page).await?;
                        let from = leaves.partition_point(|l| l.first_key.as_str() <= start).saturating_sub(1);
                        let mut entries = Vec::new();
                        let meets =
                            |l: &&haypack_format::BlockRef| l.first_key.as_str() <= start || !past(&l.first_key);
                        for l in leaves[from..].iter().take_while(meets) {
                            entries.extend(self.leaf(l).await?.iter().cloned());
                        }
                        entries
                    }
                };
                let from = entries.partition_point(|e| e.key.as_str() < start);
                for e in &entries[from..] {
                    if past(&e.key) || !f(e) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Disjoint key ranges covering the index, in key order, as references whose first keys
    /// start them: its pages, or, when there are fewer than `at_least`, their leaves (read from
    /// each page's node). A range holds the keys up to the next one's first.
    pub async fn index_parts(&self, at_least: usize) -> Result<Vec<haypack_format::BlockRef>> {
        let pages = self.pages().await?;
        if pages.len() >= at_least {
            return Ok(pages.to_vec());
        }
        let mut leaves = Vec::new();
        for p in pages.iter() {
            leaves.extend(self.leaves_of(p).await?.iter().cloned());
        }
        Ok(leaves)
    }

    fn pack_of(&self, entry: &Entry) -> Result<&PackRef> {
        self.packs.get(&entry.pack).ok_or_else(|| Error::Corrupt {
            object: "the archive index".into(),
            offset: 0,
            key: Some(entry.key.clone()),
            detail: format!("the index names pack {}, which the manifest does not list", entry.pack),
        })
    }

    /// The version of `name` this reader is pinned to, once it has read from it.
    pub fn pinned_version(&self, name: &str) -> Option<String> {
        self.versions.lock().expect("versions lock").get(name).cloned()
    }

    /// Stored bytes a chunked read of a record asks for at once: what the store likes, within
    /// the budget.
    pub(crate) fn read_chunk(&self) -> u64 {
        self.store.read_chunk().clamp(MIN_CHUNK, Budget::CHUNK)
    }

    /// Reads, decodes and verifies one record into `out`: whole if [`Budget::whole`] allows,
    /// otherwise in chunks. Returns its mtime from its header, where it has the nanoseconds the
    /// index leaves out.
    pub(crate) async fn read_entry(&self, entry: &Entry, out: &mut (dyn Write + Send)) -> Result<Timestamp> {
        let whole = Budget::whole(entry.len, entry.raw_len);
        let first = self.record_range(entry, 0..if whole { entry.len } else { self.read_chunk() }).await?;
        let frame = RecordFrame::parse(&first).map_err(|e| self.record_corrupt(entry, e.to_string()))?;
        check_header(&frame, entry).map_err(|d| self.record_corrupt(entry, d))?;
        let mtime = frame.header.mtime;
        if frame.header.dict_id != 0 {
            self.dictionaries().await?;
        }
        if whole {
            let dict = self.loaded_dictionary(frame.header.dict_id);
            let content =
                decode_content(&frame, &first, dict).map_err(|e| self.record_corrupt(entry, e.to_string()))?;
            out.write_all(&content).map_err(Error::Output)?;
            return Ok(mtime);
        }
        let mut pieces = std::pin::pin!(chunked::pieces(self, entry.clone(), frame, first, None));
        while let Some(piece) = pieces.next().await {
            // The sink failing (a closed pipe, a full disk) is not corruption.
            out.write_all(&piece?).map_err(Error::Output)?;
        }
        Ok(mtime)
    }
}

/// Writes a block to the disk cache; a cache that cannot be written is only slower.
pub(crate) fn save_to_cache(path: &std::path::Path, bytes: &[u8]) {
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut temp, bytes)?;
        temp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!("not caching {}: {e}", path.display());
    }
}

/// Decodes one record held whole in memory, after checking its header against the index entry;
/// the content's length and CRC are checked by the decoder. `dicts` are the archive's
/// dictionaries. Returns the content and the record's mtime from its header.
pub(crate) fn decode_whole(bytes: &[u8], e: &Entry, dicts: &[Dictionary]) -> Result<(Vec<u8>, Timestamp), String> {
    let frame = RecordFrame::parse(bytes).map_err(|x| x.to_string())?;
    check_header(&frame, e)?;
    let dict = dicts.iter().find(|d| d.id() == frame.header.dict_id);
    let content = decode_content(&frame, bytes, dict).map_err(|x| x.to_string())?;
    Ok((content, frame.header.mtime))
}

/// The record's own header must say what the index says about it.
fn check_header(frame: &RecordFrame, entry: &Entry) -> Result<(), String> {
    let h = &frame.header;
    let mismatch = |field: &str, found: String, expected: String| {
        Err(format!("record header {field} is {found}, the index says {expected}"))
    };
    if h.key != entry.key {
        return mismatch("key", format!("{:?}", h.key), format!("{:?}", entry.key));
    }
    if frame.record_len() != entry.len {
        return mismatch("length", frame.record_len().to_string(), entry.len.to_string());
    }
    if h.raw_len != entry.raw_len {
        return mismatch("raw length", h.raw_len.to_string(), entry.raw_len.to_string());
    }
    // The index keeps mtimes to the second; the header has the nanoseconds too.
    if h.mtime.secs != entry.mtime.secs || h.mode != entry.mode || h.content_type != entry.content_type {
        return Err("record header metadata (mtime, mode or content type) disagrees with the index".into());
    }
    Ok(())
}

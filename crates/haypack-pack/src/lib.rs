//! Packs a tree of files into a haypack archive.
//!
//! The walk visits files in key order; batches of small files are read and compressed in
//! parallel (rayon) and appended in order; large files stream through a temporary file one at a
//! time. Packs are cut at a target size, the archive index streams out behind them, and the
//! manifest is written last: until then no reader sees the new generation.
//!
//! ```
//! use std::sync::Arc;
//! use haypack_pack::{PackOptions, pack};
//! use haypack_store::LocalStore;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let src = tempfile::tempdir()?;
//! std::fs::write(src.path().join("hello.txt"), "hello, haypack")?;
//! let dest = tempfile::tempdir()?;
//! let store = Arc::new(LocalStore::new(dest.path().join("archive")));
//! let report = pack(src.path(), store, PackOptions::default(), Arc::new(())).await?;
//! assert_eq!(report.manifest.records, 1);
//! # Ok(())
//! # }
//! ```

mod compact;
mod dict;
mod error;
mod fault;
mod gc;
mod mutate;
mod push;
mod update;
mod walk;
mod writer;

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use haypack_format::{
    Codec, Compression, ContentEncoder, Dictionary, Entry, IndexRef, MANIFEST_NAME, Manifest, PackRef, RecordHeader,
    RecordMeta, encode_record, encode_record_with,
};
use haypack_store::{Finished, PutMode, Store};
use rayon::prelude::*;

pub use crate::compact::{CompactOptions, CompactReport, compact};
pub use crate::dict::DictChoice;
pub use crate::error::{Error, Result};
pub use crate::gc::{GcReport, gc};
pub use crate::mutate::{ChangeReport, add, remove};
pub use crate::push::{PushOptions, PushReport, push};
use crate::walk::{FileItem, Found};
pub use crate::writer::INDEX_BLOCK_TARGET;
use crate::writer::{IndexWriter, PackWriter, io_error};

/// What a commit names as its writer.
const CREATED_BY: &str = concat!("haypack ", env!("CARGO_PKG_VERSION"));

/// The default target pack size: large enough that a few packs hold millions of files, small
/// enough that compaction can rewrite one quickly.
pub const DEFAULT_PACK_SIZE: u64 = 256 << 20;
/// Files larger than this stream through a temporary file instead of being read whole.
const STREAM_THRESHOLD: u64 = 8 << 20;
/// Raw bytes read and compressed at once, which bounds the packer's memory.
const BATCH_BYTES: u64 = 32 << 20;
/// Files read and compressed at once.
const BATCH_FILES: usize = 2048;

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Container, codec level, and whether to compress at all.
    pub compression: Compression,
    /// Start a new pack once the current one reaches this many bytes.
    pub pack_size: u64,
    /// Skip files that cannot be read (or named) and report them, instead of failing.
    pub skip_unreadable: bool,
    /// Pack what symbolic links point to, instead of skipping them.
    pub follow_symlinks: bool,
    /// Replace an archive already at the destination (as a new generation).
    pub force: bool,
    /// Whether to train a zstd dictionary and compress small records with it.
    pub dictionary: DictChoice,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            compression: Compression::default(),
            pack_size: DEFAULT_PACK_SIZE,
            skip_unreadable: false,
            follow_symlinks: false,
            force: false,
            dictionary: DictChoice::Off,
        }
    }
}

/// Told of the packer's progress; `()` ignores it.
pub trait Progress: Send + Sync {
    /// `files` files of `bytes` raw bytes were packed.
    fn packed(&self, files: u64, bytes: u64);
    /// A file was passed over.
    fn skipped(&self, path: &Path, reason: &str) {
        let _ = (path, reason);
    }
}

impl Progress for () {
    fn packed(&self, _: u64, _: u64) {}
}

/// A source entry the packer passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its path.
    pub path: PathBuf,
    /// Why it was passed over.
    pub reason: String,
}

/// What a pack run did.
#[derive(Debug, Clone)]
pub struct PackReport {
    /// The manifest it committed.
    pub manifest: Manifest,
    /// Entries passed over: symbolic links, special files, and with `skip_unreadable`
    /// unreadable files.
    pub skipped: Vec<Skipped>,
    /// Objects an interrupted run had already written with exactly these bytes: kept, not sent
    /// again.
    pub kept: Vec<String>,
}

/// Packs the tree at `src` into a new archive in `store`, committing its manifest last.
///
/// On failure nothing new is left behind: objects written so far are deleted, and an archive
/// that was already there is untouched. (Over the leftovers of an interrupted run, a failed run
/// leaves what it wrote too, for the next one to resume from.)
pub async fn pack(
    src: &Path,
    store: Arc<dyn Store>,
    opts: PackOptions,
    progress: Arc<dyn Progress>,
) -> Result<PackReport> {
    let Destination { previous, leftovers } = inspect(&*store, opts.force).await?;
    // Packs but no manifest: a run that never committed. Packing is deterministic, so this run
    // makes the same objects again: where one is already there with the same bytes it is kept
    // instead of sent (on S3; a local store just rewrites). With `force`, it writes over them.
    let resume = !leftovers.is_empty() && !opts.force;
    let generation = previous.as_ref().map_or(Ok(1), |(m, _)| m.next_generation())?;
    let first_id = previous.as_ref().map_or(Ok(1), |(m, _)| m.next_pack_id())?;

    let (src, s) = (src.to_owned(), store.clone());
    let mut packer = Packer::new(s, opts, progress, first_id, resume);
    let (packer, result) = tokio::task::spawn_blocking(move || {
        let result =
            packer.train(&src).and_then(|()| packer.run_with_index(&src, format!("index/{generation:06}.hpi")));
        (packer, result)
    })
    .await
    .expect("the packer does not panic");
    let commit = async {
        let (packs, index) = result?;
        let manifest = Manifest {
            generation,
            records: packs.iter().map(|p| p.records).sum(),
            raw_bytes: packs.iter().map(|p| p.raw_bytes).sum(),
            packs,
            index,
            // A forced pack replaces the archive: what the old generation used is retired, for
            // readers still pinned to it, until `gc`.
            retired: previous.as_ref().map(|(m, _)| retire_all(m, generation)).unwrap_or_default(),
            dictionaries: packer.dict.iter().map(|d| (**d).clone()).collect(),
            ..Manifest::empty(CREATED_BY)
        };
        manifest.validate()?;
        let mode = match &previous {
            None => PutMode::Create,
            Some((base, version)) => {
                // Replacing an archive a `gc` may be collecting: see `update::check_objects`.
                let packs = manifest.packs.iter().map(|p| (p.name.as_str(), p.size));
                let index = manifest.index.objects.iter().map(|o| (o.name.as_str(), o.size));
                update::check_objects(&*store, base, &packs.chain(index).collect::<Vec<_>>()).await?;
                PutMode::Update(version.clone())
            }
        };
        store.put(MANIFEST_NAME, manifest.to_json().into(), mode).await?;
        Ok(manifest)
    };
    match commit.await {
        Ok(manifest) => {
            // Committed: from here on a failure is only untidiness, never a reason to undo.
            tidy_after_commit(&*store, &manifest, &leftovers).await;
            Ok(PackReport { manifest, skipped: packer.skipped, kept: packer.kept })
        }
        // Over leftovers, what is there (old and new) stays for the next run to resume.
        Err(e) if resume => Err(e),
        Err(e) => {
            packer.remove_written(&*store).await;
            Err(e)
        }
    }
}

/// Aborts uploads that interrupted runs left on this generation's objects, and deletes the
/// leftovers it does not name (no reader ever saw them). Failures are logged, not returned.
async fn tidy_after_commit(store: &dyn Store, manifest: &Manifest, leftovers: &[String]) {
    let names: Vec<String> = manifest.object_names().map(str::to_owned).collect();
    match store.abort_uploads(&names).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("aborted {n} unfinished upload(s) left by an interrupted run"),
        Err(e) => tracing::warn!("could not abort uploads left by an interrupted run: {e}"),
    }
    for stale in leftovers.iter().filter(|l| !names.contains(l)) {
        if let Err(e) = store.delete(stale).await {
            tracing::warn!("could not remove {stale}, left by an interrupted run: {e}");
        }
    }
}

/// Everything `m` uses, and everything it had retired, as retired by `generation`.
fn retire_all(m: &Manifest, generation: u64) -> Vec<haypack_format::Retired> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let used = m.object_names().map(|name| haypack_format::Retired { name: name.to_owned(), generation, since });
    m.retired.iter().cloned().chain(used).collect()
}

/// What a run finds at its destination.
struct Destination {
    /// The committed archive there, and its manifest's version.
    previous: Option<(Manifest, String)>,
    /// Objects of a run that never committed (no manifest).
    leftovers: Vec<String>,
}

/// Looks at the destination: an archive there is refused unless `force`; anything that is not
/// an archive's is refused always.
async fn inspect(store: &dyn Store, force: bool) -> Result<Destination> {
    match store.head(MANIFEST_NAME).await {
        Ok(meta) => {
            let manifest = Manifest::parse(&store.get(MANIFEST_NAME).await?)?;
            if !force {
                return Err(Error::ArchiveExists { dest: store.describe(), generation: manifest.generation });
            }
            Ok(Destination { previous: Some((manifest, meta.version)), leftovers: Vec::new() })
        }
        Err(haypack_store::Error::NotFound { .. }) => {
            let objects = store.list("").await?;
            let ours = |name: &str| name.starts_with("packs/") || name.starts_with("index/");
            if let Some(foreign) = objects.iter().find(|o| !ours(&o.name)) {
                return Err(Error::NotEmpty {
                    dest: store.describe(),
                    objects: objects.len(),
                    example: foreign.name.clone(),
                });
            }
            Ok(Destination { previous: None, leftovers: objects.into_iter().map(|o| o.name).collect() })
        }
        Err(e) => Err(e.into()),
    }
}

/// One encoded record, ready to append.
struct Encoded {
    header: RecordHeader,
    bytes: Vec<u8>,
}

/// A batch of small files being read and compressed in parallel on the rayon pool.
struct Encoding(std::sync::mpsc::Receiver<Vec<Result<Encoded>>>);

impl Encoding {
    fn start(batch: Vec<FileItem>, compression: Compression, dict: Option<Arc<Dictionary>>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rayon::spawn(move || {
            let dict = dict.as_deref();
            let encoded = batch.par_iter().map(|item| encode_small(item, compression, dict)).collect();
            // The receiver is gone only if packing already failed: nothing is waiting.
            let _ = tx.send(encoded);
        });
        Encoding(rx)
    }

    /// The batch's records, in the batch's order.
    fn wait(self) -> Vec<Result<Encoded>> {
        self.0.recv().expect("the encoding task does not panic")
    }
}

pub(crate) struct Packer {
    store: Arc<dyn Store>,
    opts: PackOptions,
    progress: Arc<dyn Progress>,
    next_id: u32,
    /// Added to pack names after the id: empty for a packed tree, whose names must be the same
    /// on every run so an interrupted one can resume; unique for a writer that may race others.
    pub suffix: String,
    /// Put before every key: where in the archive the tree lands.
    pub key_prefix: String,
    /// The dictionary small records are compressed against, if any.
    pub dict: Option<Arc<Dictionary>>,
    packs: Vec<PackRef>,
    /// Write resumably: keep objects an interrupted run left with the same bytes.
    resume: bool,
    /// Objects this run made visible, to delete if it fails.
    written: Vec<String>,
    /// Objects kept from an interrupted run.
    kept: Vec<String>,
    skipped: Vec<Skipped>,
}

impl Packer {
    pub fn new(
        store: Arc<dyn Store>,
        opts: PackOptions,
        progress: Arc<dyn Progress>,
        first_id: u32,
        resume: bool,
    ) -> Self {
        Packer {
            store,
            opts,
            progress,
            next_id: first_id,
            suffix: String::new(),
            key_prefix: String::new(),
            dict: None,
            packs: Vec::new(),
            resume,
            written: Vec::new(),
            kept: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Deletes the objects this run wrote, after a failure: no manifest names them.
    async fn remove_written(&self, store: &dyn Store) {
        for name in &self.written {
            if let Err(cleanup) = store.delete(name).await {
                tracing::warn!("could not remove {name} after a failed run: {cleanup}");
            }
        }
    }

    /// Files a finished object under written or kept.
    fn record(&mut self, name: String, finished: &Finished) {
        match finished {
            Finished::Written(_) => self.written.push(name),
            Finished::Kept(_) => self.kept.push(name),
        }
    }

    /// Trains the dictionary the options ask for, as dictionary 1 of a new archive.
    fn train(&mut self, src: &Path) -> Result<()> {
        if self.opts.compression.container == haypack_format::Container::Zstd && self.opts.compression.compress {
            self.dict = dict::train(src, self.opts.follow_symlinks, self.opts.dictionary, 1)?.map(Arc::new);
        }
        Ok(())
    }

    /// Packs the tree and writes the archive index for it, as the object `index_name`.
    fn run_with_index(&mut self, src: &Path, index_name: String) -> Result<(Vec<PackRef>, IndexRef)> {
        let mut index = IndexWriter::create(&*self.store, index_name, self.resume)?;
        let packs = self.run(src, &mut |entry| index.push(entry))?;
        let (blocks, object) = index.finish()?;
        let (object, finished) = object.expect("a tree with files has index blocks");
        self.record(object.name.clone(), &finished);
        Ok((packs, IndexRef { objects: vec![object], blocks }))
    }

    /// Packs the tree into new packs; hands each record's index entry, in key order, to `sink`
    /// as soon as the record is written, so no pack's entries are held until the pack ends.
    pub fn run(&mut self, src: &Path, sink: &mut dyn FnMut(Entry) -> Result<()>) -> Result<Vec<PackRef>> {
        let mut pack: Option<PackWriter> = None;
        let mut batch: Vec<FileItem> = Vec::new();
        let mut batch_bytes = 0;
        // The batch being read and compressed on the rayon pool while this thread walks on and
        // appends the batch before it: walking and appending are single-threaded, and without
        // the overlap they leave the other cores idle.
        let mut encoding: Option<Encoding> = None;
        let compression = self.opts.compression;
        for found in walk::walk(src, self.opts.follow_symlinks) {
            let mut item = match found {
                Found::File(item) => item,
                Found::Skipped { path, reason } => {
                    self.skip(path, reason);
                    continue;
                }
                Found::Failed(e) => {
                    self.fail_or_skip(e)?;
                    continue;
                }
            };
            if !self.key_prefix.is_empty() {
                item.key.insert_str(0, &self.key_prefix);
            }
            if item.len > STREAM_THRESHOLD {
                if let Some(prev) = encoding.take() {
                    self.write_batch(prev.wait(), &mut pack, sink)?;
                }
                let rest = Encoding::start(std::mem::take(&mut batch), compression, self.dict.clone());
                self.write_batch(rest.wait(), &mut pack, sink)?;
                batch_bytes = 0;
                self.write_large(item, &mut pack, sink)?;
                continue;
            }
            batch_bytes += item.len;
            batch.push(item);
            if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_FILES {
                let next = Encoding::start(std::mem::take(&mut batch), compression, self.dict.clone());
                if let Some(prev) = encoding.replace(next) {
                    self.write_batch(prev.wait(), &mut pack, sink)?;
                }
                batch_bytes = 0;
            }
        }
        if let Some(prev) = encoding.take() {
            self.write_batch(prev.wait(), &mut pack, sink)?;
        }
        let rest = Encoding::start(batch, compression, self.dict.clone());
        self.write_batch(rest.wait(), &mut pack, sink)?;
        if let Some(p) = pack.take() {
            self.finish_pack(p)?;
        }
        if self.packs.is_empty() {
            return Err(Error::EmptySource { src: src.to_owned(), skipped: self.skipped.len() });
        }
        Ok(std::mem::take(&mut self.packs))
    }

    fn skip(&mut self, path: PathBuf, reason: String) {
        tracing::debug!("skipping {}: {reason}", path.display());
        self.progress.skipped(&path, &reason);
        self.skipped.push(Skipped { path, reason });
    }

    /// With `skip_unreadable`, records a file-level failure and goes on; otherwise stops.
    fn fail_or_skip(&mut self, e: Error) -> Result<()> {
        let path = match &e {
            Error::Unreadable { path, .. } | Error::NonUtf8Name { path } | Error::KeyTooLong { path, .. } => {
                path.clone()
            }
            _ => return Err(e),
        };
        if !self.opts.skip_unreadable {
            return Err(e);
        }
        self.skip(path, e.to_string());
        Ok(())
    }

    fn current_pack<'a>(&mut self, pack: &'a mut Option<PackWriter>) -> Result<&'a mut PackWriter> {
        if pack.is_none() {
            let id = self.next_id;
            self.next_id = haypack_format::pack_id_after(id)?;
            let container = self.opts.compression.container;
            *pack = Some(PackWriter::create(&*self.store, id, &self.suffix, container, self.resume)?);
        }
        Ok(pack.as_mut().expect("just created"))
    }

    fn finish_pack(&mut self, pack: PackWriter) -> Result<()> {
        let name = pack.name().to_owned();
        let (pack_ref, finished) = pack.finish()?;
        tracing::debug!("finished {name}: {} records, {} bytes", pack_ref.records, pack_ref.size);
        self.record(name, &finished);
        self.packs.push(pack_ref);
        crate::fault::step("pack written");
        Ok(())
    }

    /// Appends a batch of encoded small files in order.
    fn write_batch(
        &mut self,
        encoded: Vec<Result<Encoded>>,
        pack: &mut Option<PackWriter>,
        sink: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        for enc in encoded {
            let enc = match enc {
                Ok(enc) => enc,
                Err(e) => {
                    self.fail_or_skip(e)?;
                    continue;
                }
            };
            self.append(&enc.header, pack, sink, |p| p.write(&enc.bytes).map_err(|e| io_error(p.name(), e)))?;
        }
        Ok(())
    }

    /// Appends one record, written by `write`, to the current pack: a record larger than the
    /// pack size gets a pack of its own, and a pack that reached its size is finished.
    fn append(
        &mut self,
        header: &RecordHeader,
        pack: &mut Option<PackWriter>,
        sink: &mut dyn FnMut(Entry) -> Result<()>,
        write: impl FnOnce(&mut PackWriter) -> Result<()>,
    ) -> Result<()> {
        let own_pack = header.raw_len > self.opts.pack_size;
        if own_pack && let Some(p) = pack.take().filter(|p| !p.is_empty()) {
            self.finish_pack(p)?;
        }
        let p = self.current_pack(pack)?;
        let start = p.len();
        write(p)?;
        sink(p.add_entry(header, start)?)?;
        self.progress.packed(1, header.raw_len);
        if own_pack || p.len() >= self.opts.pack_size {
            let full = pack.take().expect("current pack");
            self.finish_pack(full)?;
        }
        Ok(())
    }

    /// Streams one large file: encoded into a temporary file (its header needs the encoded
    /// length and checksum, known only at the end), then copied into a pack. A file larger than
    /// the pack size gets a pack of its own.
    fn write_large(
        &mut self,
        item: FileItem,
        pack: &mut Option<PackWriter>,
        sink: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        let (header, mut temp, suffix) = match encode_large(&item, self.opts.compression) {
            Ok(done) => done,
            Err(e) => return self.fail_or_skip(e),
        };
        let container = self.opts.compression.container;
        let prefix = container.record_prefix(&header)?;
        let path = item.path.clone();
        self.append(&header, pack, sink, move |p| {
            p.write(&prefix).map_err(|e| io_error(p.name(), e))?;
            let temp_err = |source| Error::Temp { path: path.clone(), source };
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

fn unreadable(item: &FileItem) -> impl FnOnce(std::io::Error) -> Error + '_ {
    |source| Error::Unreadable { path: item.path.clone(), source }
}

fn meta_of(item: &FileItem) -> RecordMeta {
    RecordMeta {
        key: item.key.clone(),
        mtime: item.mtime,
        mode: item.mode,
        content_type: mime_guess::from_path(&item.key).first_raw().map(str::to_owned),
    }
}

fn encode_small(item: &FileItem, compression: Compression, dict: Option<&Dictionary>) -> Result<Encoded> {
    let raw = std::fs::read(&item.path).map_err(unreadable(item))?;
    let (header, bytes) = encode_record_with(compression, dict, meta_of(item), &raw)?;
    Ok(Encoded { header, bytes })
}

/// Encodes a large file into an anonymous temporary file. Whether to compress is decided on the
/// first MiB, so incompressible media is stored without compressing all of it first.
fn encode_large(item: &FileItem, compression: Compression) -> Result<(RecordHeader, std::fs::File, Vec<u8>)> {
    let container = compression.container;
    let mut file = std::fs::File::open(&item.path).map_err(unreadable(item))?;
    let mut sample = Vec::with_capacity(1 << 20);
    (&mut file).take(1 << 20).read_to_end(&mut sample).map_err(unreadable(item))?;
    let codec = if compression.compress {
        let trial = encode_record(compression, meta_of(item), &sample)?.0;
        if trial.codec == Codec::Stored { Codec::Stored } else { container.codec() }
    } else {
        Codec::Stored
    };
    let temp = tempfile::tempfile().map_err(|source| Error::Temp { path: item.path.clone(), source })?;
    let out = std::io::BufWriter::with_capacity(1 << 20, temp);
    let mut enc = ContentEncoder::new(container, codec, compression.level, None, out)?;
    let temp_err = |source| Error::Temp { path: item.path.clone(), source };
    enc.write_all(&sample).map_err(temp_err)?;
    // Reads and writes apart: a full disk under the temporary file is not an unreadable source
    // (which `--skip-unreadable` would pass over).
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreadable(item)(e)),
        };
        enc.write_all(&buf[..n]).map_err(temp_err)?;
    }
    let (out, summary) = enc.finish()?;
    let temp = out.into_inner().map_err(|e| Error::Temp { path: item.path.clone(), source: e.into_error() })?;
    let meta = meta_of(item);
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

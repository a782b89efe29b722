//! Writes haypack archives: packs records from any source (a directory, a tar, zip or WARC
//! stream, or code) into new packs, and commits them, or changes an archive already there.
//!
//! Records are appended in the order they come; batches of small ones are read and compressed
//! in parallel (rayon); large ones stream through a temporary file one at a time. Packs are cut
//! at a target size, index entries are sorted with bounded memory, and the manifest is written
//! last: until then no reader sees the new generation.
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
mod records;
mod segment;
mod sort;
mod update;
mod writer;

use std::path::Path;
use std::sync::Arc;

use haypack_format::{Compression, DictRef, Dictionary, IndexRef, MANIFEST_NAME, Manifest};
use haypack_source::SourceOptions;
pub use haypack_source::{Content, Format, Record, Skipped, Source};
use haypack_store::{Finished, PutMode, Store};

pub use crate::compact::{CompactOptions, CompactReport, compact};
pub use crate::dict::DictChoice;
pub use crate::error::{Error, Result};
pub use crate::gc::{GcReport, gc};
pub use crate::mutate::{ChangeReport, add, remove};
pub use crate::push::{PushOptions, PushReport, push};
use crate::records::{Placement, RecordWriter};
pub use crate::segment::{SegmentsReport, Writer, commit_segments};
pub use crate::sort::Duplicates;
use crate::sort::Sorted;
use crate::writer::IndexWriter;
pub use crate::writer::{BRANCH_PAGES, LEAF_TARGET, PAGE_BYTES, PAGE_TARGET};

/// What a commit names as its writer.
pub(crate) const CREATED_BY: &str = concat!("haypack ", env!("CARGO_PKG_VERSION"));

/// The default target pack size: large enough that a few packs hold millions of files, small
/// enough that compaction can rewrite one quickly.
pub const DEFAULT_PACK_SIZE: u64 = 256 << 20;

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
    /// What two records with the same key in one run mean.
    pub duplicates: Duplicates,
    /// Put before every key: where in the archive the records land (`photos/` puts `a.jpg`
    /// at `photos/a.jpg`).
    pub key_prefix: String,
    /// What the source is; `None` tells it from its bytes (a directory, tar, zip or WARC).
    pub format: Option<Format>,
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
            duplicates: Duplicates::Refuse,
            key_prefix: String::new(),
            format: None,
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

    let (src, s, o) = (src.to_owned(), store.clone(), opts.clone());
    let placement = Placement { first_id, suffix: String::new(), resume };
    let index_name = format!("index/{generation:06}.hpi");
    let (result, written) = tokio::task::spawn_blocking(move || {
        let mut source = open_source(&src, &o)?;
        // A directory is sampled all over before packing; a stream, by its first records,
        // which are then packed first.
        let (dict, head) = match (wants_dictionary(&o), src.is_dir()) {
            (false, _) => (None, None),
            (true, true) => (dict::train(&src, &o, 1)?, None),
            (true, false) => {
                let mut head = dict::train_on_head(&src, &mut *source, &o, 1)?;
                (head.dictionary.take(), Some(head))
            }
        };
        let dict = dict.map(Arc::new);
        let mut writer = RecordWriter::new(s.clone(), o.clone(), progress, placement, dict.clone());
        let fed = match head {
            Some(head) => writer.write_head(head),
            None => Ok(()),
        }
        .and_then(|()| writer.write_source(&mut *source));
        // Whatever happens, what was written is known, so a failure can remove it.
        let written = writer.finish();
        let (written, fed) = match (written, fed) {
            (Ok(w), fed) => (w, fed),
            (Err(e), _) => return Err(e),
        };
        let result = fed.and_then(|()| {
            if written.packs.is_empty() {
                return Err(Error::EmptySource { src: src.clone(), skipped: written.skipped.len() });
            }
            let index = write_index(&*s, index_name, resume, &written.entries, true)?;
            let dict_name = format!("index/dict-{generation:06}.zdict");
            let dict = dict.map(|d| write_dictionary(&*s, dict_name, resume, &d)).transpose()?;
            Ok((index, dict))
        });
        Ok((result, written))
    })
    .await
    .map_err(|e| Error::Bug(format!("the packer stopped: {e}")))??;
    let commit = async {
        let ((index, index_object), dict) = result?;
        let manifest = Manifest {
            generation,
            records: written.records(),
            raw_bytes: written.raw_bytes(),
            packs: written.packs.clone(),
            index,
            // A forced pack replaces the archive: what the old generation used is retired, for
            // readers still pinned to it, until `gc`.
            retired: previous.as_ref().map(|(m, _)| retire_all(m, generation)).unwrap_or_default(),
            dictionaries: dict.into_iter().collect(),
            ..Manifest::empty(CREATED_BY)
        };
        manifest.validate()?;
        let mode = match &previous {
            None => PutMode::Create,
            Some((base, version)) => {
                // Replacing an archive a `gc` may be collecting: see `update::check_objects`.
                let packs = manifest.packs.iter().map(|p| (p.name.as_str(), p.size));
                let index = manifest.index.objects.iter().map(|o| (o.name.as_str(), o.size));
                let dicts = manifest.dictionaries.iter().filter_map(|d| Some((d.object()?, d.size())));
                update::check_objects(&*store, base, &packs.chain(index).chain(dicts).collect::<Vec<_>>()).await?;
                PutMode::Update(version.clone())
            }
        };
        store.put(MANIFEST_NAME, manifest.to_json().into(), mode).await?;
        Ok((manifest, index_object))
    };
    let mut kept = written.kept.clone();
    match commit.await {
        Ok((manifest, (name, finished))) => {
            match finished {
                Finished::Written(_) => {}
                Finished::Kept(_) => kept.push(name),
            }
            // Committed: from here on a failure is only untidiness, never a reason to undo.
            tidy_after_commit(&*store, &manifest, &leftovers).await;
            Ok(PackReport { manifest, skipped: written.skipped, kept })
        }
        // Over leftovers, what is there (old and new) stays for the next run to resume.
        Err(e) if resume => Err(e),
        Err(e) => {
            remove_objects(&*store, &written.written).await;
            Err(e)
        }
    }
}

/// Whether the options ask for a dictionary to be trained (zstd compressing records only).
fn wants_dictionary(opts: &PackOptions) -> bool {
    opts.dictionary != DictChoice::Off
        && opts.compression.container == haypack_format::Container::Zstd
        && opts.compression.compress
}

/// The records of `src`: a directory, or a stream that `opts.format` names or its bytes reveal
/// (see [`haypack_source::open`]; `-` is standard input), or a single file that is none of
/// those, as one record under its name.
fn open_source<'a>(src: &Path, opts: &PackOptions) -> Result<Box<dyn Source + 'a>> {
    let source_opts = SourceOptions { skip_unreadable: opts.skip_unreadable, follow_symlinks: opts.follow_symlinks };
    Ok(match haypack_source::open(src, opts.format, &source_opts) {
        // A single file that is no archive is packed as itself, under its name.
        Err(haypack_source::Error::UnknownFormat { .. }) if opts.format.is_none() && src.is_file() => {
            Box::new(haypack_source::DirSource::new(src, &source_opts))
        }
        source => source?,
    })
}

/// Writes every record of `src` (see [`open_source`]).
pub(crate) fn feed_source(writer: &mut RecordWriter, src: &Path, opts: &PackOptions) -> Result<()> {
    writer.write_source(&mut *open_source(src, opts)?)
}

/// Writes sorted entries as the index object `name`. Returns the index's root (with branches
/// if `plant` and the pages are too many for one; a segment's run lists its pages) and the
/// object with how it got there.
pub(crate) fn write_index(
    store: &dyn Store,
    name: String,
    resume: bool,
    entries: &Sorted,
    plant: bool,
) -> Result<(IndexRef, (String, Finished))> {
    let mut index = IndexWriter::create(store, name, resume)?;
    for e in entries.iter()? {
        index.push(e?)?;
    }
    index.flush()?;
    let root = match plant {
        true => Some(index.plant(index.pages().to_vec(), &[], 0)?),
        false => None,
    };
    let (pages, object) = index.finish()?;
    let blocks = root.unwrap_or(pages);
    let (object, finished) = object.ok_or_else(|| Error::Bug("records were written but no index block".into()))?;
    let name = object.name.clone();
    Ok((IndexRef { objects: vec![object], blocks }, (name, finished)))
}

/// Writes a dictionary as the object `name`, and returns what the manifest says of it.
fn write_dictionary(store: &dyn Store, name: String, resume: bool, dict: &Dictionary) -> Result<DictRef> {
    let mut out = if resume { store.create_resumable(&name)? } else { store.create(&name)? };
    out.write_all(dict.bytes()).map_err(|e| writer::io_error(&name, e))?;
    out.finish()?;
    Ok(DictRef::Object { id: dict.id(), name, size: dict.bytes().len() as u64, crc32c: dict.crc32c() })
}

/// Deletes objects a failed run wrote: no manifest names them.
pub(crate) async fn remove_objects(store: &dyn Store, names: &[String]) {
    for name in names {
        if let Err(cleanup) = store.delete(name).await {
            tracing::warn!("could not remove {name} after a failed run: {cleanup}");
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
pub(crate) struct Destination {
    /// The committed archive there, and its manifest's version.
    previous: Option<(Manifest, String)>,
    /// Objects of a run that never committed (no manifest).
    leftovers: Vec<String>,
}

/// Looks at the destination: an archive there, or segments not yet committed, are refused
/// unless `force`; anything that is not an archive's is refused always.
pub(crate) async fn inspect(store: &dyn Store, force: bool) -> Result<Destination> {
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
            let of = |author: Author| objects.iter().filter(move |o| author_of(&o.name) == author);
            if let Some(foreign) = of(Author::Foreign).next() {
                return Err(Error::NotEmpty {
                    dest: store.describe(),
                    objects: objects.len(),
                    example: foreign.name.clone(),
                });
            }
            if let (Some(segment), false) = (of(Author::Segment).next(), force) {
                return Err(Error::UncommittedSegments {
                    dest: store.describe(),
                    objects: of(Author::Segment).count(),
                    example: segment.name.clone(),
                });
            }
            Ok(Destination { previous: None, leftovers: objects.into_iter().map(|o| o.name).collect() })
        }
        Err(e) => Err(e.into()),
    }
}

/// Who writes an object of this name, in a store with no manifest yet.
#[derive(Debug, PartialEq)]
enum Author {
    /// `pack`: `packs/000001.hpk.zst`, `index/000001.hpi`, `index/dict-000001.zdict`.
    PackRun,
    /// A segment writer, which adds its token: `packs/000001-TOKEN.hpk.zst`,
    /// `index/segment-TOKEN.hpi`.
    Segment,
    /// Not haypack.
    Foreign,
}

fn author_of(name: &str) -> Author {
    let numbered = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some((stem, _codec)) = name.strip_prefix("packs/").and_then(|p| p.split_once(".hpk.")) {
        match stem.split_once('-') {
            None if numbered(stem) => return Author::PackRun,
            Some((id, t)) if numbered(id) && token(t) => return Author::Segment,
            _ => {}
        }
    } else if let Some(stem) = name.strip_prefix("index/dict-").and_then(|i| i.strip_suffix(".zdict")) {
        if numbered(stem) {
            return Author::PackRun;
        }
    } else if let Some(stem) = name.strip_prefix("index/").and_then(|i| i.strip_suffix(".hpi")) {
        if numbered(stem) {
            return Author::PackRun;
        }
        if stem.strip_prefix("segment-").is_some_and(token) {
            return Author::Segment;
        }
    }
    Author::Foreign
}

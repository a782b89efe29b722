//! `add` and `rm`: new records in new packs, and deletions, committed as a new generation.

use std::path::Path;
use std::sync::Arc;

use haypack_format::Manifest;
use haypack_read::Archive;
use haypack_store::Store;

use crate::records::{Placement, RecordWriter, Written};
use crate::update::{Change, ChangeIter, Changes, Update, commit, unique_token};
use crate::{Error, PackOptions, Progress, Result, Skipped};

/// What an `add` or `rm` did.
#[derive(Debug, Clone)]
pub struct ChangeReport {
    /// The manifest it committed; `None` when there was nothing to change.
    pub manifest: Option<Manifest>,
    /// Records added under keys the archive did not hold.
    pub added: u64,
    /// Records that replaced (`add`) or were deleted (`rm`).
    pub removed: u64,
    /// Source entries passed over.
    pub skipped: Vec<Skipped>,
    /// Commits by other writers this one merged on top of.
    pub retries: u32,
}

/// Packs the tree at `src` into new packs of the archive in `store`, under `prefix` (a key
/// prefix: `photos/` puts `src/a.jpg` at `photos/a.jpg`), and commits them as the next
/// generation. A key the archive already holds gets the new record; the old one becomes dead
/// bytes for `compact` to reclaim.
pub async fn add(
    src: &Path,
    store: Arc<dyn Store>,
    prefix: &str,
    opts: PackOptions,
    progress: Arc<dyn Progress>,
) -> Result<ChangeReport> {
    let (archive, version) = Archive::open_for_update(store.clone()).await?;
    let token = unique_token();
    let first_id = archive.manifest().next_pack_id()?;
    let placement = Placement { first_id, suffix: format!("-{token}"), resume: false };
    // New records share the archive's newest dictionary, if it has one.
    let dict = archive.dictionaries().await?.iter().max_by_key(|d| d.id()).cloned().map(Arc::new);
    let opts = PackOptions { key_prefix: prefix.to_owned(), ..opts };
    let o = opts.clone();
    let mut writer = RecordWriter::new(store.clone(), opts, progress, placement, dict);
    let src = src.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        let fed = crate::feed_source(&mut writer, &src, &o);
        (writer.finish(), fed)
    })
    .await
    .map_err(|e| Error::Bug(format!("the packer stopped: {e}")))?;
    let written = match written {
        (Ok(w), Ok(())) => w,
        (Ok(w), Err(e)) => {
            crate::remove_objects(&*store, &w.written).await;
            return Err(e);
        }
        (Err(e), _) => return Err(e),
    };
    let skipped = written.skipped.clone();
    let committed = commit_written(&store, written, Some((Arc::new(archive), version)), &token).await?;
    Ok(ChangeReport {
        added: committed.tally.added - committed.tally.removed,
        removed: committed.tally.removed,
        manifest: Some(committed.manifest),
        skipped,
        retries: committed.retries,
    })
}

/// Commits what a record writer wrote as changes on top of the archive: every record a put,
/// streamed from its sorted entries. On failure, what it wrote is removed.
pub(crate) async fn commit_written(
    store: &Arc<dyn Store>,
    written: Written,
    base: Option<(Arc<Archive>, String)>,
    token: &str,
) -> Result<crate::update::Committed> {
    let Written { packs, entries, written: objects, .. } = written;
    let entries = Arc::new(entries);
    let open = move || -> Result<ChangeIter> { Ok(Box::new(entries.iter()?.map(|e| e.map(Change::Put)))) };
    let update = Update { changes: Changes::Streamed(Arc::new(open)), new_packs: packs, ..Update::default() };
    let committed = commit(store, &update, base, token).await;
    if committed.is_err() {
        crate::remove_objects(&**store, &objects).await;
    }
    committed
}

/// Deletes `keys` and every key under each of `prefixes` from the archive in `store`, as the
/// next generation. A key in `keys` the archive does not hold is an error (and nothing is
/// deleted) unless `missing_ok`. The records' bytes stay in their packs until `compact`.
pub async fn remove(
    store: Arc<dyn Store>,
    keys: &[String],
    prefixes: &[String],
    missing_ok: bool,
) -> Result<ChangeReport> {
    let (archive, version) = Archive::open_for_update(store.clone()).await?;
    let mut doomed: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for key in keys {
        match archive.stat(key).await {
            Ok(_) => doomed.push(key.clone()),
            Err(haypack_read::Error::NotFound { .. }) => missing.push(key.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    if !missing.is_empty() && !missing_ok {
        return Err(Error::NoSuchKeys { archive: store.describe(), keys: missing });
    }
    for prefix in prefixes {
        archive
            .scan(prefix, |e| {
                doomed.push(e.key.clone());
                true
            })
            .await?;
    }
    doomed.sort_unstable();
    doomed.dedup();
    let mut report = ChangeReport { manifest: None, added: 0, removed: 0, skipped: Vec::new(), retries: 0 };
    if doomed.is_empty() {
        return Ok(report);
    }
    let update =
        Update { changes: doomed.into_iter().map(Change::Delete).collect::<Vec<_>>().into(), ..Update::default() };
    let c = commit(&store, &update, Some((Arc::new(archive), version)), &unique_token()).await?;
    report.manifest = Some(c.manifest);
    report.removed = c.tally.removed;
    report.retries = c.retries;
    Ok(report)
}

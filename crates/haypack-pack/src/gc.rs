//! `gc`: delete the objects no generation within the grace period uses.
//!
//! Two kinds: objects the manifest retired (packs compaction replaced, index objects whose
//! blocks were all rewritten, a replaced archive's objects) once retired for longer than the
//! grace period; and objects no manifest names (left by a writer that crashed or lost its
//! commit, or still being written by one that has not committed yet).
//!
//! The second kind is never deleted on sight. An unnamed object older than the grace period is
//! first *retired*, by a compare-and-swap commit of the manifest; only then, once retired in the
//! manifest gc committed or read and past the grace period, is it deleted. A writer refuses to
//! commit an object its base manifest has retired, and checks that every object it names is
//! still there (see `update::check_objects`). Every commit is a compare-and-swap, so of a writer
//! about to name an object and a gc about to retire it exactly one lands first: the writer (and
//! gc's commit then fails, it reads again and finds the object named) or gc (and the writer's
//! commit then fails, it reads again and finds the object retired, or deleted). Either way no
//! committed manifest names a deleted object, whatever the grace period, 0 included. (An
//! unnamed object whose name no manifest could hold, such as `packs/a b`, no writer can ever
//! commit: it is deleted once older than the grace period, without being retired.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use haypack_format::{MANIFEST_NAME, Manifest, Retired, is_object_name};
use haypack_read::Archive;
use haypack_store::{ObjectMeta, PutMode, Store};

use crate::{Error, Result, fault};

/// Commits lost to other writers before giving up.
const MAX_ATTEMPTS: u32 = 8;

/// What a `gc` did.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Objects deleted.
    pub deleted: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// Objects no generation named that this run retired (and deleted too, if the grace period
    /// let it).
    pub retired: Vec<String>,
    /// Retired objects kept because their grace period has not passed.
    pub waiting: usize,
    /// The last manifest this run committed, if it committed one.
    pub manifest: Option<Manifest>,
}

/// Deletes what the archive in `store` retired more than `grace` ago, and retires the objects
/// under `packs/` and `index/` that no generation names and that are older than `grace` (they
/// go once retired for `grace`: with a grace of 0, in this same run).
///
/// Losing a race to another `gc` is not an error: what it deleted stays deleted, its commit is
/// read and this run goes on from there.
pub async fn gc(store: Arc<dyn Store>, grace: Duration) -> Result<GcReport> {
    let now = SystemTime::now();
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut report = GcReport::default();
    let mut conflicts = 0;
    // Orphans are retired once per run; one first seen after that waits for the next run, so
    // a stream of new leftovers cannot keep this run going.
    let mut may_retire = true;
    while conflicts < MAX_ATTEMPTS {
        let (archive, version) = Archive::open_for_update(store.clone()).await?;
        let m = archive.manifest();
        // Listed after the manifest was read: an object a writer commits in between is
        // unnamed in `m`, and retiring it fails, since that writer's commit changed the version.
        let mut listed = store.list("packs/").await?;
        listed.extend(store.list("index/").await?);
        let (orphans, junk) = orphans(m, &listed, grace, now);
        for o in junk {
            store.delete(&o.name).await?;
            fault::step("object deleted");
            report.bytes += o.size;
            report.deleted.push(o.name.clone());
        }
        if may_retire && !orphans.is_empty() {
            let generation = m.next_generation()?;
            let retired = orphans.iter().map(|o| Retired { name: o.name.clone(), generation, since: now_secs });
            let next =
                Manifest { generation, retired: m.retired.iter().cloned().chain(retired).collect(), ..m.clone() };
            next.validate().map_err(|e| Error::Bug(format!("retiring leftovers makes a bad manifest: {e}")))?;
            if commit(&*store, &next, version).await? {
                fault::step("orphans retired");
                may_retire = false;
                report.retired.extend(orphans.into_iter().map(|o| o.name.clone()));
                report.manifest = Some(next);
            } else {
                conflicts += 1;
            }
            // Deletes only what a manifest read after the retirement still retires.
            continue;
        }
        let due: HashSet<&str> = (m.retired.iter())
            .filter(|r| r.since.saturating_add(grace.as_secs()) <= now_secs)
            .map(|r| r.name.as_str())
            .collect();
        report.waiting = m.retired.len() - due.len();
        if due.is_empty() {
            return Ok(report);
        }
        // Nothing names a retired object again (writers refuse to), so deleting it is safe
        // before the commit below; an object already gone (another gc) is simply dropped.
        for o in listed.iter().filter(|o| due.contains(o.name.as_str())) {
            store.delete(&o.name).await?;
            fault::step("object deleted");
            if !report.deleted.contains(&o.name) {
                report.bytes += o.size;
                report.deleted.push(o.name.clone());
            }
        }
        let next = Manifest {
            generation: m.next_generation()?,
            retired: m.retired.iter().filter(|r| !due.contains(r.name.as_str())).cloned().collect(),
            ..m.clone()
        };
        if commit(&*store, &next, version).await? {
            fault::step("committed");
            report.manifest = Some(next);
            return Ok(report);
        }
        // Another writer committed first: what was deleted stays deleted; read theirs and drop
        // it from there.
        conflicts += 1;
    }
    Err(Error::Contended { archive: store.describe(), attempts: MAX_ATTEMPTS })
}

/// The listed objects `m` neither uses nor retired, written more than `grace` ago (a younger
/// one may belong to a writer still at work; a store that gives no time gets none): those a
/// manifest could name, to retire, and those it could not, to delete.
fn orphans<'a>(
    m: &Manifest,
    listed: &'a [ObjectMeta],
    grace: Duration,
    now: SystemTime,
) -> (Vec<&'a ObjectMeta>, Vec<&'a ObjectMeta>) {
    let named: HashSet<&str> = m.object_names().chain(m.retired.iter().map(|r| r.name.as_str())).collect();
    let old_enough = |t: Option<SystemTime>| t.is_some_and(|t| t + grace <= now);
    (listed.iter())
        .filter(|o| !named.contains(o.name.as_str()) && old_enough(o.modified))
        .partition(|o| is_object_name(&o.name))
}

/// Puts `next` over the manifest at `version`; `false` if another writer committed first.
async fn commit(store: &dyn Store, next: &Manifest, version: String) -> Result<bool> {
    match store.put(MANIFEST_NAME, next.to_json().into(), PutMode::Update(version)).await {
        Ok(_) => Ok(true),
        Err(haypack_store::Error::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

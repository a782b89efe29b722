//! `gc`: delete the objects no generation within the grace period uses.
//!
//! Two kinds: objects the manifest retired (packs compaction replaced, index objects whose
//! blocks were all rewritten, a replaced archive's objects) once retired for longer than the
//! grace period; and objects no manifest ever named (left by a writer that crashed or lost its
//! commit) once older than it. A reader pinned to an older generation keeps working until the
//! grace period after that generation was replaced.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use haypack_format::{MANIFEST_NAME, Manifest};
use haypack_read::Archive;
use haypack_store::{PutMode, Store};

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
    /// Retired objects kept because their grace period has not passed.
    pub waiting: usize,
    /// The manifest committed without the deleted objects, if any were retired ones.
    pub manifest: Option<Manifest>,
}

/// Deletes what the archive in `store` retired more than `grace` ago, and objects under
/// `packs/` and `index/` that no generation names and that are older than `grace`.
pub async fn gc(store: Arc<dyn Store>, grace: Duration) -> Result<GcReport> {
    let now = SystemTime::now();
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut report = GcReport::default();
    for _ in 0..MAX_ATTEMPTS {
        let (archive, version) = Archive::open_for_update(store.clone()).await?;
        let m = archive.manifest();
        let due: HashSet<&str> = (m.retired.iter())
            .filter(|r| r.since.saturating_add(grace.as_secs()) <= now_secs)
            .map(|r| r.name.as_str())
            .collect();
        report.waiting = m.retired.len() - due.len();
        let named: HashSet<&str> = m.object_names().chain(m.retired.iter().map(|r| r.name.as_str())).collect();
        let mut listed = store.list("packs/").await?;
        listed.extend(store.list("index/").await?);
        let old_enough = |t: Option<SystemTime>| t.is_some_and(|t| t + grace <= now);
        for o in listed {
            let orphan = !named.contains(o.name.as_str()) && old_enough(o.modified);
            if (due.contains(o.name.as_str()) || orphan) && !report.deleted.contains(&o.name) {
                store.delete(&o.name).await?;
                fault::step("object deleted");
                report.bytes += o.size;
                report.deleted.push(o.name);
            }
        }
        if due.is_empty() {
            return Ok(report);
        }
        let next = Manifest {
            generation: m.generation + 1,
            retired: m.retired.iter().filter(|r| !due.contains(r.name.as_str())).cloned().collect(),
            ..m.clone()
        };
        match store.put(MANIFEST_NAME, next.to_json().into(), PutMode::Update(version)).await {
            Ok(_) => {
                fault::step("committed");
                report.manifest = Some(next);
                return Ok(report);
            }
            // Another writer committed: what was deleted stays deleted; drop it from theirs.
            Err(haypack_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended { archive: store.describe(), attempts: MAX_ATTEMPTS })
}

//! `gc` never breaks a committed archive, whatever its grace period: writers and collectors are
//! stopped at chosen requests by a gating store (no sleeps, no timing) and let go in each order
//! that matters. Every interleaving ends with an archive that verifies and holds every record
//! of every commit that succeeded; a writer that lost its objects to gc fails with
//! `Error::Vanished` and commits nothing.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use haypack_pack::{Error, PackOptions, add, gc, pack};
use haypack_read::Archive;
use haypack_store::{Gated, LocalStore, Op, PutMode, Store};

fn write(dir: &Path, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for i in 0..n {
        let (key, content) = (format!("{prefix}{i:03}"), format!("{prefix} {i}\n").repeat(50));
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(&key), &content).unwrap();
        files.insert(key, content);
    }
    files
}

/// Every record of the archive, read back, after checking that it verifies.
async fn contents(store: Arc<dyn Store>) -> BTreeMap<String, String> {
    let archive = Archive::open(store).await.unwrap();
    let report = archive.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let mut out = BTreeMap::new();
    for e in archive.list("").await.unwrap() {
        out.insert(e.key.clone(), String::from_utf8(archive.get(&e.key).await.unwrap()).unwrap());
    }
    out
}

/// An archive of a few records, and a second tree to add to it.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    old: BTreeMap<String, String>,
    more_dir: std::path::PathBuf,
    more: BTreeMap<String, String>,
}

async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (src, more_dir, dir) = (tmp.path().join("src"), tmp.path().join("more"), tmp.path().join("arch"));
    let old = write(&src, "old", 20);
    let more = write(&more_dir, "new", 20);
    pack(&src, Arc::new(LocalStore::new(&dir)), PackOptions::default(), Arc::new(())).await.unwrap();
    Setup { _tmp: tmp, dir, old, more_dir, more }
}

impl Setup {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(LocalStore::new(&self.dir))
    }

    fn gated(&self) -> Arc<Gated<LocalStore>> {
        Arc::new(Gated::new(LocalStore::new(&self.dir)))
    }

    /// Starts an `add` of the second tree through `store`.
    fn add(&self, store: Arc<dyn Store>) -> tokio::task::JoinHandle<haypack_pack::Result<haypack_pack::ChangeReport>> {
        let more_dir = self.more_dir.clone();
        tokio::spawn(async move { add(&more_dir, store, "", PackOptions::default(), Arc::new(())).await })
    }

    fn generation(&self) -> u64 {
        let m = std::fs::read(self.dir.join("manifest.json")).unwrap();
        haypack_format::Manifest::parse(&m).unwrap().generation
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_with_no_grace_between_an_adds_writes_and_its_commit_makes_the_add_fail_cleanly() {
    let s = setup().await;
    let gated = s.gated();
    let at_commit = gated.gate(Op::Put, "manifest.json");
    let adding = s.add(gated.clone());
    // The add has written its packs and its index object, and is about to commit.
    at_commit.reached().await;
    let report = gc(s.store(), Duration::ZERO).await.unwrap();
    // Everything the add wrote looked like a leftover: retired by a commit, then deleted.
    assert!(report.retired.iter().any(|n| n.starts_with("packs/")), "{report:?}");
    assert!(report.retired.iter().any(|n| n.starts_with("index/")), "{report:?}");
    assert_eq!(report.deleted, report.retired);
    at_commit.release();
    let err = adding.await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::Vanished { name, .. } if report.deleted.contains(name)), "{err}");
    assert!(err.to_string().contains("Nothing was committed"), "{err}");
    // The archive is the one gc left: every old record, nothing of the add.
    assert_eq!(contents(s.store()).await, s.old);
    assert_eq!(s.generation(), 3, "pack, gc's retirement, gc's deletion");
    // Run again, the add lands.
    s.add(s.store()).await.unwrap().unwrap();
    let mut all = s.old.clone();
    all.extend(s.more.clone());
    assert_eq!(contents(s.store()).await, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_refuses_objects_its_base_has_retired() {
    let s = setup().await;
    let gated = s.gated();
    let at_commit = gated.gate(Op::Put, "manifest.json");
    let adding = s.add(gated.clone());
    at_commit.reached().await;
    // Make the add's objects look two hours old, and collect with an hour's grace: they are
    // retired (older than the grace period) but not deleted (retired just now).
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for sub in ["packs", "index"] {
        for entry in std::fs::read_dir(s.dir.join(sub)).unwrap() {
            let file = std::fs::File::options().write(true).open(entry.unwrap().path()).unwrap();
            file.set_modified(two_hours_ago).unwrap();
        }
    }
    let report = gc(s.store(), Duration::from_secs(3600)).await.unwrap();
    assert!(report.deleted.is_empty(), "{report:?}");
    assert!(report.retired.len() >= 2 && report.waiting == report.retired.len(), "{report:?}");
    at_commit.release();
    let err = adding.await.unwrap().unwrap_err();
    // The add's packs are still there, but retired in the manifest it merged on: refused.
    assert!(matches!(&err, Error::Vanished { name, .. } if report.retired.contains(name)), "{err}");
    assert_eq!(contents(s.store()).await, s.old);
    // The add removed its packs as it failed; the next gc drops what is left and the names.
    let done = gc(s.store(), Duration::ZERO).await.unwrap();
    assert!(done.manifest.unwrap().retired.is_empty());
    assert!(s.store().list("").await.unwrap().iter().all(|o| !report.retired.contains(&o.name)));
    assert_eq!(contents(s.store()).await, s.old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_that_commits_before_gc_retires_its_objects_keeps_them() {
    let s = setup().await;
    let (add_store, gc_store) = (s.gated(), s.gated());
    let add_commit = add_store.gate(Op::Put, "manifest.json");
    let gc_commit = gc_store.gate(Op::Put, "manifest.json");
    let adding = s.add(add_store.clone());
    add_commit.reached().await;
    // gc lists the add's objects as leftovers and is about to retire them...
    let collecting = tokio::spawn(gc(gc_store.clone(), Duration::ZERO));
    gc_commit.reached().await;
    // ... when the add commits first.
    add_commit.release();
    let added = adding.await.unwrap().unwrap();
    gc_commit.release();
    let report = collecting.await.unwrap().unwrap();
    // gc's retirement lost; it read the add's commit and deleted only what that retired (the
    // index object the add replaced).
    let added = added.manifest.unwrap();
    assert!(report.retired.is_empty(), "{report:?}");
    assert_eq!(report.deleted, added.retired.iter().map(|r| r.name.clone()).collect::<Vec<_>>());
    assert_eq!(s.generation(), added.generation + 1);
    let mut all = s.old.clone();
    all.extend(s.more.clone());
    assert_eq!(contents(s.store()).await, all);
}

/// An archive with leftovers no generation names.
async fn with_leftovers(s: &Setup) -> Vec<String> {
    let junk = vec!["packs/000007-dead.hpk.zst".to_owned(), "index/000009-dead.hpi".to_owned()];
    for name in &junk {
        s.store().put(name, b"left over".to_vec().into(), PutMode::Overwrite).await.unwrap();
    }
    junk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gcs_racing_both_succeed() {
    // One stopped before it retires the leftovers, while the other does everything.
    let s = setup().await;
    let junk = with_leftovers(&s).await;
    let gated = s.gated();
    let at_retire = gated.gate(Op::Put, "manifest.json");
    let first = tokio::spawn(gc(gated.clone(), Duration::ZERO));
    at_retire.reached().await;
    let second = gc(s.store(), Duration::ZERO).await.unwrap();
    assert_eq!((&second.retired, second.deleted.len()), (&junk, 2));
    at_retire.release();
    let first = first.await.unwrap().unwrap();
    assert!(first.deleted.is_empty() && first.retired.is_empty(), "{first:?}");
    assert_eq!(contents(s.store()).await, s.old);

    // One stopped between its deletes, while the other deletes the same objects and commits.
    let s = setup().await;
    let junk = with_leftovers(&s).await;
    let gated = s.gated();
    let at_delete = gated.gate(Op::Delete, &junk[1]);
    let first = tokio::spawn(gc(gated.clone(), Duration::ZERO));
    at_delete.reached().await;
    let second = gc(s.store(), Duration::ZERO).await.unwrap();
    assert!(second.retired.is_empty(), "already retired by the first: {second:?}");
    assert_eq!(second.deleted, [junk[1].clone()], "the other one the first had deleted");
    at_delete.release();
    let first = first.await.unwrap().unwrap();
    assert_eq!((&first.retired, &first.deleted), (&junk, &junk));
    let m = Archive::open(s.store()).await.unwrap().manifest().clone();
    assert!(m.retired.is_empty(), "{:?}", m.retired);
    assert_eq!(m.generation, 3, "pack, the first's retirement, the second's deletion (the first's lost)");
    assert_eq!(contents(s.store()).await, s.old);
    assert!(s.store().list("").await.unwrap().iter().all(|o| !junk.contains(&o.name)));
}

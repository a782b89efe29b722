//! `add`, `rm`, `compact` and `gc` through the library: the index stays one block per lookup
//! however many generations pile up, counts add up, concurrent writers both land, and readers of
//! an older generation keep working until the grace period ends.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use haypack_pack::{CompactOptions, PackOptions, add, compact, gc, pack, remove};
use haypack_read::Archive;
use haypack_store::{Counting, LocalStore, Store};

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (key, content) in files {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// Every record of the archive, read back.
async fn contents(store: Arc<dyn Store>) -> BTreeMap<String, String> {
    let archive = Archive::open(store).await.unwrap();
    let mut out = BTreeMap::new();
    for e in archive.list("").await.unwrap() {
        out.insert(e.key.clone(), String::from_utf8(archive.get(&e.key).await.unwrap()).unwrap());
    }
    let report = archive.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    out
}

#[tokio::test]
async fn adds_replace_and_deletes_hide_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, more) = (tmp.path().join("src"), tmp.path().join("more"));
    write(&src, &[("a", "alpha"), ("b", "beta"), ("c", "gamma")]);
    write(&more, &[("c", "GAMMA"), ("d", "delta")]);
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(tmp.path().join("arch")));
    pack(&src, store.clone(), PackOptions::default(), Arc::new(())).await.unwrap();

    let report = add(&more, store.clone(), "", PackOptions::default(), Arc::new(())).await.unwrap();
    assert_eq!((report.added, report.removed), (1, 1));
    let m = report.manifest.unwrap();
    assert_eq!((m.generation, m.records, m.packs.len()), (2, 4, 2));
    assert_eq!((m.packs[0].dead_records, m.packs[1].dead_records), (1, 0));
    let want = [("a", "alpha"), ("b", "beta"), ("c", "GAMMA"), ("d", "delta")];
    assert_eq!(contents(store.clone()).await, want.map(|(k, v)| (k.to_owned(), v.to_owned())).into());

    let report = add(&more, store.clone(), "sub/", PackOptions::default(), Arc::new(())).await.unwrap();
    assert_eq!((report.added, report.removed), (2, 0));

    let report = remove(store.clone(), &["b".into()], &["sub/".into()], false).await.unwrap();
    assert_eq!(report.removed, 3);
    let m = report.manifest.unwrap();
    assert_eq!((m.generation, m.records), (4, 3));
    let want = [("a", "alpha"), ("c", "GAMMA"), ("d", "delta")];
    assert_eq!(contents(store.clone()).await, want.map(|(k, v)| (k.to_owned(), v.to_owned())).into());

    // A key that is not there fails the whole deletion, unless told otherwise.
    let err = remove(store.clone(), &["a".into(), "nope".into()], &[], false).await.unwrap_err();
    assert!(err.to_string().contains("holds no record \"nope\"; nothing was deleted"), "{err}");
    assert_eq!(Archive::open(store.clone()).await.unwrap().manifest().generation, 4);
    let report = remove(store.clone(), &["a".into(), "nope".into()], &[], true).await.unwrap();
    assert_eq!(report.removed, 1);
    let none = remove(store.clone(), &[], &["zzz/".into()], false).await.unwrap();
    assert!(none.manifest.is_none(), "nothing matched: nothing committed");
}

#[tokio::test]
async fn a_lookup_reads_one_page_after_many_generations() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // 20,000 records make one index page of about 60 leaves.
    let files: Vec<(String, String)> = (0..20_000).map(|i| (format!("k{i:05}"), format!("value {i}"))).collect();
    for (k, v) in &files {
        write(&src, &[(k, v)]);
    }
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(tmp.path().join("arch")));
    pack(&src, store.clone(), PackOptions::default(), Arc::new(())).await.unwrap();
    for round in 0..12 {
        let more = tmp.path().join(format!("more{round}"));
        // Spread over the key space: new keys between old ones, and replaced ones.
        write(&more, &[(&format!("k{:05}", round * 1600), "new"), (&format!("k{:05}x", round * 1600 + 7), "between")]);
        add(&more, store.clone(), "", PackOptions::default(), Arc::new(())).await.unwrap();
        remove(store.clone(), &[format!("k{:05}", round * 1600 + 100)], &[], false).await.unwrap();
    }
    let archive = Archive::open(store.clone()).await.unwrap();
    let m = archive.manifest();
    assert_eq!(m.generation, 25);
    assert_eq!(m.records, 20_000 + 12 - 12);
    // Every change rewrote the page into a new object and retired the one before.
    let retired = m.retired.iter().filter(|r| r.name.starts_with("index/")).count();
    assert_eq!((m.index.objects.len(), retired), (1, 24));
    assert_eq!(m.index.blocks.len(), 1, "the page was rewritten, not appended to");

    for key in ["k00000", "k01607x", "k19999", "k12000"] {
        let counted = Arc::new(Counting::new(LocalStore::new(tmp.path().join("arch"))));
        let archive = Archive::open(counted.clone()).await.unwrap();
        archive.get(key).await.unwrap();
        let c = counted.counts();
        assert_eq!(c.gets + c.ranges, 3, "{key}: manifest, one index page, the record");
    }
    let gone = Archive::open(store.clone()).await.unwrap().get("k01700").await.unwrap_err();
    assert!(matches!(gone, haypack_read::Error::NotFound { .. }), "{gone}");
    contents(store).await;
}

#[tokio::test]
async fn concurrent_adds_and_a_compaction_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for i in 0..100 {
        write(&src, &[(&format!("base/{i:03}"), &format!("base {i}"))]);
    }
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(tmp.path().join("arch")));
    pack(&src, store.clone(), PackOptions::default(), Arc::new(())).await.unwrap();
    let doomed: Vec<String> = (0..50).map(|i| format!("base/{i:03}")).collect();
    remove(store.clone(), &doomed, &[], false).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let dir = tmp.path().join(format!("w{w}"));
        let files: Vec<(String, String)> = (0..200).map(|i| (format!("w{w}/{i:04}"), format!("{w}:{i}"))).collect();
        for (k, v) in &files {
            write(&dir, &[(k, v)]);
        }
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            add(&dir, store, "", PackOptions::default(), Arc::new(())).await.map(|r| r.retries)
        }));
    }
    let s = store.clone();
    tasks.push(tokio::spawn(
        async move { compact(s, CompactOptions::default(), Arc::new(())).await.map(|r| r.retries) },
    ));
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap().unwrap();
    }
    assert!(retries > 0, "the writers raced: some commit merged on top of another");
    let all = contents(store.clone()).await;
    assert_eq!(all.len(), 50 + 4 * 200, "no writer's records were lost");
    assert_eq!((all["w3/0199"].as_str(), all["base/099"].as_str()), ("3:199", "base 99"));
    let m = Archive::open(store).await.unwrap().manifest().clone();
    assert_eq!(m.generation, 2 + 5, "one generation per writer");
    assert!(m.packs.iter().all(|p| p.dead_records == 0), "the compaction dropped the half-dead pack");
}

#[tokio::test]
async fn compaction_rewrites_only_packs_with_enough_garbage_and_gc_waits_for_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // About 4 KB per record and 64 KiB packs: 20 records a pack, 10 packs.
    let files: Vec<(String, String)> = (0..200).map(|i| (format!("f{i:03}"), format!("{i:04} ").repeat(800))).collect();
    for (k, v) in &files {
        write(&src, &[(k, v)]);
    }
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(tmp.path().join("arch")));
    let opts = PackOptions {
        pack_size: 64 << 10,
        compression: haypack_format::Compression { compress: false, ..Default::default() },
        ..Default::default()
    };
    let packed = pack(&src, store.clone(), opts, Arc::new(())).await.unwrap().manifest;
    assert!(packed.packs.len() >= 8, "{} packs", packed.packs.len());
    let first = packed.packs[0].name.clone();
    let last = packed.packs.last().unwrap().name.clone();

    // Half of the first pack's records and one of the last pack's.
    let doomed: Vec<String> = (0..20).step_by(2).map(|i| format!("f{i:03}")).chain(["f199".to_owned()]).collect();
    remove(store.clone(), &doomed, &[], false).await.unwrap();
    let before = Archive::open(store.clone()).await.unwrap();

    let report =
        compact(store.clone(), CompactOptions { min_garbage: 0.3, pack_size: 64 << 10 }, Arc::new(())).await.unwrap();
    assert_eq!(report.compacted, std::slice::from_ref(&first), "only the pack that is half dead");
    assert_eq!(report.written.len(), 1);
    assert_eq!(report.copied_in_store, 0, "a local store copies nothing itself");
    // Live records and the dead ones between them (a few KB apart: cheaper to read along).
    assert!(report.downloaded >= report.live_bytes && report.downloaded < 2 * report.live_bytes, "{report:?}");
    let m = report.manifest.clone().unwrap();
    assert!(m.pack(packed.packs[0].id).is_none());
    assert!(m.retired.iter().any(|r| r.name == first));
    assert_eq!(m.index.objects.len(), 1, "the index was rewritten into one object");
    let survivors = contents(store.clone()).await;
    assert_eq!(survivors.len(), 200 - doomed.len());
    assert_eq!(survivors["f001"], "0001 ".repeat(800));

    // A reader that opened the generation before keeps reading from the retired pack.
    assert_eq!(before.get("f001").await.unwrap(), "0001 ".repeat(800).as_bytes());
    let waiting = gc(store.clone(), Duration::from_secs(3600)).await.unwrap();
    assert!(waiting.deleted.is_empty() && waiting.waiting >= 1, "{waiting:?}");
    assert_eq!(before.get("f003").await.unwrap(), "0003 ".repeat(800).as_bytes());

    // Past the grace period the retired pack goes; the reader of the old generation is told.
    let done = gc(store.clone(), Duration::ZERO).await.unwrap();
    assert!(done.deleted.contains(&first), "{done:?}");
    assert!(done.manifest.unwrap().retired.is_empty());
    let err = before.get("f005").await.unwrap_err();
    assert!(err.to_string().contains(&first), "{err}");
    assert_eq!(contents(store.clone()).await, survivors);
    assert!(store.head(&last).await.is_ok(), "a pack below the threshold stays");

    // Nothing left to compact.
    let again = compact(store.clone(), CompactOptions::default(), Arc::new(())).await.unwrap();
    assert!(again.manifest.is_none());
}

#[tokio::test]
async fn gc_deletes_leftovers_of_writers_that_never_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, &[("a", "alpha")]);
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(tmp.path().join("arch")));
    pack(&src, store.clone(), PackOptions::default(), Arc::new(())).await.unwrap();
    store
        .put("packs/000009-dead.hpk.zst", b"partial".to_vec().into(), haypack_store::PutMode::Overwrite)
        .await
        .unwrap();
    let young = gc(store.clone(), Duration::from_secs(3600)).await.unwrap();
    assert!(young.deleted.is_empty(), "a leftover younger than the grace period may be a running writer's");
    let old = gc(store.clone(), Duration::ZERO).await.unwrap();
    assert_eq!(old.deleted, ["packs/000009-dead.hpk.zst"]);
    // Retired by one commit (so no writer can still commit it), then deleted and dropped by another.
    assert_eq!(old.retired, ["packs/000009-dead.hpk.zst"]);
    let m = old.manifest.unwrap();
    assert_eq!((m.generation, m.retired.len()), (3, 0));
    assert_eq!(contents(store).await.len(), 1);
}
